"""Metrics against hand-computed and brute-force references."""
import itertools
import random

import pytest

from pipeline.metrics import Scored, at_threshold, micro_ap, rank_k, recall_at_precision


def test_rank_k_counts_only_copy_queries():
    truth = {"q1": {"a"}, "q2": {"b"}, "q3": set()}
    rankings = {"q1": ["a", "x"], "q2": ["x", "b"], "q3": ["a"]}
    assert rank_k(rankings, truth, 1) == 0.5
    assert rank_k(rankings, truth, 10) == 1.0


def test_micro_ap_hand_example_and_worst_case_ties():
    truth = {"q1": {"a"}, "q2": {"b"}}
    rows = [Scored("q1", "a", 0.9), Scored("q2", "x", 0.8), Scored("q2", "b", 0.7)]
    assert micro_ap(rows, truth) == pytest.approx((1 / 1 + 2 / 3) / 2)
    tied = [Scored("q1", "a", 0.5), Scored("q2", "x", 0.5)]
    assert micro_ap(tied, truth) == pytest.approx((1 / 2) / 2)  # the negative counts first


def _brute_recall_at_p(rows, truth, p):
    n_pos = sum(len(v) for v in truth.values())
    best = 0.0
    for t in sorted({r.score for r in rows}):
        picked = [r for r in rows if r.score >= t]
        tp = sum(r.gallery in truth[r.query] for r in picked)
        if tp / len(picked) >= p:
            best = max(best, tp / n_pos)
    return best


def test_recall_at_precision_matches_brute_force():
    rng = random.Random(3)
    for _ in range(50):
        truth = {f"q{i}": {f"g{i}"} for i in range(8)}
        rows = [Scored(f"q{i}", f"g{j}", round(rng.random(), 1)) for i, j in itertools.product(range(8), range(3))]
        assert recall_at_precision(rows, truth, 0.9) == pytest.approx(_brute_recall_at_p(rows, truth, 0.9))


def test_at_threshold():
    truth = {"q1": {"a"}, "q2": {"b"}}
    rows = [Scored("q1", "a", 0.9), Scored("q2", "x", 0.6), Scored("q2", "b", 0.3)]
    assert at_threshold(rows, truth, 0.5) == (0.5, 0.5, 2)


def test_calibrated_threshold_keeps_precision_above_it_and_clears_unrelated_sets():
    from pipeline.metrics import calibrate_threshold

    truth = {"q1": {"g1"}, "q2": {"g2"}, "q3": {"g3"}, "q4": set()}
    rows = [Scored("q1", "g1", 0.9), Scored("q2", "g2", 0.8), Scored("q4", "g1", 0.7),  # a false one at 0.7
            Scored("q3", "g3", 0.6), Scored("q2", "g9", 0.3)]
    cal = calibrate_threshold({"copies": (rows, truth)}, target_precision=0.99)
    assert cal.threshold == 0.8  # 0.7 would admit the false row; the dip is not crossed to reach 0.6
    assert cal.sets == [("copies", 1.0, 2 / 3, 2)]
    # An unrelated set (no copies) must have no prediction: its best score bounds the threshold.
    unrelated = ([Scored("u1", "g1", 0.85)], {"u1": set()})
    cal = calibrate_threshold({"copies": (rows, truth), "unrelated": unrelated}, target_precision=0.99)
    assert cal.threshold == 0.9 and cal.sets[1][3] == 0
    # Nothing passes: the threshold sits above every score.
    cal = calibrate_threshold({"unrelated": ([Scored("u1", "g1", 0.95)], {"u1": set()})})
    assert cal.threshold > 0.95 and cal.sets[0][3] == 0
