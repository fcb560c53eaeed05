"""Seed noise, paired differences and confidence intervals: the statistics behind every
A-versus-B statement of the report (the claims) and of `--compare`.

Small API, numpy and pandas only (no scipy):

- `seed_noise(df)`: per (backbone, task), how much one run moves with its seed — from the dense
  seeds and from every cell with several seeds (pooled). The tie margin of a comparison and the
  "clearly above chance" test are built on it.
- `mean_ci(x, floor_sd)`: a t-interval for the mean of a few seeds (3–5 values: a bootstrap of so
  few values is far too narrow).
- `bootstrap_ci(x)`: a percentile bootstrap interval for the mean of many (≥ 10) paired cells.
- `paired(a, b)`: paired differences A − B over the cells both have (same backbone, task,
  sparsity and seed, so seed effects shared by both runs cancel).
- `compare_paired(diffs, noise)`: the mean paired difference, its 95 % CI and an outcome —
  win / loss / tie / inconclusive (rule below) — or not testable.

Typical use (e.g. a method against a reference, one row per (backbone, task, sparsity, seed) each):

    noise = seed_noise(df)                       # per (backbone, task)
    p = compare_paired(paired(method_rows, reference_rows), noise)
    p.outcome, p.mean, (p.lo, p.hi), p.margin    # 'win' | 'loss' | 'tie' | 'inconclusive' | 'not testable'

Outcome rule (`classify`): with margin δ = `TIE_FRACTION` × the seed noise, "win" when the whole
CI lies above +δ, "loss" when below −δ, "tie" when it lies inside [−δ, +δ] (any difference is
smaller than half a seed std), otherwise "inconclusive" (the data cannot tell a real difference
from noise). Anything built on one seed per cell is "not testable": there is no noise estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from reports.store import DENSE

LEVEL = 0.95
# A difference smaller than half of one run's seed std is treated as no difference.
TIE_FRACTION = 0.5
N_BOOT = 2000
BOOTSTRAP_MIN = 10
PAIR_KEYS = ["backbone", "task", "sparsity", "seed"]

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (then ~ normal).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t975(dof: int) -> float:
    """The 97.5 % quantile of Student's t (the 95 % two-sided interval's multiplier)."""
    if dof < 1:
        return math.nan
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


# ---------------------------------------------------------------------------------------------
# Seed noise

def seed_noise(df: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, task): `dense_std` over the dense seeds (NaN with one), `pooled_std` over every
    (source, sparsity) cell with ≥ 2 seeds (dense included; `pooled_dof` = Σ (seeds − 1)), and
    `noise` = the larger of the two: a collapsed cell (every seed predicts the majority class,
    std 0) cannot shrink it, and an unstable sparse cell widens it. NaN when no cell has two seeds."""
    rows = []
    for (bb, task), g in df.groupby(["backbone", "task"], sort=False):
        cells = g.groupby(["source", "sparsity"])["value"]
        n, var = cells.count(), cells.var(ddof=1)
        ok = n >= 2
        dof = int((n[ok] - 1).sum())
        pooled = math.sqrt(float(((n[ok] - 1) * var[ok]).sum()) / dof) if dof else math.nan
        dense = g[g["source"] == DENSE]["value"]
        dense_std = float(dense.std(ddof=1)) if len(dense) >= 2 else math.nan
        both = [x for x in (dense_std, pooled) if not math.isnan(x)]
        rows.append({"backbone": bb, "task": task, "dense_seeds": int(dense.size), "dense_std": dense_std,
                     "pooled_std": pooled, "pooled_dof": dof, "noise": max(both) if both else math.nan})
    return pd.DataFrame(rows, columns=["backbone", "task", "dense_seeds", "dense_std", "pooled_std", "pooled_dof",
                                       "noise"])


def noise_of(noise: pd.DataFrame, backbone: str, task: str) -> float:
    """`noise` of one (backbone, task) from a `seed_noise` frame (NaN when absent)."""
    row = noise[(noise["backbone"] == backbone) & (noise["task"] == task)]
    return float(row["noise"].iloc[0]) if len(row) else math.nan


# ---------------------------------------------------------------------------------------------
# Intervals

def mean_ci(x, floor_sd: float = 0.0) -> tuple[float, float, float]:
    """(mean, lo, hi): the 95 % t-interval of the mean of a few values. The sd used is at least
    `floor_sd` (e.g. the task's seed noise), so three seeds that happen to agree do not make an
    interval look tight. (nan, nan, nan) for no values; lo = hi = NaN for one."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    sd = max(float(x.std(ddof=1)), floor_sd if not math.isnan(floor_sd) else 0.0)
    half = t975(x.size - 1) * sd / math.sqrt(x.size)
    return m, m - half, m + half


def bootstrap_ci(x, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling the values; seeded, so a report is
    reproducible). NaNs with fewer than two values."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def interval(x, floor_sd: float, seed: int = 0) -> tuple[float, float]:
    """The 95 % CI of the mean of `x`: a bootstrap from `BOOTSTRAP_MIN` values (a bootstrap of a
    handful is far too narrow), else `mean_ci` with its sd floored at `floor_sd`."""
    x = np.asarray(x, dtype=float)
    return bootstrap_ci(x, seed=seed) if x.size >= BOOTSTRAP_MIN else mean_ci(x, floor_sd)[1:]


# ---------------------------------------------------------------------------------------------
# Paired comparisons

def paired(a: pd.DataFrame, b: pd.DataFrame, keys: list[str] = PAIR_KEYS) -> pd.DataFrame:
    """Paired differences: rows of `a` and `b` (each with `keys` + `value`, one row per key) joined
    on `keys`; columns keys + value_a, value_b, diff = value_a − value_b."""
    for side, f in (("a", a), ("b", b)):
        if f.duplicated(keys).any():  # e.g. a method with several sources: pick one per cell first
            raise ValueError(f"paired(): side {side} has several rows for one ({', '.join(keys)}) cell")
    m = a[keys + ["value"]].merge(b[keys + ["value"]], on=keys, suffixes=("_a", "_b"))
    m["diff"] = m["value_a"] - m["value_b"]
    return m


@dataclass
class Paired:
    """One A-versus-B statement: mean paired difference (points), 95 % CI, tie margin, outcome."""

    cells: int
    seeds: int
    mean: float
    lo: float
    hi: float
    margin: float
    outcome: str  # win | loss | tie | inconclusive | not testable
    reason: str = ""

    def text(self, digits: int = 1) -> str:
        if self.cells == 0:
            return "no paired cells"
        if math.isnan(self.lo):
            return f"{self.mean:+.{digits}f} points over {self.cells} cells"
        return (f"{self.mean:+.{digits}f} points [95% CI {self.lo:+.{digits}f}, {self.hi:+.{digits}f}] over "
                f"{self.cells} cells, {self.seeds} seeds; tie margin ±{self.margin:.{digits}f}")

    def as_dict(self) -> dict:
        return asdict(self)


def classify(lo: float, hi: float, margin: float) -> str:
    """win / loss / tie / inconclusive from a CI and the tie margin (see the module docstring)."""
    if any(math.isnan(v) for v in (lo, hi, margin)):
        return "not testable"
    if lo > margin:
        return "win"
    if hi < -margin:
        return "loss"
    if lo >= -margin and hi <= margin:
        return "tie"
    return "inconclusive"


def compare_paired(diffs: pd.DataFrame, noise: pd.DataFrame, tie_fraction: float = TIE_FRACTION,
                   seed: int = 0) -> Paired:
    """Mean paired difference over the cells of `diffs` (from `paired`) with a 95 % CI (bootstrap
    from `BOOTSTRAP_MIN` cells, else `mean_ci` floored at the seed noise), a tie
    margin of `tie_fraction` × the seed noise (root mean square over the cells' tasks, from
    `seed_noise`) and the outcome of `classify`. Not testable with one seed per cell (no noise
    estimate) or with no cells."""
    n = len(diffs)
    if n == 0:
        return Paired(0, 0, math.nan, math.nan, math.nan, math.nan, "not testable", "no paired cells")
    seeds = int(diffs["seed"].nunique())
    mean = float(diffs["diff"].mean())
    sig = [noise_of(noise, bb, t) for bb, t in zip(diffs["backbone"], diffs["task"])]
    if seeds < 2 or any(math.isnan(s) for s in sig):
        return Paired(n, seeds, mean, math.nan, math.nan, math.nan, "not testable",
                      "one seed per cell: no seed-noise estimate")
    rms = math.sqrt(float(np.mean(np.square(sig))))
    margin = tie_fraction * rms
    lo, hi = interval(diffs["diff"].to_numpy(), rms, seed=seed)
    out = classify(lo, hi, margin)
    return Paired(n, seeds, mean, lo, hi, margin, out)
