"""Plan manifests: which runs (and tickets) a plan asked for, so results are never pooled across plans.

The matrix stage writes `<out>/plans/<plan hash>.json` — the plan's effective config, θ0, its
searches, every run id it asked for and every cell with its run id — and points `<out>/plans/LAST` at it. Runs are shared between
plans when their ids agree (same settings, ticket and θ0), but a report reads exactly one plan's runs
unless asked to mix plans (`reports.store.load_results(out, plans=...)`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.config import to_dict
from bench.core.errors import DataError, TicketbenchError
from bench.core.io import (
    MAX_STORE_BYTES,
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_text_bounded,
    safe_name,
)
from bench.core.layout import Layout
from bench.core.provenance import package_versions
from bench.core.validate import check_manifest
from bench.runner.store import RunStore

if TYPE_CHECKING:  # only a type here: reading manifests must not import torch (ticketbench.load_results)
    from bench.plan import Plan


def manifest_path(out: str | Path, plan_hash: str) -> Path:
    return Layout(out).manifest(plan_hash)


def write_manifest(out: str | Path, plan: Plan, theta0_dir: Path, roots: dict, pairs: list,
                   seeds: list | None = None) -> Path:
    """Record what `plan` asks for (before running it, so an interrupted plan still has its manifest);
    `seeds`: each cell's seeds and why it stopped (`bench.runner.adaptive.CellSeeds.row`), once known."""
    layout = Layout(out)
    path = layout.inside(layout.manifest(plan.hash))
    atomic_write_json(path, {
        "plan": plan.hash, "name": plan.config.name, "written_at": time.time(), "versions": package_versions(),
        "config": to_dict(plan.config), "theta0": {"dir": str(Path(theta0_dir).name),
                                                   "hash": Layout.done(theta0_dir).read_text().strip()},
        # Replicate 0 under its source's name; further search replicates (find.seeds) as "source#r".
        "searches": {str(src) + (f"#{r}" if r else ""): str(Path(root).name) for (src, r), root in roots.items()},
        "runs": list(dict.fromkeys(p.run_id for p in pairs)),
        # Every cell with its run: cells with identical tickets share one run, reported under each source.
        "cells": [{"run": p.run_id, "source": p.source, "sparsity": p.sparsity, "task": p.task, "seed": p.seed,
                   "steps_factor": p.steps_factor, "search_seed": p.search_seed} for p in pairs],
        **({"seeds": seeds} if seeds else {}),
    })
    atomic_write_text(layout.last, plan.hash + "\n")
    return path


def known_plans(out: str | Path) -> list[str]:
    """Plan hashes with a manifest under `<out>/plans/`, oldest first."""
    files = sorted(Layout(out).manifests(), key=lambda p: p.stat().st_mtime)
    return [p.stem for p in files]


def read_manifest(out: str | Path, plan_hash: str | None = None) -> dict:
    """A plan's manifest; by default the last plan run in `out`. One-line errors name what is missing."""
    out = Path(out)
    if plan_hash is None:
        last = Layout(out).last
        if not last.exists():
            raise DataError(f"{out}: no plan has run here ({last} is missing); run `ticketbench run` first")
        plan_hash = read_text_bounded(last, 1 << 10, "plan pointer").strip()
        try:
            safe_name(plan_hash, "plan hash")
        except TicketbenchError:
            raise DataError(f"{last}: expected a plan hash, found {plan_hash[:40]!r}; re-run `ticketbench matrix` "
                            "to rewrite it, or give --plan HASH") from None
    path = manifest_path(out, plan_hash)
    if not path.exists():
        known = known_plans(out)
        raise DataError(f"{out}: no plan {plan_hash} (known: {', '.join(known) or 'none'})")
    return check_manifest(path, read_json(path, MAX_STORE_BYTES))


def plans_table(out: str | Path) -> list[dict]:
    """One row per plan stored in `out`, oldest first: hash, config name, when its manifest was written,
    its cells and distinct runs, how many of those runs are done, and whether it is the last plan run."""
    out = Path(out)
    last_file = Layout(out).last
    last = read_text_bounded(last_file, 1 << 10, "plan pointer").strip() if last_file.exists() else None
    store = RunStore(out)
    rows = []
    for h in known_plans(out):
        m = read_manifest(out, h)
        runs = m["runs"]
        written = m.get("written_at")
        rows.append({"plan": h, "name": str(m.get("name", "?")), "written": time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(float(written))) if isinstance(written, (int, float)) else "?",
            "cells": len(m.get("cells") or ()), "runs": len(runs), "done": sum(store.is_done(r) for r in runs),
            "last": h == last})
    return rows
