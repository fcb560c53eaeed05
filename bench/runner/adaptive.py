"""Seeds where they matter (`matrix.adaptive`): the matrix stage runs its cells in waves.

The first wave is the plan's cells (`matrix.seeds` per ticket cell, `max(seeds, dense_seeds)` for dense).
After each wave, a ticket cell — a (source, sparsity, task, search replicate) — gets one more fine-tuning
seed only while the decision it feeds is undecided: its anytime-valid confidence sequence for the cell's
mean in % of dense (`bench.core.sequential.relative_cs`, Howard et al. 2021) still contains one of
`matrix.adaptive_thresholds`; it stops when none is inside ("decided") or at `matrix.adaptive_max_seeds`
("cap"). Dense of a task, the yardstick of all its cells, gets one more seed in every wave in which one of
its cells does (up to the cap). The dense convergence reference keeps its seeds.

Deterministic: the next wave is a function of the plan and the values of the finished runs only, so the
same plan and the same results take the same decisions (a rerun resumes from the stored runs and replays
them). Without `matrix.adaptive` there is one wave and every cell stops as "fixed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from bench.core.sequential import decided, relative_cs
from bench.plan import Cell, Plan
from bench.runner.executors.base import Summary

# Why a cell stopped: matrix.seeds without adaptive seeds; its CS cleared every threshold; the cap; no dense
# to be relative to; (dense) every cell of its task settled.
FIXED, DECIDED, CAP, NO_DENSE, REFERENCE = "fixed", "decided", "cap", "no dense reference", "cells settled"


@dataclass(frozen=True)
class CellSeeds:
    """Where one cell stands: its seeds so far, why it stopped, and its CS in % of dense (adaptive only)."""

    source: str
    sparsity: float
    task: str
    search_seed: int
    seeds: int
    stopped: str
    ci_low: float = math.nan
    ci_high: float = math.nan

    def row(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}


def _key(cell: Cell) -> tuple:
    return (cell.source, cell.sparsity, cell.task, cell.search_seed)


def next_wave(plan: Plan, cells: list[Cell], values: dict) -> tuple[list[Cell], list[CellSeeds]]:
    """(the next wave's cells, where every cell stands) given the cells run so far and `values`
    {Cell: headline value, or None for a run that failed or has no record}."""
    m = plan.config.matrix
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        if c.steps_factor == 1:
            groups.setdefault(_key(c), []).append(c)

    def observed(group: list[Cell]) -> list[float]:
        return [values[c] for c in group if values.get(c) is not None]

    dense = {k[2]: g for k, g in groups.items() if k[0].is_dense}
    new, status, wants_dense = [], {}, set()
    for key, group in groups.items():
        if key[0].is_dense:
            continue
        n = len(group)
        if not m.adaptive:
            status[key] = CellSeeds(str(key[0]), key[1], key[2], key[3], n, FIXED)
            continue
        reference = dense.get(key[2])
        if not reference:
            status[key] = CellSeeds(str(key[0]), key[1], key[2], key[3], n, NO_DENSE)
            continue
        ci = relative_cs(observed(group), observed(reference), m.adaptive_sigma, m.adaptive_alpha,
                         n_opt=m.adaptive_max_seeds)
        if decided(ci, m.adaptive_thresholds):
            why = DECIDED
        elif n >= m.adaptive_max_seeds:
            why = CAP
        else:
            why = ""
            new.append(Cell(key[0], key[1], key[2], max(c.seed for c in group) + 1, search_seed=key[3]))
            wants_dense.add(key[2])
        status[key] = CellSeeds(str(key[0]), key[1], key[2], key[3], n, why or "running", ci.lo, ci.hi)
    for task, group in dense.items():
        n = len(group)
        if task in wants_dense and n < m.adaptive_max_seeds:
            new.append(Cell(group[0].source, 0.0, task, max(c.seed for c in group) + 1))
            why = "running"
        else:
            why = FIXED if not m.adaptive else (CAP if n >= m.adaptive_max_seeds else REFERENCE)
        status[(group[0].source, 0.0, task, 0)] = CellSeeds(str(group[0].source), 0.0, task, 0, n, why)
    return new, [status[k] for k in groups if k in status]


def _merge(a: Summary, b: Summary) -> Summary:
    return Summary(total=a.total + b.total, done=a.done + b.done, cached=a.cached + b.cached,
                   failed=a.failed + b.failed, wall_s=a.wall_s + b.wall_s)


def run_waves(plan: Plan, make: Callable, run: Callable, value_of: Callable,
              on_wave: Callable | None = None, say: Callable = lambda msg: None) -> tuple[Summary, list[CellSeeds]]:
    """Run the plan's cells, then wave after wave of the cells `next_wave` asks for, until none.

    `make(cells) -> pairs` (one per cell, in order), `run(pairs) -> Summary`, `value_of(pair) -> float | None`
    (the finished run's headline value), `on_wave(pairs so far, statuses)` after each decision (the stage
    rewrites the plan's manifest). Returns the merged summary and where every cell stands at the end."""
    cells = list(plan.cells)
    pairs = list(make(cells))
    if on_wave:
        on_wave(pairs, [])
    summary = run(pairs)
    wave = 1
    while True:
        values = {c: value_of(p) for c, p in zip(cells, pairs)}
        new, status = next_wave(plan, cells, values)
        if on_wave:
            on_wave(pairs, status)
        if not new:
            return summary, status
        wave += 1
        more = list(make(new))
        say(f"[matrix] wave {wave}: {len(new)} more seed(s) for cells still undecided")
        cells += new
        pairs += more
        summary = _merge(summary, run(more))
