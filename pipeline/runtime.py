"""Process-wide settings for the image-heavy stages (gallery indexing, embedding, matching)."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: Freed heap kept by the process before it is given back to the kernel, and the head room
#: added whenever the heap grows.
TRIM_THRESHOLD, TOP_PAD = 1 << 30, 256 << 20
#: Allocations from this size get their own mapping (glibc's largest allowed value).
MMAP_THRESHOLD = 32 << 20

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Let glibc's allocator keep freed memory instead of handing it back to the kernel at once.

    Decoding, resizing and describing large images allocate and free buffers of tens of MB per
    image. With glibc's defaults each is mapped and unmapped (or the heap trimmed) every time,
    and the page faults that follow cost as much as the work: `copywatch eval` on the detail-page
    set spent 33 s of 84 s CPU in the kernel for gallery SIFT alone, 1 s with this (see
    docs/MATCHING.md, section 5). A process then holds up to about 1 GB of freed memory for
    reuse. Children forked afterwards inherit the setting. A no-op (returning False) where the
    C library is not glibc.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here: allocator left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    return _tuned


def single_threaded_workers() -> None:
    """In a forked worker of a process pool: OpenCV, the BLAS behind numpy and any OpenMP pool on
    one thread each. The pool already has one worker per core; their own threads would only
    compete with the other workers. OpenBLAS's threads spin while they wait: with two threads
    in each of two workers, detail-page queries ran 1.45x slower (the descriptor matching is a
    matrix product; docs/MATCHING.md, section 5)."""
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)
