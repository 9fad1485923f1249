"""Process settings for the image-heavy stages."""
from __future__ import annotations

import subprocess
import sys


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.split(maxsplit=2)
    assert out[0] == "True" and out[1] == "True"  # glibc (Debian) accepts the three mallopt calls
    assert out[2].strip() == "[1, 1, 1, 1]"  # each forked worker runs OpenCV and BLAS on one thread
