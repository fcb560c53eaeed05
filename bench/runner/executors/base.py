"""What every executor shares: the registry, the backend protocol, and `compute_record` — the one
function that runs a unit of work (a fine-tuning pair or a ticket search) wherever it is sent."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from bench.core.errors import TicketbenchError
from bench.core.registry import Registry

PairFn = Callable[[Any, Path], dict]


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    label: str
    reason: str


@dataclass
class Summary:
    """What a `run_pairs` call did: run ids done now, skipped as cached, failed (with reasons)."""

    total: int = 0
    done: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)
    wall_s: float = 0.0

    def __str__(self) -> str:
        """Multi-line summary: counts, failed pairs with their one-line reasons, wall time."""
        lines = [f"{self.total} pairs: {len(self.done)} done, {len(self.cached)} skipped as cached, "
                 f"{len(self.failed)} failed — wall time {self.wall_s:.1f} s"]
        lines += [f"  failed {f.label} [{f.run_id}]: {f.reason}" for f in self.failed]
        return "\n".join(lines)


class Backend(Protocol):
    """An executor: runs `compute_record` for submitted pairs, at most `slots` at a time."""

    slots: int

    def submit(self, pair: Any) -> Any: ...

    def wait_any(self, handles: list[Any]) -> list[tuple[Any, dict | BaseException]]: ...

    def close(self) -> None: ...


BackendFactory = Callable[..., Backend]
EXECUTORS: Registry[BackendFactory] = Registry("executor")


def one_line_reason(error: BaseException, limit: int = 300) -> str:
    """A failure reason fit for a summary line and a record: the error's first line, truncated."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    reason = (
        first
        if isinstance(error, TicketbenchError) and first
        else f"{type(error).__name__}: {first}".rstrip(": ")
    )
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def failure_record(pair: Any, reason: str, total_s: float = 0.0) -> dict:
    return {
        **pair.identity(),
        "status": "failed",
        "reason": reason,
        "timings": {"total_s": round(total_s, 3)},
        "finished_at": time.time(),
    }


def compute_record(pair: Any, run_dir: str, pair_fn: PairFn) -> dict:
    """Run one pair and return its whole record (status "done", or "failed" with the reason).

    Runs wherever the executor puts it (this process, a worker process, a Ray task); it writes
    nothing to the store itself — the runner does, atomically."""
    start = time.time()
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    try:
        payload = pair_fn(pair, path)
        if not isinstance(payload, dict):
            raise TypeError(f"pair function returned {type(payload).__name__}, expected a dict")
    except Exception as e:  # one failing pair never stops the others
        return failure_record(pair, one_line_reason(e), time.time() - start)
    record = {**payload, **pair.identity(), "status": "done", "finished_at": time.time()}
    record.pop("reason", None)
    timings = dict(record.get("timings") or {})
    timings.setdefault("total_s", round(time.time() - start, 3))
    record["timings"] = timings
    return record



def check_importable(pair_fn: PairFn) -> None:
    """Worker processes and Ray import `pair_fn` by name: refuse lambdas and nested functions early."""
    module = sys.modules.get(getattr(pair_fn, "__module__", None) or "")
    qualname = getattr(pair_fn, "__qualname__", "")
    if module is None or "<" in qualname or getattr(module, qualname, None) is not pair_fn:
        raise TypeError(
            f"pair function {qualname or pair_fn!r} must be a module-level function (workers import it)"
        )
