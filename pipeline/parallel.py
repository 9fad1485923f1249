"""Fork-based process pools for the CPU-bound stages (`copywatch eval`, the daily run's matching)."""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Most worker processes a stage starts by default.
MAX_DEFAULT_WORKERS = 8


def cpu_workers(requested: int = 0) -> int:
    """``requested`` worker processes, or with 0 one per core this process may run on (at most
    :data:`MAX_DEFAULT_WORKERS`)."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def fork_map(func: Callable[[T], R], items: Iterable[T], workers: int, chunksize: int = 4) -> Iterator[R]:
    """``func`` over ``items``, in order, in ``workers`` forked processes (in this one for one worker).

    Forked children see this process's memory as it was at the fork (indexes, features, caches),
    so ``func`` reads what it needs from module state set just before; only its arguments and
    results are pickled. This process runs OpenCV and FAISS on one thread while its workers live
    (see :func:`_single_threaded_parent`). A daemonic process (a pool worker itself) may not have children:
    there the items are mapped in this process, with a warning.
    """
    items = list(items)
    if workers > 1 and multiprocessing.current_process().daemon:
        log.warning("a daemonic process cannot start workers: %d items mapped in this one process", len(items))
        workers = 1
    if workers <= 1 or len(items) < 2:
        yield from map(func, items)
        return
    with _single_threaded_parent(), multiprocessing.get_context("fork").Pool(min(workers, len(items)), initializer=_worker_started) as pool:
        yield from pool.imap(func, items, chunksize=chunksize)


@contextmanager
def _single_threaded_parent() -> Iterator[None]:
    """OpenCV and FAISS on one thread in this process while it forks workers, restored afterwards.

    A thread pool does not survive a fork: a child that reconfigures OpenCV's pool (as
    :func:`pipeline.runtime.single_threaded_workers` does) or enters a FAISS (OpenMP) parallel
    region on several threads waits forever for threads that exist only in the parent. Setting
    one thread here first shuts OpenCV's pool down properly, and with one OpenMP thread the
    children never touch the pool the parent may have used (an Airflow task that built the
    gallery's indexes on every core, then forks its matching workers)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with _faiss_on_one_thread(sys.modules.get("faiss")):
            yield
    finally:
        cv2.setNumThreads(before)


@contextmanager
def _faiss_on_one_thread(faiss) -> Iterator[None]:
    """The ``faiss`` module (None: not imported, nothing to do) on one OpenMP thread, restored
    afterwards."""
    if faiss is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextmanager
def forkable_faiss(workers: int) -> Iterator[None]:
    """FAISS on one OpenMP thread while ``workers`` > 1, restored afterwards: for a caller that
    also runs multi-threaded FAISS work in forked children (:func:`in_forked_child`, as
    ``copywatch eval`` trains its vote index). GNU OpenMP's thread pool does not survive a fork,
    so such a child may only start one if this process never used its own.
    """
    if workers <= 1:
        yield
        return
    import faiss

    with _faiss_on_one_thread(faiss):
        yield


def in_forked_child(func: Callable[[T], R], arg: T) -> R:
    """``func(arg)`` in one forked child process, its result pickled back: for multi-threaded work
    (FAISS's OpenMP) in a process that must not start thread pools of its own before it forks
    workers. A daemonic process (a pool worker itself), which may not have children, runs it
    itself."""
    if multiprocessing.current_process().daemon:
        return func(arg)
    with multiprocessing.get_context("fork").Pool(1, initializer=_default_signals) as pool:
        return pool.apply(func, (arg,))


def _default_signals() -> None:
    """A forked worker dies on SIGTERM, as the pool expects when it shuts down (it terminates
    its workers and waits for them). The parent's own handler, inherited by the fork, would
    not: an Airflow task's handler catches SIGTERM, and the pool then waited forever."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_started() -> None:
    """Initializer of :func:`fork_map`'s workers."""
    from pipeline.runtime import single_threaded_workers

    _default_signals()
    single_threaded_workers()
