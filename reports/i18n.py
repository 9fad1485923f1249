"""UI strings of client reports per language; Korean is the default."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "ko"

STRINGS: dict[str, dict[str, str]] = {
    "ko": {
        "title": "이미지 무단 사용 모니터링 보고서",
        "client": "고객",
        "run_date": "점검일",
        "summary": "요약",
        "findings_total": "보고 대상 의심 사례",
        "findings_new": "신규",
        "findings_ongoing": "지속",
        "per_shop": "쇼핑몰별 건수",
        "pages_crawled": "수집한 상품 페이지",
        "images_crawled": "수집한 이미지",
        "threshold": "보고 기준 점수",
        "no_findings": "이번 점검에서 기준 점수 이상의 의심 사례가 없습니다.",
        "findings": "의심 사례",
        "shop": "쇼핑몰",
        "badge_new": "신규",
        "badge_ongoing": "지속",
        "badge_confirmed": "확인됨",
        "protected_image": "보호 이미지 (원본)",
        "suspect_image": "의심 이미지",
        "outline_note": "빨간 테두리: 일치하는 영역",
        "image_unavailable": "이미지를 표시할 수 없습니다",
        "score": "유사도 점수",
        "overlap": "원본 대비 일치 영역",
        "mirrored": "좌우 반전",
        "yes": "예",
        "no": "아니요",
        "inliers": "기하 검증 특징점 수",
        "page_url": "페이지 URL",
        "product_title": "상품명",
        "price": "판매가",
        "seller": "판매자 정보",
        "seller_unknown": "페이지에 표시된 판매자 정보 없음",
        "seller_company": "상호",
        "seller_representative": "대표자",
        "seller_business_number": "사업자등록번호",
        "seller_mail_order_number": "통신판매업신고번호",
        "seller_email": "이메일",
        "seller_address": "주소",
        "first_seen": "최초 발견일",
        "last_seen": "최근 발견일",
        "protected_label": "원본 파일",
        "sha_suspect": "의심 이미지 SHA-256",
        "sha_protected": "보호 이미지 SHA-256",
        "skipped": "처리하지 못한 항목",
        "skipped_intro": "아래 항목은 이번 점검에서 확인하지 못했습니다.",
        "no_skips": "처리하지 못한 항목이 없습니다.",
        "stage": "단계",
        "subject": "대상",
        "reason": "사유",
        "footer": "이 보고서는 copywatch가 자동으로 작성했습니다. 점수는 유사도를 나타내며 권리 침해를 확정하지 않습니다.",
    },
    "en": {
        "title": "Image copy monitoring report",
        "client": "Client",
        "run_date": "Run date",
        "summary": "Summary",
        "findings_total": "Likely copies reported",
        "findings_new": "New",
        "findings_ongoing": "Ongoing",
        "per_shop": "By shop",
        "pages_crawled": "Product pages crawled",
        "images_crawled": "Images crawled",
        "threshold": "Report threshold",
        "no_findings": "No likely copies above the threshold in this run.",
        "findings": "Likely copies",
        "shop": "Shop",
        "badge_new": "New",
        "badge_ongoing": "Ongoing",
        "badge_confirmed": "Confirmed",
        "protected_image": "Protected image (original)",
        "suspect_image": "Suspect image",
        "outline_note": "Red outline: matched region",
        "image_unavailable": "Image unavailable",
        "score": "Similarity score",
        "overlap": "Share of original matched",
        "mirrored": "Mirrored",
        "yes": "Yes",
        "no": "No",
        "inliers": "Geometrically verified keypoints",
        "page_url": "Page URL",
        "product_title": "Product title",
        "price": "Price",
        "seller": "Seller",
        "seller_unknown": "No seller identity shown on the page",
        "seller_company": "Company",
        "seller_representative": "Representative",
        "seller_business_number": "Business registration no.",
        "seller_mail_order_number": "Mail-order business no.",
        "seller_email": "E-mail",
        "seller_address": "Address",
        "first_seen": "First seen",
        "last_seen": "Last seen",
        "protected_label": "Original file",
        "sha_suspect": "Suspect image SHA-256",
        "sha_protected": "Protected image SHA-256",
        "skipped": "Skipped in this run",
        "skipped_intro": "The items below could not be checked in this run.",
        "no_skips": "Nothing was skipped.",
        "stage": "Stage",
        "subject": "Subject",
        "reason": "Reason",
        "footer": "Generated automatically by copywatch. A score measures similarity; it does not by itself establish infringement.",
    },
}


def resolve_language(language: str | None) -> str:
    """The supported language to render in; unknown or missing languages get the default."""
    lang = (language or DEFAULT_LANGUAGE).strip().lower()
    if lang not in STRINGS:
        log.warning("no report strings for language %r; using %r", language, DEFAULT_LANGUAGE)
        return DEFAULT_LANGUAGE
    return lang


def ui_strings(language: str) -> dict[str, str]:
    """The UI strings of a language returned by :func:`resolve_language`."""
    return STRINGS[language]
