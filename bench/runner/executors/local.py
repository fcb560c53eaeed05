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

    A worker that dies (killed, out of memory) fails only the pairs it was running; the pool is
    rebuilt for the rest."""

    def __init__(self, pair_fn: PairFn, store: RunStore, workers: int):
        check_importable(pair_fn)
        self.pair_fn, self.store, self.slots = pair_fn, store, workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = max(1, cores // workers)
        self.gpus = visible_gpus()
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        gpu_ids = None
        if self.gpus:
            gpu_ids = context.Queue()
            for i in range(self.slots):
                gpu_ids.put(self.gpus[i % len(self.gpus)])
        return ProcessPoolExecutor(
            self.slots, mp_context=context, initializer=_init_worker, initargs=(self.threads, gpu_ids, os.getpid())
        )

    def submit(self, pair: Any) -> Future:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool.submit(_compute_in_worker, pair, str(self.store.run_dir(pair.run_id)), self.pair_fn)

    def wait_any(self, handles: list[Future]) -> list[tuple[Future, dict | BaseException]]:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        results: list[tuple[Future, dict | BaseException]] = []
        for future in finished:
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                # Every pair in flight fails with it (they are retried next run); rebuild for the rest.
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                error = RuntimeError("a worker process ended abruptly (killed or out of memory)")
            results.append((future, error if error is not None else future.result()))
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@EXECUTORS.register("local")
def local_backend(pair_fn: PairFn, store: RunStore, workers: int, progress: MatrixProgress, **_: Any):
    """`--executor local`: in-process for one worker, spawned processes for more."""
    if workers == 1:
        return InProcessBackend(pair_fn, store, progress)
    return ProcessPoolBackend(pair_fn, store, workers)


__all__ = ["InProcessBackend", "ProcessPoolBackend", "check_importable", "local_backend", "one_line_reason"]
