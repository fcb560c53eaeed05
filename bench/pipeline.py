"""The whole pipeline, world → pretrain → find → matrix → report, for one plan.

It sits above the runner and the reports (the report reads what the runner stored), so neither
imports the other.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import yaml

import reports
from bench.config import STAGES, Config, apply_overrides, to_dict
from bench.core.errors import ConfigError, DataError, RunFailed
from bench.core.io import MAX_STORE_BYTES, atomic_write_json, atomic_write_text, read_json
from bench.core.layout import Layout
from bench.core.pipes import refuse_distributed_launch
from bench.core.validate import check_timings
from bench.plan import Plan, build_plan
from bench.runner.guards import check_task_data
from bench.runner.progress import say
from bench.runner.stages import (
    search_jobs,
    search_key,
    stage_find,
    stage_find_and_matrix,
    stage_matrix,
    stage_pretrain,
    stage_world,
)
from bench.runner.study import Study
from reports.fresh import inputs_key, is_current, mark_current


def _report(out_dir: Path, cfg: Config, quiet: bool) -> None:
    """Build the report, unless the last build read this very store and config (reports/fresh.py)."""
    key = inputs_key(out_dir, to_dict(cfg))
    if is_current(out_dir, key):
        say(quiet, "[report] the store did not change since the last build: kept")
        return
    reports.build_report(out_dir, config=cfg)  # imports pandas and matplotlib on first use (reports/__init__.py)
    mark_current(out_dir, key)


def run_pipeline(plan: Plan | Config, out: str | Path | None = None, stages=STAGES, upto: bool = False,
                 quiet: bool = False, **matrix) -> Path:
    """Run the requested stages of a plan (or of a config's plan) in order — with `upto`, also every
    earlier stage — skipping done ones. `matrix` keywords are overrides of the matrix section
    (`tasks=["vqa"]` is `--set matrix.tasks=vqa`), so a subset is a plan of its own."""
    refuse_distributed_launch()
    stages = list(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        # An unknown name would otherwise run nothing and return as if done.
        raise ConfigError(f"stages: expected names from {', '.join(STAGES)}, found {stages!r}")
    if isinstance(plan, Config) or matrix:
        cfg = plan if isinstance(plan, Config) else plan.config
        given = {k: v for k, v in matrix.items() if v is not None}
        cfg = apply_overrides(cfg, [f"matrix.{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                                    for k, v in given.items()])
        plan = build_plan(cfg)
    cfg = plan.config
    out_dir = Path(out) if out else Layout.default(cfg.name)
    layout = Layout(out_dir)
    if upto:
        stages = STAGES[: STAGES.index(stages[-1]) + 1]
    t_start = time.perf_counter()
    # The output directory and the report path are printed even with --quiet: they are the answer.
    say(False, f"ticketbench: {cfg.name} (plan {plan.hash}) -> {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    study = Study(cfg, out_dir)
    timings: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        return result

    theta0_dir = roots = summary = None
    failed_searches: dict = {}
    if "world" in stages:
        timed("world", lambda: stage_world(plan, study, quiet))
    check_task_data(plan, study, stages)  # every data file read before any training starts
    # Written once the inputs are checked: a command refused for its input leaves config.yaml as it was.
    atomic_write_text(layout.inside(layout.config), yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if "pretrain" in stages:
        theta0_dir = timed("pretrain", lambda: stage_pretrain(plan, study, quiet))
    if "find" in stages or "matrix" in stages:
        theta0_dir = theta0_dir or stage_pretrain(plan, study, quiet=True)
    if "find" in stages and "matrix" in stages:
        # A source's cells start as soon as its tickets exist (the matrix's first wave streams behind the
        # searches); a failed search fails only its own cells. "find" times both, "matrix" what is left.
        roots, failed_searches = timed("find", lambda: stage_find_and_matrix(plan, study, theta0_dir, quiet))
    elif "find" in stages:
        roots = timed("find", lambda: stage_find(plan, study, theta0_dir, quiet))
    if "matrix" in stages:
        roots = roots or {search_key(j.search): j.root for j in search_jobs(plan, study, theta0_dir)}
        summary = timed("matrix", lambda: stage_matrix(plan, study, theta0_dir, roots, quiet, failed_searches))
    nothing_done = summary is not None and summary.failed and not (summary.done or summary.cached)
    if "report" in stages and not nothing_done:  # every run failed: the failure summary below says so
        timed("report", lambda: _report(out_dir, cfg, quiet))
    total = time.perf_counter() - t_start
    timing_file = layout.inside(layout.timings)
    try:
        old = check_timings(timing_file, read_json(timing_file, MAX_STORE_BYTES)) if timing_file.exists() else {}
    except DataError as e:  # bookkeeping of earlier runs only: replaced, with a line saying so
        print(f"ticketbench: warning: {e}; writing a new one", file=sys.stderr)
        old = {}
    atomic_write_json(timing_file, {**old, **timings, "last_total_s": round(total, 2),
                                    "device": str(study.device), "threads": torch.get_num_threads()})
    if "report" in stages and not nothing_done:
        say(False, f"report: {layout.report() / 'README.md'}")
    say(quiet, f"ticketbench: done in {total:.0f}s -> {out_dir}")
    if summary is not None and summary.failed:
        # The other pairs ran and the report was written; the exit status still says something failed.
        first = summary.failed[0]
        raise RunFailed(f"{len(summary.failed)} of {summary.total} run(s) failed (first: {first.label}: {first.reason});"
                        f" the report covers the rest; re-run to retry them")
    return out_dir
