"""Progress of a matrix: one overall bar (pairs done/total, cached, failed, ETA), a per-run bar, a summary.

Bars only on a terminal: when the stream is a file or a pipe (a log, CI), the overall progress is plain
lines — one at every tenth of the pairs and at most one a minute between them — and there are no per-run
bars, so a log holds no carriage returns or escape codes (a smoke log was 44 KB of them).

Pair functions (the training loop) report their progress with `report(step, total, loss)`. It is a
no-op unless a reporter is installed for the current context: the executors install a per-run bar
when the pair runs in the runner's own process (workers=1); in worker processes and Ray tasks it
stays a no-op and only the overall bar moves.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable, Iterator, TextIO

if TYPE_CHECKING:
    from bench.runner.pairs import PairSpec

# Longest silence between two plain progress lines (logs): long pairs still show the run is alive.
LINE_EVERY_S = 60.0

Reporter = Callable[[int, int, "float | None"], None]
_reporter: ContextVar[Reporter | None] = ContextVar("ticketbench_reporter", default=None)


def say(quiet: bool, msg: str) -> None:
    """One line of a stage's progress on stdout, unless `quiet` (the pipeline's and the stages' one voice)."""
    if not quiet:
        print(msg, flush=True)


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


def step_lines(label: str, file: TextIO | None = None) -> Reporter:
    """An `on_step` callback for a long single-process stage (pre-training): one plain line at every
    tenth of its steps with the loss, so the stage is not minutes of silence."""
    shown = [-1]

    def on_step(step: int, total: int, loss: float | None) -> None:
        tenth = step * 10 // max(total, 1)
        if tenth > shown[0] and (tenth > 0 or step == 1):
            shown[0] = tenth
            tail = f", loss {loss:.4f}" if loss is not None else ""
            print(f"{label}: step {step}/{total}{tail}", file=file if file is not None else sys.stdout, flush=True)

    return on_step


class MatrixProgress:
    """The overall bar and per-run bars; with `enabled=False` nothing is printed (tests, quiet mode)."""

    def __init__(self, total: int, cached: int, enabled: bool = True, file: TextIO | None = None,
                 tty: bool | None = None, label: str = "matrix"):
        self.file = file if file is not None else sys.stderr
        self.label = label
        self.tty = _isatty(self.file) if tty is None else tty
        # Per-run bars only where a bar can redraw in place.
        self.enabled = enabled and self.tty
        self.total, self.cached, self.failed, self.finished = total, cached, 0, cached
        self._lines = enabled and not self.tty
        self._start = self._last = time.monotonic()
        self._next_tenth = 1
        self._bar = None
        if self._lines:
            self._line()
        if self.enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            # `initial` keeps cached pairs out of the rate, so the ETA reflects real runs only.
            self._bar = tqdm(
                total=total, initial=cached, desc="pairs", unit="pair", file=self.file, dynamic_ncols=True
            )
            self._bar.set_postfix(cached=cached, failed=0)

    def add(self, n: int = 1) -> None:
        """More units to count (those a finished search made ready)."""
        self.total += n
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def pair_finished(self, status: str) -> None:
        """Count one pair: status is "done", "cached" or "failed"."""
        if status == "cached":
            self.cached += 1
        elif status == "failed":
            self.failed += 1
        self.finished += 1
        if self._bar is not None:
            self._bar.set_postfix(cached=self.cached, failed=self.failed, refresh=False)
            self._bar.update(1)
        elif self._lines:
            now, tenth = time.monotonic(), self.finished * 10 // max(self.total, 1)
            if tenth >= self._next_tenth or now - self._last >= LINE_EVERY_S or self.finished == self.total:
                self._next_tenth = tenth + 1
                self._line()

    def _line(self) -> None:
        """One plain progress line: pairs finished of total, cached, failed, elapsed, a rough ETA."""
        now = time.monotonic()
        self._last = now
        ran, elapsed = self.finished - self.cached, now - self._start
        left = self.total - self.finished
        eta = f", ~{_clock(elapsed / ran * left)} left" if ran and left else ""
        unit = "searches" if self.label == "find" else "pairs"
        print(f"[{self.label}] {self.finished}/{self.total} {unit} (cached {self.cached}, failed {self.failed}), "
              f"{_clock(elapsed)} elapsed{eta}", file=self.file, flush=True)

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


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"
