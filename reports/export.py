"""Report exports: one row per finding with the fields a takedown request needs, as CSV and XLSX."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from reports.render import Card, ReportData

log = logging.getLogger(__name__)

CSV_FILE = "report.csv"
XLSX_FILE = "report.xlsx"
#: Columns of both exports, in order (stable names: tools and takedown templates read them).
COLUMNS = (
    "finding_id", "status", "new", "score", "overlap_pct", "shop", "page_url", "suspect_image_url", "product_title", "price",
    "seller_company", "seller_representative", "seller_business_number", "seller_mail_order_number", "seller_email",
    "seller_address", "first_seen", "last_seen", "capture_time", "suspect_sha256", "protected_sha256", "protected_file",
    "page_sha256", "screenshot_sha256",
)
#: A spreadsheet treats a cell starting with one of these as a formula; crawled text must not run.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Text that a spreadsheet shows as text: a leading formula character gets a quote in front."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def card_row(card: "Card") -> dict[str, Any]:
    seller = dict(card.seller)
    row = {
        "finding_id": card.finding_id, "status": card.status, "new": card.is_new, "score": round(card.score, 4),
        "overlap_pct": round(card.overlap * 100, 1), "shop": card.shop, "page_url": card.page_url,
        "suspect_image_url": card.suspect_image_url or "", "product_title": card.title or "", "price": card.price or "",
        "first_seen": card.first_seen.isoformat(), "last_seen": card.last_seen.isoformat(), "capture_time": card.capture_time or "",
        "suspect_sha256": card.suspect_sha256, "protected_sha256": card.protected_sha256, "protected_file": card.protected_label,
        "page_sha256": card.page_sha256 or "", "screenshot_sha256": card.screenshot_sha256 or "",
    }
    for key in ("company", "representative", "business_number", "mail_order_number", "email", "address"):
        row[f"seller_{key}"] = seller.get(key, "")
    return {k: neutralise(row[k]) for k in COLUMNS}


def export_frame(data: "ReportData") -> pd.DataFrame:
    """One row per reported finding, in report order (by shop, best score first)."""
    rows = [card_row(card) for group in data.groups for card in group.cards]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_exports(out_dir: Path, data: "ReportData") -> tuple[Path, Path]:
    """Write ``report.csv`` (UTF-8 with BOM, for Excel) and ``report.xlsx`` into ``out_dir``, each atomically."""
    frame = export_frame(data)
    csv_path, xlsx_path = out_dir / CSV_FILE, out_dir / XLSX_FILE
    _atomic(csv_path, lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8-sig"))
    _atomic(xlsx_path, lambda tmp: frame.to_excel(tmp, index=False, sheet_name="findings", engine="openpyxl"))
    log.info("exports: %d rows -> %s, %s", len(frame), csv_path, xlsx_path)
    return csv_path, xlsx_path


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".export-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
