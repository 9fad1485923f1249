"""Retrieval and copy-detection metrics: Rank-k, micro-AP and recall at 90% precision (ISC 2021)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scored:
    query: str
    gallery: str
    score: float


def rank_k(rankings: dict[str, list[str]], truth: dict[str, set[str]], k: int) -> float:
    """Share of copy queries (those with a truth row) whose top ``k`` holds a true gallery image."""
    copies = [q for q in truth if truth[q]]
    if not copies:
        return float("nan")
    hits = sum(1 for q in copies if truth[q] & set(rankings.get(q, [])[:k]))
    return hits / len(copies)


def _worst_case_order(rows: list[Scored], truth: dict[str, set[str]]) -> np.ndarray:
    """Correctness flags sorted by score desc; among equal scores, false ones first."""
    flags = np.array([r.gallery in truth.get(r.query, ()) for r in rows], dtype=bool)
    scores = np.array([r.score for r in rows], dtype=np.float64)
    order = np.lexsort((flags, -scores))  # last key sorts first: score desc, then False < True
    return flags[order], scores[order]


def micro_ap(rows: list[Scored], truth: dict[str, set[str]]) -> float:
    """Average precision over all pooled (query, gallery, score) rows; recall counts every truth pair."""
    n_pos = sum(len(v) for v in truth.values())
    if n_pos == 0:
        return float("nan")
    flags, _ = _worst_case_order(rows, truth)
    tp = np.cumsum(flags)
    precision = tp / np.arange(1, len(flags) + 1)
    return float(precision[flags].sum() / n_pos)


def recall_at_precision(rows: list[Scored], truth: dict[str, set[str]], p: float = 0.9) -> float:
    """Largest recall reached at a score cut-off whose precision is at least ``p``.

    Cut-offs fall only between distinct scores (a threshold cannot split a tie).
    """
    n_pos = sum(len(v) for v in truth.values())
    if n_pos == 0 or not rows:
        return float("nan") if n_pos == 0 else 0.0
    flags, scores = _worst_case_order(rows, truth)
    tp = np.cumsum(flags)
    n = np.arange(1, len(flags) + 1)
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    ok = (tp / n >= p) & last_of_tie
    return float(tp[ok].max() / n_pos) if ok.any() else 0.0


def at_threshold(rows: list[Scored], truth: dict[str, set[str]], threshold: float) -> tuple[float, float, int]:
    """(precision, recall, number of predictions) of the rows scoring at least ``threshold``."""
    n_pos = sum(len(v) for v in truth.values())
    picked = [r for r in rows if r.score >= threshold]
    tp = sum(1 for r in picked if r.gallery in truth.get(r.query, ()))
    precision = tp / len(picked) if picked else 1.0
    recall = tp / n_pos if n_pos else float("nan")
    return precision, recall, len(picked)


@dataclass(frozen=True)
class Calibration:
    """The report threshold chosen from scored sets, and what it gives on each."""

    threshold: float
    target_precision: float
    #: Per set: (name, precision, recall, predictions) at ``threshold``.
    sets: list[tuple[str, float, float, int]]


def calibrate_threshold(sets: dict[str, tuple[list[Scored], dict[str, set[str]]]], target_precision: float = 0.99,
                        floor: float = 0.05) -> Calibration:
    """The lowest threshold (at least ``floor``) from which every set keeps precision at least
    ``target_precision`` at this and every higher cut-off, and a set without copies (unrelated
    suspects) has no prediction at all.

    Scanning from the top score down, a candidate is kept only while every set stays within the
    target, so a threshold is never picked inside a dip of the precision curve.
    """
    candidates = sorted({r.score for rows, _ in sets.values() for r in rows if r.score >= floor} | {floor}, reverse=True)
    chosen = float(np.nextafter(candidates[0], np.inf))  # above every score: nothing reported
    for t in candidates:
        ok = True
        for rows, truth in sets.values():
            precision, _, n = at_threshold(rows, truth, t)
            has_copies = any(truth.values())
            if (has_copies and precision < target_precision) or (not has_copies and n > 0):
                ok = False
                break
        if not ok:
            break
        chosen = t
    # Just above the worst kept score would also do; the threshold is the lowest score kept.
    figures = [(name, *at_threshold(rows, truth, chosen)) for name, (rows, truth) in sets.items()]
    return Calibration(float(chosen), target_precision, figures)
