"""Process settings for the image-heavy stages."""
from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str, timeout: float) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (process-wide thread and allocator state stays apart from
    the test process); it must exit 0."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_allocator_tuning_takes_effect_once_and_is_inherited_by_forked_workers():
    # In a fresh interpreter: the setting is process-wide and must not leak into the test process.
    code = (
        "import multiprocessing as mp, pipeline.runtime as r\n"
        "first = r.tune_allocator(); again = r.tune_allocator()\n"
        "from pipeline.parallel import fork_map\n"
        "import cv2, numpy, threadpoolctl\n"
        "def threads_in_worker(_):\n"
        "    pools = threadpoolctl.threadpool_info()\n"
        "    assert any(p['user_api'] == 'blas' for p in pools), pools\n"
        "    return max([cv2.getNumThreads()] + [p['num_threads'] for p in pools])\n"
        "threads = list(fork_map(threads_in_worker, range(4), 2, chunksize=1))\n"
        "print(first, again, threads)\n"
    )
    out = run_fresh(code, 120).stdout.split(maxsplit=2)
    assert out[0] == "True" and out[1] == "True"  # glibc (Debian) accepts the three mallopt calls
    assert out[2].strip() == "[1, 1, 1, 1]"  # each forked worker runs OpenCV and BLAS on one thread


def test_vote_index_built_in_a_forked_child_votes_alike_and_workers_forked_later_do_not_hang():
    # As `copywatch eval` does it: FAISS on one thread in this process, the inverted lists built
    # by a child on two, then query workers forked. A fresh interpreter keeps OpenMP state apart.
    code = (
        "import faiss, numpy as np\n"
        "faiss.omp_set_num_threads(1)\n"
        "from pipeline.local import LocalFeatures, VoteIndex, EXACT_LIMIT\n"
        "from pipeline.parallel import fork_map\n"
        "rng = np.random.default_rng(0)\n"
        "def feats(n):\n"
        "    d = rng.random((n, 128), dtype=np.float32) ** 4\n"
        "    d /= np.linalg.norm(d, axis=1, keepdims=True)\n"
        "    xy = rng.random((n, 2), dtype=np.float32) * [640, 6400]\n"
        "    return LocalFeatures(xy.astype(np.float32), d, rng.random(n, dtype=np.float32), (640, 6400))\n"
        "gallery = {g: feats(3000) for g in range(10)}\n"
        "def copy_of(g):\n"
        "    f = gallery[g]; noisy = f.desc + rng.normal(0, 0.01, f.desc.shape).astype(np.float32)\n"
        "    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)\n"
        "    return LocalFeatures(f.xy, noisy, f.response, f.size)\n"
        "here, child = VoteIndex.build(gallery), VoteIndex.build(gallery, forked_threads=2)\n"
        "assert here.size > EXACT_LIMIT and type(here._index) is type(child._index)\n"
        "queries = [copy_of(g) for g in (3, 7)]\n"
        "assert [here.cast(q).counts for q in queries] == [child.cast(q).counts for q in queries]\n"
        "def top(i):\n"
        "    c = child.votes(queries[i]); return max(c, key=c.get)\n"
        "print(list(fork_map(top, [0, 1, 0, 1], 2, chunksize=1)))\n"
    )
    out = run_fresh(code, 300)
    assert out.stdout.strip() == "[3, 7, 3, 7]"


def test_workers_forked_after_the_parent_used_its_thread_pools_do_not_hang():
    # A daily run's match task: the gallery's indexes built with FAISS and OpenCV on every core,
    # then matching workers forked. Both pools existed in the parent; the workers must neither
    # wait on them (they did, forever, before fork_map ran the parent single-threaded around the
    # fork) nor leave the parent's own settings changed.
    code = (
        "import cv2, faiss, numpy as np\n"
        "from pipeline.parallel import fork_map\n"
        "rng = np.random.default_rng(0); x = rng.standard_normal((60000, 64)).astype(np.float32)\n"
        "index = faiss.IndexIVFFlat(faiss.IndexFlatL2(64), 64, 64); index.train(x[:8000]); index.add(x); index.nprobe = 8\n"
        "faiss.omp_set_num_threads(2); cv2.setNumThreads(2)\n"
        "index.search(x[:4000], 5); cv2.GaussianBlur(np.zeros((3000, 3000), np.float32), (0, 0), 3)\n"
        "def work(i):\n"
        "    cv2.GaussianBlur(np.zeros((1000, 1000), np.float32), (0, 0), 3)\n"
        "    return int(index.search(x[i:i + 1], 1)[1][0, 0])\n"
        "print(list(fork_map(work, range(6), 2, chunksize=1)), faiss.omp_get_max_threads(), cv2.getNumThreads())\n"
    )
    out = run_fresh(code, 120)
    assert out.stdout.strip() == "[0, 1, 2, 3, 4, 5] 2 2"


def test_a_daemonic_process_maps_in_itself():
    # A pool worker (daemonic) may not have children: fork_map and in_forked_child run the work
    # in that process instead of failing.
    code = (
        "import logging, multiprocessing as mp\n"
        "from pipeline.parallel import fork_map, in_forked_child\n"
        "def square(x):\n"
        "    return x * x\n"
        "def job(q):\n"
        "    logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "    q.put((list(fork_map(square, range(4), 2)), in_forked_child(square, 5)))\n"
        "if __name__ == '__main__':\n"
        "    q = mp.get_context('fork').Queue()\n"
        "    p = mp.get_context('fork').Process(target=job, args=(q,), daemon=True)\n"
        "    p.start(); print(q.get(timeout=60)); p.join(60)\n"
    )
    out = run_fresh(code, 120)
    assert out.stdout.strip() == "([0, 1, 4, 9], 25)"
    assert "a daemonic process cannot start workers: 4 items mapped in this one process" in out.stderr
