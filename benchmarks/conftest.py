"""Shared benchmark machinery: every figure is a ratio of two timings taken in the same run.

Machines here are shared and noisy, so absolute times are only context; each benchmark measures
its subject and its anchor interleaved (round-robin), keeps the best time of each and records
`ours vs anchor` with `record_ratio`. The ratios are printed as they are measured and again as one
markdown table at the end of the session (paste it into BENCHMARKS.md).

Collected only by `pytest benchmarks` (setup.cfg's testpaths is `tests`); run with
`tox -e bench` or `python -m pytest benchmarks --benchmark-only -s`.

Quick mode (CI): `pytest benchmarks --benchmark-disable` (or BENCH_QUICK=1) runs every benchmark once
at tiny sizes, so a benchmark that no longer runs fails CI; its ratios mean nothing and are not
printed as results. A benchmark *skipped* in quick mode also fails the session (a skip would hide rot);
BENCH_QUICK=0 forces full sizes.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread by default: both sides of a ratio get the same, and the shared 2-core machine
# stays usable. BENCH_THREADS=n measures with n threads.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)

# Set by pytest_configure from BENCH_QUICK or --benchmark-disable; read at test time via `quick()`.
_QUICK = {"on": os.environ.get("BENCH_QUICK") == "1"}
_SKIPPED: list[str] = []


def quick() -> bool:
    """True in quick mode: run each benchmark once at a tiny size (does it still work?), measure nothing."""
    return _QUICK["on"]


def sized(full, tiny):
    """`full` normally, `tiny` in quick mode."""
    return tiny if quick() else full


def pytest_configure(config):
    env = os.environ.get("BENCH_QUICK")
    _QUICK["on"] = env == "1" or (env != "0" and bool(config.getoption("benchmark_disable", False)))


def pytest_runtest_logreport(report):
    if quick() and report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In quick mode every benchmark must run: a skip (missing extra, an import that moved) is a failure.
    if quick() and _SKIPPED and session.exitstatus == 0:
        session.exitstatus = 1


@dataclass
class Ratio:
    """One measured comparison: `ours` and `anchor` in `unit` (seconds unless stated)."""

    name: str
    ours: float
    anchor: float
    ratio: float
    goal: str
    met: bool | None
    unit: str = "s"
    note: str = ""

    def row(self) -> str:
        met = "" if self.met is None else ("met" if self.met else "MISSED")
        return (f"| {self.name} | {self.ratio:.3g}× | {self.ours:.4g} {self.unit} | {self.anchor:.4g} {self.unit}"
                f" | {self.goal} | {met} | {self.note} |")


RESULTS: list[Ratio] = []


def machine() -> str:
    """`nproc` and CPU model of this machine, for the BENCHMARKS.md tables."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, torch {torch.__version__}, {THREADS} thread(s)"


@pytest.fixture
def record_ratio():
    """record_ratio(name, ours, anchor, *, ratio=None, goal='', met=None, unit='s', note='') -> Ratio.

    `ratio` defaults to anchor / ours (a speed-up: higher is better); pass it for other figures.
    """

    def record(name, ours, anchor, *, ratio=None, goal="", met=None, unit="s", note="") -> Ratio:
        if quick():  # tiny sizes: the figure is no measurement; only check that it is a number
            assert ours == ours and anchor == anchor, f"{name}: NaN timing"
            met = None
            note = "quick mode (tiny size): not a measurement"
        r = Ratio(name, float(ours), float(anchor), float(anchor / ours if ratio is None else ratio), goal,
                  met, unit, note)
        RESULTS.append(r)
        print(f"\n[bench] {r.name}: {r.ratio:.3g}× (ours {r.ours:.4g} {unit}, anchor {r.anchor:.4g} {unit})"
              f"{' goal ' + goal if goal else ''}{'' if met is None else (' MET' if met else ' MISSED')}"
              f"{' - ' + note if note else ''}", flush=True)
        return r

    return record


def benchmark_best(benchmark, default: float) -> float:
    """pytest-benchmark's best time (no stats under --benchmark-disable: then `default`)."""
    return benchmark.stats.stats.min if benchmark.stats else default


def best_times(fns: dict[str, Callable[[], object]], rounds: int,
               setups: dict[str, Callable[[], object]] | None = None) -> dict[str, float]:
    """Best wall time of each fn over `rounds`, the fns run round-robin so load drifts hit all alike.

    `setups[name]()` (untimed) runs before each timed call and its result is passed to the fn.
    """
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            arg = setups[name]() if setups and name in setups else None
            t0 = time.perf_counter()
            fn() if arg is None else fn(arg)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not _SKIPPED:
        return
    tr = terminalreporter
    if _SKIPPED:
        tr.section("benchmarks skipped in quick mode (each counts as a failure)")
        for nodeid in _SKIPPED:
            tr.write_line(nodeid)
    if quick():
        tr.write_line(f"quick mode: {len(RESULTS)} figures computed at tiny sizes (not measurements)")
        return
    tr.section("ticketbench ratios")
    tr.write_line(f"machine: {machine()}; date: {datetime.date.today().isoformat()}")
    tr.write_line("| benchmark | ratio | ours | anchor | goal | status | note |")
    tr.write_line("|---|---|---|---|---|---|---|")
    for r in RESULTS:
        tr.write_line(r.row())
