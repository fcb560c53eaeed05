"""Plan manifests: which runs (and tickets) a plan asked for, so results are never pooled across plans.

The matrix stage writes `<out>/plans/<plan hash>.json` — the plan's effective config, θ0, its
searches, every run id it asked for and every cell with its run id — and points `<out>/plans/LAST` at it. Runs are shared between
plans when their ids agree (same settings, ticket and θ0), but a report reads exactly one plan's runs
unless asked to mix plans (`reports.store.load_results(out, plans=...)`).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.config import to_dict
from bench.core.errors import DataError
from bench.core.io import atomic_write_json, atomic_write_text, read_json, safe_name
from bench.plan import Plan

PLANS = "plans"
LAST = "LAST"


def manifest_path(out: str | Path, plan_hash: str) -> Path:
    return Path(out) / PLANS / f"{safe_name(plan_hash, 'plan hash')}.json"


def write_manifest(out: str | Path, plan: Plan, theta0_dir: Path, roots: dict, pairs: list,
                   seeds: list | None = None) -> Path:
    """Record what `plan` asks for (before running it, so an interrupted plan still has its manifest);
    `seeds`: each cell's seeds and why it stopped (`bench.runner.adaptive.CellSeeds.row`), once known."""
    path = manifest_path(out, plan.hash)
    atomic_write_json(path, {
        "plan": plan.hash, "name": plan.config.name, "written_at": time.time(),
        "config": to_dict(plan.config), "theta0": {"dir": str(Path(theta0_dir).name),
                                                   "hash": (Path(theta0_dir) / "DONE").read_text().strip()},
        # Replicate 0 under its source's name; further search replicates (find.seeds) as "source#r".
        "searches": {str(src) + (f"#{r}" if r else ""): str(Path(root).name) for (src, r), root in roots.items()},
        "runs": list(dict.fromkeys(p.run_id for p in pairs)),
        # Every cell with its run: cells with identical tickets share one run, reported under each source.
        "cells": [{"run": p.run_id, "source": p.source, "sparsity": p.sparsity, "task": p.task, "seed": p.seed,
                   "steps_factor": p.steps_factor, "search_seed": p.search_seed} for p in pairs],
        **({"seeds": seeds} if seeds else {}),
    })
    atomic_write_text(Path(out) / PLANS / LAST, plan.hash + "\n")
    return path


def known_plans(out: str | Path) -> list[str]:
    """Plan hashes with a manifest under `<out>/plans/`, oldest first."""
    files = sorted(Path(out, PLANS).glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [p.stem for p in files]


def read_manifest(out: str | Path, plan_hash: str | None = None) -> dict:
    """A plan's manifest; by default the last plan run in `out`. One-line errors name what is missing."""
    out = Path(out)
    if plan_hash is None:
        last = out / PLANS / LAST
        if not last.exists():
            raise DataError(f"{out}: no plan has run here ({last} is missing); run `ticketbench run` first")
        plan_hash = last.read_text().strip()
    path = manifest_path(out, plan_hash)
    if not path.exists():
        known = known_plans(out)
        raise DataError(f"{out}: no plan {plan_hash} (known: {', '.join(known) or 'none'})")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not isinstance(data.get("config"), dict):
        raise DataError(f"{path}: not a plan manifest (expected fields 'runs' and 'config')")
    return data
