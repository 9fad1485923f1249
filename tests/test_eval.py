"""`copywatch eval` on a small built set: the fixed output format and sane figures."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import benchset
from pipeline.cli import main

PHOTOS = Path(__file__).resolve().parents[1] / "crawler" / "demo" / "photos"
COPYWATCH = Path(sys.executable).parent / "copywatch"


def run_eval(args: list[str], home: Path) -> tuple[int, str]:
    """`copywatch eval ...` as a user runs it: its own process, so its forked workers start from
    a fresh interpreter, not from this test process and whatever threads earlier tests left."""
    env = {**os.environ, "COPYWATCH_HOME": str(home)}
    done = subprocess.run([str(COPYWATCH), "-q", *args], env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    benchset.build_bench(out, [PHOTOS], seed=1, size="small", workers=1)
    return out


@pytest.mark.parametrize("name", ["type1", "type2"])
def test_eval_writes_rankings_and_metrics(small_sets, tmp_path, monkeypatch, capsys, name):
    out = tmp_path / "eval"
    rc, printed = run_eval(["eval", str(small_sets / name), "--out", str(out)], tmp_path / "home")
    assert rc == 0
    assert "rank1" in printed and "recall_at_p90" in printed and "images/s" in printed

    truth: dict[str, set[str]] = {}
    with open(small_sets / name / "truth.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            truth.setdefault(row["query"], set()).add(row["gallery"])
    with open(out / "rankings.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["query", "rank", "gallery", "score"]
    by_query: dict[str, list[dict]] = {}
    for r in rows:
        by_query.setdefault(r["query"], []).append(r)
        assert (small_sets / name / r["gallery"]).exists()
    for q, rs in by_query.items():
        assert [int(r["rank"]) for r in rs] == list(range(1, len(rs) + 1)) and len(rs) <= 10
        assert len({r["gallery"] for r in rs}) == len(rs)
        scores = [float(r["score"]) for r in rs]
        assert scores == sorted(scores, reverse=True)

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("rank1", "rank10", "uap", "recall_at_p90", "precision_at_threshold", "recall_at_threshold"):
        assert 0.0 <= metrics[key] <= 1.0
    hits = sum(1 for q, g in truth.items() if by_query.get(q) and by_query[q][0]["gallery"] in g)
    assert metrics["rank1"] == pytest.approx(hits / len(truth))
    assert metrics["rank1"] >= 0.8 and metrics["precision_at_threshold"] >= 0.8
    # The gallery stage's time, split into what it spends it on.
    t = metrics["throughput"]
    stages = t["gallery_stage_seconds"]
    assert set(stages) == {"images", "vote_index", "templates"} and min(stages.values()) >= 0.0
    assert sum(stages.values()) == pytest.approx(t["gallery_seconds"], abs=0.05)
    assert "gallery stages: images" in printed


def test_eval_rejects_a_folder_that_is_not_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYWATCH_HOME", str(tmp_path / "home"))
    (tmp_path / "ds" / "gallery").mkdir(parents=True)
    assert main(["-q", "eval", str(tmp_path / "ds")]) == 1


def test_eval_figures_do_not_depend_on_the_worker_count(small_sets, tmp_path, monkeypatch):
    outs = {}
    for workers in (1, 2):
        outs[workers] = tmp_path / f"w{workers}"
        assert run_eval(["eval", str(small_sets / "combined"), "--out", str(outs[workers]), "--workers", str(workers)], tmp_path / "home")[0] == 0
    assert (outs[1] / "rankings.csv").read_bytes() == (outs[2] / "rankings.csv").read_bytes()
    m1, m2 = (json.loads((outs[w] / "metrics.json").read_text(encoding="utf-8")) for w in (1, 2))
    assert {k: v for k, v in m1.items() if k != "throughput"} == {k: v for k, v in m2.items() if k != "throughput"}
    assert (m1["throughput"]["workers"], m2["throughput"]["workers"]) == (1, 2)


def test_unrelated_set_and_threshold_calibration(small_sets, tmp_path, monkeypatch, capsys):
    printed = ""
    for name in ("type1", "unrelated"):
        rc, out = run_eval(["eval", str(small_sets / name), "--out", str(tmp_path / name)], tmp_path / "home")
        assert rc == 0
        printed += out
    assert "rank1 n/a" in printed  # the unrelated set has no copies to rank
    unrelated = json.loads((tmp_path / "unrelated" / "metrics.json").read_text(encoding="utf-8"))
    assert unrelated["copy_queries"] == 0 and unrelated["rank1"] is None and unrelated["queries"] == benchset.UNRELATED["small"]
    rc, out = run_eval(["bench", "threshold", str(tmp_path / "type1"), str(tmp_path / "unrelated"), "--precision", "0.9"], tmp_path / "home")
    assert rc == 0
    lines = out.splitlines()
    threshold = float(lines[0].split()[1])
    with open(tmp_path / "unrelated" / "rankings.csv", encoding="utf-8") as f:
        worst = max((float(r["score"]) for r in csv.DictReader(f)), default=0.0)
    assert threshold > worst  # no unrelated suspect would be reported
    assert any("unrelated" in line and "predictions 0" in line for line in lines[1:])


def test_unverified_candidates_keep_the_matchers_order_in_the_rankings():
    """Among candidates that all score 0, the one whose check found most (25 inliers at 0.99
    correlation, short of a copy) ranks above one that was never checked, whatever their tile
    cosines: the order rank_gallery gave, not a re-sort by cosine."""
    from pipeline.evaluate import _as_reported
    from pipeline.match import Match
    from pipeline.verify import Verification

    near = Verification(25, 40, (0, 0, 100, 100), (0, 0, 100, 100), 0.2, False, 1.0, 0.0, "", 0.99)
    weak = Verification(2, 10, None, None, 0.0, False)
    ranked = [Match(1, 0.0, 0.60, near), Match(2, 0.0, 0.80, None), Match(3, 0.0, 0.75, weak)]
    assert [m.gallery_id for m in _as_reported(ranked)] == [1, 2, 3]
    # A verified match still comes first, and one explained away by it (its suspect region
    # inside the better match's) keeps its evidence but scores 0.
    best = Verification(80, 90, (0, 0, 400, 400), (0, 0, 400, 400), 0.9, False, 1.0, 0.0, "", 0.999)
    inner = Verification(30, 40, (10, 10, 200, 200), (0, 0, 190, 190), 0.5, False, 1.0, 0.0, "", 0.999)
    out = _as_reported(ranked + [Match(4, 0.5, 0.5, inner), Match(5, 0.9, 0.7, best)])
    assert [(m.gallery_id, m.score) for m in out] == [(5, 0.9), (4, 0.0), (1, 0.0), (2, 0.0), (3, 0.0)]


def test_gallery_pixels_written_by_forked_workers_are_read_in_place(tmp_path):
    """eval's workers write each gallery image's pixels into a mapping shared with the parent
    instead of pickling them back: what the parent reads there is what Pixels.of makes, for a
    long page, an EXIF-turned photo and a small image; an unreadable file has no slot."""
    from PIL import Image

    page = Image.linear_gradient("L").resize((860, 3000)).convert("RGB")
    page.save(tmp_path / "page.png")
    photo = Image.radial_gradient("L").resize((900, 600)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    photo.save(tmp_path / "turned.jpg", exif=exif)
    Image.new("RGB", (300, 200), (200, 30, 60)).save(tmp_path / "small.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from pipeline import images\n"
        "from pipeline.evaluate import SharedPixels\n"
        "from pipeline.parallel import fork_map\n"
        "from pipeline.verify import Pixels\n"
        "root = Path(sys.argv[1])\n"
        "paths = [root / n for n in ('page.png', 'turned.jpg', 'small.png', 'broken.jpg')]\n"
        "shared = SharedPixels(paths)\n"
        "def write(i):\n"
        "    rgb = Pixels.of(images.decode(paths[i])).rgb\n"
        "    return i, shared.put(i, rgb), rgb.shape\n"
        "for i, ok, shape in fork_map(write, range(3), 2, chunksize=1):\n"
        "    assert ok, i\n"
        "    expected = Pixels.of(images.decode(paths[i])).rgb\n"
        "    assert shape == expected.shape and np.array_equal(shared.get(i, shape), expected), i\n"
        "assert shared.slots[3] == 0 and not shared.put(3, np.zeros((2, 2, 3), np.uint8))\n"
        "print('ok', [shape for shape in (Pixels.of(images.decode(p)).rgb.shape for p in paths[:3])])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok [(2233, 640, 3), (900, 600, 3), (200, 300, 3)]"
