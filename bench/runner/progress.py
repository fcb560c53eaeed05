"""Progress of a matrix: one overall bar (pairs done/total, cached, failed, ETA), a per-run bar, a summary.

Pair functions (the training loop) report their progress with `report(step, total, loss)`. It is a
no-op unless a reporter is installed for the current context: the executors install a per-run bar
when the pair runs in the runner's own process (workers=1); in worker processes and Ray tasks it
stays a no-op and only the overall bar moves.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable, Iterator, TextIO

if TYPE_CHECKING:
    from bench.runner.pairs import PairSpec

Reporter = Callable[[int, int, "float | None"], None]
_reporter: ContextVar[Reporter | None] = ContextVar("ticketbench_reporter", default=None)


def report(step: int, total: int, loss: float | None = None) -> None:
    """Tell the current run's progress bar that `step` of `total` steps are done (cheap when no bar)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(step, total, loss)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Install `reporter` as the target of `report()` for the duration of the block."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


class MatrixProgress:
    """The overall bar and per-run bars; with `enabled=False` nothing is printed (tests, quiet mode)."""

    def __init__(self, total: int, cached: int, enabled: bool = True, file: TextIO | None = None):
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        self.cached = cached
        self.failed = 0
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            # `initial` keeps cached pairs out of the rate, so the ETA reflects real runs only.
            self._bar = tqdm(
                total=total, initial=cached, desc="pairs", unit="pair", file=self.file, dynamic_ncols=True
            )
            self._bar.set_postfix(cached=cached, failed=0)

    def pair_finished(self, status: str) -> None:
        """Count one pair: status is "done", "cached" or "failed"."""
        if status == "cached":
            self.cached += 1
        elif status == "failed":
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix(cached=self.cached, failed=self.failed, refresh=False)
            self._bar.update(1)

    @contextmanager
    def run_bar(self, pair: PairSpec) -> Iterator[None]:
        """A per-run bar fed by `report()` while the pair runs in this process."""
        if not self.enabled:
            yield
            return
        bar = None

        def update(step: int, total: int, loss: float | None) -> None:
            nonlocal bar
            if bar is None:
                bar = self._tqdm(
                    total=total, desc=pair.label, unit="step", leave=False, position=1, file=self.file
                )
            bar.total = total
            bar.n = step
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.refresh()

        try:
            with reporting(update):
                yield
        finally:
            if bar is not None:
                bar.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
