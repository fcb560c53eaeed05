"""Local executors: in this process (workers=1) or in spawned worker processes (workers>1)."""

from __future__ import annotations

import ctypes
import glob
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bench.runner.executors.base import EXECUTORS, PairFn, check_importable, compute_record, one_line_reason
from bench.runner.progress import MatrixProgress
from bench.runner.store import RunStore


class InProcessBackend:
    """Runs each pair synchronously in the runner's process, with a per-run progress bar."""

    slots = 1

    def __init__(self, pair_fn: PairFn, store: RunStore, progress: MatrixProgress):
        self.pair_fn, self.store, self.progress = pair_fn, store, progress
        self._results: dict[int, dict] = {}
        self._next = 0

    def submit(self, pair: Any) -> int:
        with self.progress.run_bar(pair):
            record = compute_record(pair, str(self.store.run_dir(pair.run_id)), self.pair_fn)
        self._next += 1
        self._results[self._next] = record
        return self._next

    def wait_any(self, handles: list[int]) -> list[tuple[int, dict]]:
        return [(h, self._results.pop(h)) for h in handles]

    def close(self) -> None:
        self._results.clear()


def visible_gpus() -> list[str]:
    """Ids of the GPUs this process may use (CUDA_VISIBLE_DEVICES order), empty on CPU machines."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if "torch" not in sys.modules and not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")):
        return []  # no GPU device nodes: skip importing torch in the runner just to ask
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when its runner dies (even by kill -9), so no orphaned
    worker keeps training and holding memory or a GPU."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the runner died before the line above took effect
        os._exit(1)


def _init_worker(threads: int, gpu_ids: Any, parent: int = 0) -> None:
    if parent:
        _die_with_parent(parent)
    # Runs in each fresh (spawned) worker before torch is imported, so torch picks these up.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids.get()


def _compute_in_worker(pair: Any, run_dir: str, pair_fn: PairFn) -> dict:
    if "torch" in sys.modules:  # imported by a previous pair: OMP_NUM_THREADS was read already at import
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return compute_record(pair, run_dir, pair_fn)


class ProcessPoolBackend:
    """One spawned process per worker; CPU threads split between workers, one GPU each when present.

    A worker that dies (killed, out of memory) breaks the whole pool, and with it every pair in flight:
    those pairs are run again, each alone in a one-worker pool, so the pair that kills its worker again
    fails on its own and the others finish. The pool is rebuilt for the rest."""

    def __init__(self, pair_fn: PairFn, store: RunStore, workers: int):
        check_importable(pair_fn)
        self.pair_fn, self.store, self.slots = pair_fn, store, workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = max(1, cores // workers)
        self.gpus = visible_gpus()
        self._pool: ProcessPoolExecutor | None = None
        self._alone: dict[_Job, ProcessPoolExecutor] = {}  # pairs re-run alone after their pool broke

    def _new_pool(self, size: int | None = None) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        size = size or self.slots
        gpu_ids = None
        if self.gpus:
            gpu_ids = context.Queue()
            for i in range(size):
                gpu_ids.put(self.gpus[i % len(self.gpus)])
        return ProcessPoolExecutor(
            size, mp_context=context, initializer=_init_worker, initargs=(self.threads, gpu_ids, os.getpid())
        )

    def _run(self, pool: ProcessPoolExecutor, pair: Any) -> Future:
        return pool.submit(_compute_in_worker, pair, str(self.store.run_dir(pair.run_id)), self.pair_fn)

    def submit(self, pair: Any) -> _Job:
        if self._pool is None:
            self._pool = self._new_pool()
        return _Job(pair, self._run(self._pool, pair))

    def wait_any(self, handles: list[_Job]) -> list[tuple[_Job, dict | BaseException]]:
        by_future = {job.future: job for job in handles}
        finished, _ = wait(list(by_future), return_when=FIRST_COMPLETED)
        results: list[tuple[_Job, dict | BaseException]] = []
        broken = []
        for future in finished:
            job = by_future[future]
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                if job in self._alone:  # it broke a pool of its own: this pair kills its worker
                    self._alone.pop(job).shutdown(wait=False, cancel_futures=True)
                    results.append((job, RuntimeError("a worker process ended abruptly (killed or out of "
                                                      "memory), also when run alone")))
                else:
                    broken.append(job)
                continue
            if job in self._alone:
                self._alone.pop(job).shutdown(wait=False)
            results.append((job, error if error is not None else future.result()))
        if broken:
            # The shared pool is gone, and every pair in flight on it with it: rebuild it for new pairs, and
            # run each of those again alone, so only the pair that kills its worker fails.
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            done = {r[0] for r in results}
            shared = [j for j in handles if j not in self._alone and j not in done
                      and not (j.future.done() and j.future.exception() is None)]  # finished: kept
            for job in shared:
                pool = self._new_pool(1)
                self._alone[job] = pool
                job.future = self._run(pool, job.pair)
        return results

    def close(self) -> None:
        for pool in self._alone.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._alone.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _Job:
    """A pair in flight on the process pool; its future is replaced when it is run again alone."""

    __slots__ = ("pair", "future")

    def __init__(self, pair: Any, future: Future):
        self.pair, self.future = pair, future


@EXECUTORS.register("local")
def local_backend(pair_fn: PairFn, store: RunStore, workers: int, progress: MatrixProgress, **_: Any):
    """`--executor local`: in-process for one worker, spawned processes for more."""
    if workers == 1:
        return InProcessBackend(pair_fn, store, progress)
    return ProcessPoolBackend(pair_fn, store, workers)


__all__ = ["InProcessBackend", "ProcessPoolBackend", "check_importable", "local_backend", "one_line_reason"]
