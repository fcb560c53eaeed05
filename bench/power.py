"""Power before compute: per claim, the smallest difference a plan can resolve, and whether that is enough.

`ticketbench plan` prints it after the cost. Noise is a run's seed std in points: measured per task in an
existing store (`reports.seeds.measured_noise`, pooled within cells over fine-tuning seeds) or an assumed
value that the table states. The rule is the normal approximation of a two-sided test at level α with
power 1 − β:

    resolvable difference = (z_{1−α/2} + z_{1−β}) · σ · sqrt(1/n_a + 1/n_b)   (two means, n_a and n_b runs)

and `/ sqrt(T)` for a mean over T tasks (pre-training transfer) or paired cells (IMP vs random, σ√2 per
pair). A claim is testable at the design when the difference it must resolve — its decision distance — is at
least that: strict matching one dense std (its margin), relaxed matching (1 − report.relaxed) of dense, the
pre-training claim the gap between dense and its threshold (98 % at 60 %), IMP vs random a difference of one
seed std (its tie margin is half of that: resolved means beyond the margin with power 1 − β). It is a planning estimate, not a verdict: the report's intervals decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from bench.plan import Plan

ALPHA, POWER = 0.05, 0.8
# Stated when no store has measured them: a toy task's seed std (points) and dense score (points).
ASSUMED_NOISE, ASSUMED_DENSE = 2.5, 60.0
# The VL-LTH pre-training-ticket claim (reports.claims.VL_PRETRAIN_TRANSFER, restated: bench may not read reports).
PRETRAIN_CLAIM = {0.6: 98.0, 0.7: 96.0}


def z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)


def resolvable(sigma: float, n_a: float, n_b: float = math.inf, groups: int = 1) -> float:
    """The smallest true difference (points) found with power POWER at level ALPHA: two means of n_a and
    n_b runs (n_b = ∞: against a fixed threshold), averaged over `groups` independent groups."""
    if n_a < 1 or n_b < 1:
        return math.inf
    return z_sum() * sigma * math.sqrt(1 / n_a + 1 / n_b) / math.sqrt(max(groups, 1))


def seeds_needed(sigma: float, distance: float, two_arms: bool = True, groups: int = 1, cap: int = 1000) -> int | None:
    """The fewest runs per arm (the same for both arms when `two_arms`) that resolve `distance`; None beyond `cap`."""
    for n in range(2, cap + 1):
        if resolvable(sigma, n, n if two_arms else math.inf, groups) <= distance:
            return n
    return None


@dataclass(frozen=True)
class ClaimPower:
    claim: str
    design: str
    noise: float
    resolves: float  # points
    needs: float  # points: the claim's decision distance
    testable: bool
    why: str


def claim_power(plan: Plan, noise: dict | None = None) -> tuple[list[ClaimPower], str]:
    """Per claim, what `plan` can resolve; `noise` is {task: (seed std, dense mean)} measured in a store
    (tasks missing from it take the assumed values). Returns the rows and where the noise came from."""
    c = plan.config
    noise = noise or {}
    tasks = list(c.matrix.claim_tasks or c.matrix.tasks)  # the tasks that decide the claims
    measured = [t for t in tasks if t in noise]
    sig = [noise[t][0] if t in noise else ASSUMED_NOISE for t in tasks]
    den = [noise[t][1] if t in noise and math.isfinite(noise[t][1]) else ASSUMED_DENSE for t in tasks]
    sigma, dense = max(sig), sum(den) / len(den)  # the noisiest task decides per-task claims
    n_t = c.matrix.seeds * c.find.seeds  # a cell's runs: fine-tuning seeds × search replicates
    n_d = plan.dense_seeds
    cap = c.matrix.adaptive_max_seeds if c.matrix.adaptive else None
    arms = f"{n_t} ticket run(s) per cell ({c.matrix.seeds} seed(s) × {c.find.seeds} search(es)), dense {n_d}"
    if cap:
        arms += f"; adaptive up to {cap} seeds"
        n_t, n_d = max(n_t, cap * c.find.seeds), max(n_d, cap)  # the best the cap allows
    sources = {str(s.source) for s in plan.searches}
    chosen = sorted({cell.sparsity for cell in plan.cells if not cell.source.is_dense and cell.task in tasks})
    rows = []

    def row(claim: str, design: str, resolves: float, needs: float, extra: str = "", prerequisite: str = ""):
        ok = not prerequisite and min(n_t, n_d) >= 2 and resolves <= needs
        problems = (["one seed: no spread, no interval"] if min(n_t, n_d) < 2 else []) + (
            [f"needs {extra}"] if resolves > needs else [])
        why = prerequisite or "; ".join(problems)
        rows.append(ClaimPower(claim, design, sigma, resolves, needs, ok, why))

    two = resolvable(sigma, n_t, n_d)
    balanced = "runs per cell and dense seeds each"
    row("strict matching (per task)", arms, two, sigma, f"≥ {seeds_needed(sigma, sigma)} {balanced}")
    gap = (1 - c.report.relaxed) * dense
    need = seeds_needed(sigma, gap)
    row(f"relaxed matching (≥ {100 * c.report.relaxed:g}% of dense, per task)", arms, two, gap,
        f"≥ {need} {balanced}" if need else f"more than 1000 {balanced}")
    pre = [s for s in PRETRAIN_CLAIM if any(abs(s - x) < 1e-9 for x in chosen)]
    for s in pre or [min(PRETRAIN_CLAIM)]:
        gap = (100 - PRETRAIN_CLAIM[s]) / 100 * dense
        res = resolvable(sigma, n_t, n_d, groups=len(tasks))
        need = seeds_needed(sigma, gap, groups=len(tasks))
        row(f"pre-training ticket keeps {PRETRAIN_CLAIM[s]:g}% at {s:.0%} (mean over tasks)",
            arms + f", {len(tasks)} task(s)", res, gap,
            f"≥ {need} {balanced}" if need else f"more than 1000 {balanced}",
            "" if ("imp:pretrain" in sources and s in pre) else
            ("no imp:pretrain source" if "imp:pretrain" not in sources else f"{s:.0%} is not a matrix sparsity"))
    imp = [s for s in sources if s.startswith("imp:") and s != "imp:pretrain"]
    pairs = len(tasks) * len(chosen)
    margin = sigma / 2  # the comparisons' tie margin: half a seed std
    res = resolvable(sigma * math.sqrt(2), n_t, groups=pairs)
    need = next((n for n in range(2, 1001) if margin + resolvable(sigma * math.sqrt(2), n, groups=pairs) <= sigma), None)
    row("IMP vs random (paired over task × sparsity)", f"{n_t} run(s) per cell, {pairs} task × sparsity cell(s)",
        margin + res, sigma, f"≥ {need} runs per cell" if need else "more runs per cell",
        "" if (imp and "random" in sources) else "needs an IMP source and random pruning")
    where = (f"seed noise measured in the store for {', '.join(measured)}" if measured else
             f"assumed seed noise {ASSUMED_NOISE:g} points and dense {ASSUMED_DENSE:g} points (no store measured)")
    if measured and len(measured) < len(tasks):
        where += f"; assumed {ASSUMED_NOISE:g} / {ASSUMED_DENSE:g} for the others"
    return rows, where


def describe_power(plan: Plan, noise: dict | None = None) -> str:
    rows, where = claim_power(plan, noise)
    lines = [f"power before compute (α = {ALPHA:g}, power {POWER:.0%}; {where}; σ = the noisiest task's):"]
    w = max(len(r.claim) for r in rows)
    for r in rows:
        verdict = "testable" if r.testable else f"not testable: {r.why}"
        lines.append(f"  {r.claim:<{w}}  resolves {r.resolves:5.2f} pts, needs {r.needs:5.2f} pts  → {verdict}")
        lines.append(f"  {'':<{w}}  ({r.design}; σ {r.noise:.2f})")
    return "\n".join(lines)
