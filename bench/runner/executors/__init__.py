"""Run many fine-tuning pairs safely: skip finished ones, claim each run, isolate failures, store records.

`run_pairs(pairs, out_dir, pair_fn, executor, workers, ray_address)` is the one entry point. The
`pair_fn(pair, run_dir) -> dict` computes one run and returns its record payload (metric, value,
metrics, history, …); raising marks that pair failed with a one-line reason. It must be a
module-level function when pairs run in worker processes or on Ray (workers import it by name).

The runner (this process) claims each pair before handing it to an executor and writes every record
itself, so records always land in its store, atomically, and concurrent runners never duplicate work.
Pairs another live runner holds are waited for at the end (and counted as cached when it finishes them).
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable, Iterable, TextIO

from bench.core.errors import TicketbenchError
from bench.runner.executors import local as _local  # noqa: F401 - registers "local"
from bench.runner.executors import ray as _ray  # noqa: F401 - registers "ray"
from bench.runner.executors.base import (
    EXECUTORS,
    Backend,
    FailedRun,
    PairFn,
    Summary,
    compute_record,
    failure_record,
    one_line_reason,
)
from bench.runner.progress import MatrixProgress
from bench.runner.store import Claim, RunStore

__all__ = ["EXECUTORS", "Backend", "FailedRun", "PairFn", "Summary", "compute_record", "failure_record",
           "one_line_reason", "run_pairs"]

def run_pairs(
    pairs: Iterable[Any],
    out_dir: str | os.PathLike,
    pair_fn: PairFn,
    executor: str = "local",
    kind: str = "runs",
    gpus_per_run: float = 1.0,
    workers: int = 1,
    ray_address: str = "",
    progress: bool = True,
    poll_s: float = 0.5,
    file: TextIO | None = None,
    more: Callable[[Any, dict], list] | None = None,
    store: Any = None,
) -> Summary:
    """Run every pair not yet done under `out_dir` and return what happened.

    executor "local": `workers=1` runs in this process (with a per-run progress bar), `workers>1`
    in spawned worker processes (CPU threads split between them; one GPU each when GPUs exist).
    executor "ray": one Ray task per pair on the cluster at `ray_address`, or on a local instance
    with `workers` CPUs. Failed pairs are recorded (status "failed") and retried on the next call.
    `kind` names the store's folder: `runs` for fine-tuning pairs, `tickets` for ticket searches (whose
    record then lives beside the tickets it wrote); `store` replaces it (a store routing each unit to its
    folder: `bench.runner.store.RoutedStore`). `more(unit, record)`, called as each unit finishes (done or
    not), returns units that can start now (a search's fine-tuning pairs), queued behind those waiting."""
    start = time.time()
    if workers < 1:
        raise TicketbenchError(f"workers: expected at least 1, found {workers}")
    factory = EXECUTORS.get(executor)
    store = store if store is not None else RunStore(out_dir, kind=kind)
    unique = list({pair.run_id: pair for pair in pairs}.values())
    summary = Summary(total=len(unique))
    todo = []
    for pair in unique:
        (summary.cached.append(pair.run_id) if store.is_done(pair.run_id) else todo.append(pair))
    seen = {p.run_id for p in unique}
    frontier = [p for p in unique if p.run_id in set(summary.cached)]
    while more is not None and frontier:  # what units done before this call make ready, transitively
        done = frontier.pop()
        for unit in more(done, store.read_record(done.run_id) or {"status": "done"}):
            if unit.run_id not in seen:
                seen.add(unit.run_id)
                summary.total += 1
                if store.is_done(unit.run_id):
                    summary.cached.append(unit.run_id)
                    frontier.append(unit)
                else:
                    todo.append(unit)
    bar = MatrixProgress(summary.total, len(summary.cached), enabled=progress, file=file,
                         label="find" if kind == "tickets" else "matrix")
    try:
        if todo:
            # The backend first: an unreachable cluster must leave the store untouched.
            backend = factory(
                pair_fn=pair_fn, store=store, workers=workers, ray_address=ray_address, progress=bar,
                gpus_per_run=gpus_per_run,
            )
            try:
                store.check_writable()
                _Scheduler(store, backend, summary, bar, start, poll_s, more).run(todo, seen)
            finally:
                backend.close()
    finally:
        bar.close()
    summary.wall_s = time.time() - start
    if progress:
        print(summary, file=file)
    return summary


class _Scheduler:
    """Claims pairs, keeps the backend's slots busy, writes records, waits for pairs others hold."""

    def __init__(
        self,
        store: RunStore,
        backend: Backend,
        summary: Summary,
        bar: MatrixProgress,
        start: float,
        poll_s: float,
        more: Callable[[Any, dict], list] | None = None,
    ):
        self.store, self.backend, self.summary, self.bar = store, backend, summary, bar
        self.start, self.poll_s, self.more = start, poll_s, more
        self.inflight: dict[Any, tuple[Any, Claim, float]] = {}
        self.busy: list[Any] = []
        self.queue: deque = deque()
        self.seen: set = set()  # run ids queued or counted in this call

    def _release(self, pair: Any, record: dict) -> None:
        """Queue the units `pair`'s end makes ready (each run id once), counting the ones already done."""
        if self.more is None:
            return
        for unit in self.more(pair, record):
            if unit.run_id in self.seen:
                continue
            self.seen.add(unit.run_id)
            self.summary.total += 1
            self.bar.add(1)
            if self.store.is_done(unit.run_id):
                self.summary.cached.append(unit.run_id)
                self.bar.pair_finished("cached")
                self._release(unit, self.store.read_record(unit.run_id) or {"status": "done"})
            else:
                self.queue.append(unit)

    def run(self, todo: list[Any], seen: set = frozenset()) -> None:
        self.seen.update(seen, (p.run_id for p in todo))
        queue = self.queue
        queue.extend(todo)
        try:
            while queue or self.busy or self.inflight:
                while queue and len(self.inflight) < self.backend.slots:
                    self._start(queue.popleft())
                if self.inflight:
                    for handle, result in self.backend.wait_any(list(self.inflight)):
                        self._finish(handle, result)
                elif self.busy:  # only pairs held by other runners are left: wait for them
                    time.sleep(self.poll_s)
                    queue.extend(self.busy)
                    self.busy.clear()
        finally:
            for _, claim, _ in self.inflight.values():
                claim.release()

    def _start(self, pair: Any) -> None:
        record = self.store.read_record(pair.run_id)
        if record is not None and record["status"] == "failed" and record.get("finished_at", 0) >= self.start:
            # A concurrent runner tried it during this invocation; retrying belongs to the next one.
            self._count_failed(pair, record.get("reason", "failed in a concurrent runner"))
            self._release(pair, record)
            return
        try:
            claim = self.store.claim(pair.run_id)
        except OSError as e:
            self._count_failed(pair, f"could not claim the run ({e.strerror or e}); retried next run")
            return
        if claim is None:
            if self.store.is_done(pair.run_id):
                self.summary.cached.append(pair.run_id)
                self.bar.pair_finished("cached")
                self._release(pair, self.store.read_record(pair.run_id) or {"status": "done"})
            else:
                self.busy.append(pair)
            return
        try:
            handle = self.backend.submit(pair)
        except BaseException:
            claim.release()
            raise
        self.inflight[handle] = (pair, claim, time.time())

    def _finish(self, handle: Any, result: dict | BaseException) -> None:
        pair, claim, submitted = self.inflight.pop(handle)
        try:
            if isinstance(result, BaseException):
                result = failure_record(
                    pair, f"worker died: {one_line_reason(result)}", time.time() - submitted
                )
            try:
                self.store.write_record(pair.run_id, result)
            except OSError as e:
                self._count_failed(pair, f"could not store the record ({e.strerror or e}); retried next run")
                return
        finally:
            claim.release()
        if result["status"] == "done":
            self.summary.done.append(pair.run_id)
            self.bar.pair_finished("done")
        else:
            self._count_failed(pair, result.get("reason", "failed"))
        self._release(pair, result)

    def _count_failed(self, pair: Any, reason: str) -> None:
        self.summary.failed.append(FailedRun(pair.run_id, pair.label, reason))
        self.bar.pair_finished("failed")

