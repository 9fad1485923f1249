"""Fork-based process pools for the CPU-bound stages of `copywatch eval`."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fork_map(func: Callable[[T], R], items: Iterable[T], workers: int, chunksize: int = 4) -> Iterator[R]:
    """``func`` over ``items``, in order, in ``workers`` forked processes (in this one for one worker).

    Forked children see this process's memory as it was at the fork (indexes, features, caches),
    so ``func`` reads what it needs from module state set just before; only its arguments and
    results are pickled. Callers must not have started an OpenMP pool before forking (see
    ``faiss.omp_set_num_threads(1)`` in :func:`pipeline.evaluate.evaluate`).
    """
    items = list(items)
    if workers <= 1 or len(items) < 2:
        yield from map(func, items)
        return
    from pipeline.runtime import single_threaded_workers

    with multiprocessing.get_context("fork").Pool(min(workers, len(items)), initializer=single_threaded_workers) as pool:
        yield from pool.imap(func, items, chunksize=chunksize)


def in_forked_child(func: Callable[[T], R], arg: T) -> R:
    """``func(arg)`` in one forked child process, its result pickled back: for multi-threaded work
    (FAISS's OpenMP) in a process that must not start thread pools of its own before it forks
    workers."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(func, (arg,))
