"""One interval family for every statement of the report: claims, `report --compare`, `ticketbench
compare` (the leaderboard) and the dense-versus-chance table all take their intervals from here.

**The design.** Runs are nested: a task holds ticket *search replicates* (`search_seed`: one IMP
trajectory, one random mask, one draw of any method; a frame without the column is one search,
`search_seed` 0) and each replicate is fine-tuned with several *seeds*. Tasks are independent strata.

**The interval** (`estimate`): a stratified two-stage cluster bootstrap (Efron & Tibshirani 1993,
*An Introduction to the Bootstrap*, ch. 6 and 12; Davison & Hinkley 1997, §3.8 for the two stages):
within one task, draw search replicates with replacement, then fine-tuning seeds with replacement
within each drawn replicate (a seed's runs at every sparsity travel together, so what they share
stays shared). Its variance, times n / (n − 1) for the n top-level units (the bootstrap's known
downward bias for a mean), is floored at the noise floor (one run's seed noise on that task divided
by the runs behind each cell mean: agreeing seeds cannot make an interval look tight), and the
95 % interval is the estimate ± Student's t quantile (n − 1 degrees of freedom) × that standard
error — E&T's "standard" bootstrap interval with a small-sample quantile, which a handful of seeds
needs (a percentile interval of three values is far too narrow). Deterministic: every call draws
from a generator seeded with `RNG_SEED`, so the same store gives the same report.

Statements over several tasks combine the per-task estimates (`combine`: independent strata,
Welch–Satterthwaite degrees of freedom); "% of dense" divides by dense's own estimate (`ratio`: the
dense mean's error propagated by the delta method, dense and ticket runs resampled independently).
An estimate resting on one run per cell has no interval: `Estimate.text` says "one seed: no
interval", and every rule built on it says "not testable".

**Noise.** A task's seed noise (`seed_noise`) is the larger of dense's own seed std and the std
pooled over every cell with two seeds or more: the floor of the intervals and the yardstick of the
tie margin (a floor only widens). Which tasks count at all is decided from dense's own seeds
(`reports.claims.dense_vs_chance`), so a noisy control cannot drop a task from the verdicts.

**A-versus-B** (`paired`, `compare`): paired differences over (backbone, task, sparsity,
search_seed, seed) — search replicate r of A with replicate r of B — estimated as above, and
`classify`: with margin δ = `TIE_FRACTION` × the seed noise, "win" when the whole CI lies above +δ,
"loss" when below −δ, "tie" when inside [−δ, +δ], else "inconclusive". `Estimate.p_outside(δ)` is
the matching p-value, for Holm's correction across methods (Holm 1979, `holm`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.store import DENSE

LEVEL = 0.95
ALPHA = 1 - LEVEL
N_BOOT = 2000
RNG_SEED = 20261207  # fixed: the same store gives the same intervals
# A difference smaller than half of one run's seed std is treated as no difference.
TIE_FRACTION = 0.5
SEARCH = "search_seed"
PAIR_KEYS = ["backbone", "task", "sparsity", SEARCH, "seed"]
ONE_SEED = "one seed: no interval"
NO_SPREAD = "no spread between seeds and no noise floor: no interval"


def with_search(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a `search_seed` column: a frame from before search replicates is one search (0)."""
    if SEARCH in df.columns and not df[SEARCH].isna().any():
        return df
    return df.assign(**{SEARCH: (df[SEARCH].fillna(0) if SEARCH in df.columns else 0)}).astype({SEARCH: int})


# ---------------------------------------------------------------------------------------------
# Student's t without scipy: the regularised incomplete beta by its continued fraction
# (Numerical Recipes, §6.4), a quantile by bisection.

def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom (normal beyond 1e6)."""
    if math.isnan(t) or math.isnan(dof) or dof <= 0:
        return math.nan
    if dof > 1e6:
        return 0.5 * math.erfc(t / math.sqrt(2))
    tail = 0.5 * _betainc(dof / 2, 0.5, dof / (dof + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, dof: float) -> float:
    """The `p` quantile of Student's t (p > 0.5), by bisection on `t_sf`."""
    if math.isnan(dof) or dof <= 0:
        return math.nan
    lo, hi = 0.0, 1e3
    for _ in range(48):  # 1e3 / 2^48: far below any printed digit
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, dof) > 1 - p else (lo, mid)
    return (lo + hi) / 2


@functools.lru_cache(maxsize=4096)
def _t975(dof: float) -> float:
    return t_quantile(0.975, dof)


def t975(dof: float) -> float:
    """The 97.5 % quantile of Student's t (the 95 % two-sided interval's multiplier)."""
    return math.nan if math.isnan(dof) else _t975(round(float(dof), 3))


# ---------------------------------------------------------------------------------------------
# Estimates

@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error (NaN: one seed, no interval) and degrees of freedom."""

    mean: float
    se: float = math.nan
    dof: float = math.nan
    runs: int = 0
    seeds: int = 0
    searches: int = 0
    note: str = ONE_SEED  # why there is no interval (when there is none)

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.se) or math.isnan(self.dof))

    @property
    def half(self) -> float:
        return t975(self.dof) * self.se if self.has_ci else math.nan

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def p_above(self, x: float) -> float:
        """One-sided p-value of "the true value is at most x" (small: clearly above x)."""
        return t_sf((self.mean - x) / self.se, self.dof) if self.has_ci and self.se > 0 else (
            math.nan if not self.has_ci else float(self.mean <= x))

    def p_below(self, x: float) -> float:
        """One-sided p-value of "the true value is at least x" (small: clearly below x)."""
        return Estimate(-self.mean, self.se, self.dof).p_above(-x)

    def p_outside(self, margin: float) -> float:
        """Two-sided p-value for a win (> +margin) or a loss (< −margin): 2 × the smaller one-sided
        p-value, so p < ALPHA ⇔ the 95 % CI lies wholly above +margin or below −margin."""
        return min(1.0, 2 * min(self.p_above(margin), self.p_below(-margin)))

    def text(self, digits: int = 1, unit: str = "") -> str:
        if math.isnan(self.mean):
            return "no runs"
        if not self.has_ci:
            return f"{self.mean:.{digits}f}{unit} ({self.note})"
        return (f"{self.mean:.{digits}f}{unit} [95% CI {self.lo:.{digits}f}, {self.hi:.{digits}f}]")


NO_RUNS = Estimate(math.nan)


def _boot_var(m: np.ndarray, sizes: np.ndarray, w: np.ndarray, rng: np.random.Generator, n_boot: int) -> float:
    """Variance of Σ_c w_c · mean(column c) under the two-stage bootstrap: `m` [units, cells] with
    units grouped by cluster (`sizes` units each, contiguous), NaN where a unit lacks a cell."""
    k = sizes.size
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    kb = rng.integers(0, k, size=(n_boot, k))
    nb = sizes[kb]                                                   # (B, K) seeds of each drawn cluster
    maxn = int(sizes.max())
    f = np.minimum((rng.random((n_boot, k, maxn)) * nb[..., None]).astype(int), nb[..., None] - 1)
    valid = np.arange(maxn)[None, None, :] < nb[..., None]
    vals = m[starts[kb][..., None] + f]                              # (B, K, maxn, C)
    ok = valid[..., None] & ~np.isnan(vals)
    cnt = ok.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        col = np.where(ok, vals, 0.0).sum(axis=(1, 2)) / cnt
    rep = col @ w
    rep = rep[np.isfinite(rep)]
    return float(rep.var(ddof=1)) if rep.size > 1 else math.nan


def estimate(rows: pd.DataFrame, cell: str | None = None, weights: dict | None = None, floor_sd: float = math.nan,
             n_boot: int = N_BOOT, value: str = "value") -> Estimate:
    """Σ_c w_c · (mean of the runs in cell c) over the runs of ONE task (`rows`: `value`, `seed`,
    optionally `search_seed` and the `cell` column, e.g. sparsity), with the two-stage cluster
    bootstrap's standard error floored at `floor_sd` / √(runs per cell) (module docstring).
    `weights`: {cell: w}; default equal weights summing to 1 (the mean over cells); `value`: the
    column estimated (e.g. `diff` of `paired`). One run per
    cell (one search, one seed): no interval."""
    if rows.empty:
        return NO_RUNS
    v = rows[value].to_numpy(dtype=float)
    search = rows[SEARCH].fillna(0).to_numpy() if SEARCH in rows.columns else np.zeros(len(rows))
    unit_keys = np.stack([search.astype(float), rows["seed"].to_numpy(dtype=float)], axis=1)
    units, uinv = np.unique(unit_keys, axis=0, return_inverse=True)  # sorted: search, then seed
    cells, cinv = np.unique(rows[cell].to_numpy() if cell else np.zeros(len(rows)), return_inverse=True)
    w = np.array([weights.get(c, 0.0) for c in cells.tolist()]) if weights else np.full(cells.size, 1.0 / cells.size)
    sums, cnt = np.zeros((units.shape[0], cells.size)), np.zeros((units.shape[0], cells.size))
    np.add.at(sums, (uinv.ravel(), cinv), v)
    np.add.at(cnt, (uinv.ravel(), cinv), 1.0)
    with np.errstate(invalid="ignore"):
        m = sums / np.where(cnt > 0, cnt, np.nan)
    point = float(np.nanmean(m, axis=0) @ w)
    sizes = np.unique(units[:, 0], return_counts=True)[1]
    searches, seeds = int(sizes.size), int(np.unique(units[:, 1]).size)
    n = searches if searches > 1 else int(sizes.sum())  # top-level resampling units
    if n < 2:
        return Estimate(point, runs=len(rows), seeds=seeds, searches=searches)
    var = _boot_var(m, sizes, w, np.random.default_rng(RNG_SEED), n_boot) * n / (n - 1)
    if not math.isnan(floor_sd):
        per_cell = (~np.isnan(m)).sum(axis=0)
        var = max(var, floor_sd ** 2 * float(np.sum(w ** 2 / np.maximum(per_cell, 1))))
    if not var > 0:  # every run agrees exactly and no floor: a handful of seeds cannot show zero noise
        return Estimate(point, runs=len(rows), seeds=seeds, searches=searches, note=NO_SPREAD)
    return Estimate(point, math.sqrt(var), float(n - 1), len(rows), seeds, searches)


def combine(terms: list[tuple[float, Estimate]]) -> Estimate:
    """Σ a_i · X_i of independent estimates (tasks are independent strata); Welch–Satterthwaite
    degrees of freedom. No interval when any term has none."""
    if not terms:
        return NO_RUNS
    mean = sum(a * e.mean for a, e in terms)
    runs, seeds = sum(e.runs for _, e in terms), max(e.seeds for _, e in terms)
    searches = min(e.searches for _, e in terms)
    if not all(e.has_ci for _, e in terms):
        note = next(e.note for _, e in terms if not e.has_ci)
        return Estimate(mean, runs=runs, seeds=seeds, searches=searches, note=note)
    parts = [(a * e.se) ** 2 for a, e in terms]
    var = sum(parts)
    denom = sum(p * p / e.dof for p, (_, e) in zip(parts, terms))
    dof = var * var / denom if denom > 0 else min(e.dof for _, e in terms)
    return Estimate(mean, math.sqrt(var), dof, runs, seeds, searches)


def ratio(num: Estimate, den: Estimate, scale: float = 100.0) -> Estimate:
    """scale × num / den (e.g. % of dense), the denominator's error propagated (delta method)."""
    if math.isnan(num.mean) or math.isnan(den.mean) or den.mean == 0:
        return NO_RUNS
    r = num.mean / den.mean
    if not (num.has_ci and den.has_ci):
        note = num.note if not num.has_ci else den.note
        return Estimate(scale * r, runs=num.runs, seeds=num.seeds, searches=num.searches, note=note)
    est = combine([(scale / den.mean, Estimate(0.0, num.se, num.dof)),
                   (scale * r / den.mean, Estimate(0.0, den.se, den.dof))])
    return Estimate(scale * r, est.se, est.dof, num.runs, num.seeds, num.searches)


def over_tasks(per_task: list[Estimate]) -> Estimate:
    """The mean over tasks of per-task estimates (each task weighs the same)."""
    per_task = [e for e in per_task if not math.isnan(e.mean)]
    return combine([(1.0 / len(per_task), e) for e in per_task]) if per_task else NO_RUNS


# ---------------------------------------------------------------------------------------------
# Seed noise

def seed_noise(df: pd.DataFrame, pooled: bool = True) -> pd.DataFrame:
    """Per (backbone, task): `dense_std` over dense's own seeds (NaN with one), `pooled_std` over every
    (source, sparsity, search) cell with ≥ 2 seeds (`pooled_dof` = Σ (seeds − 1); skipped with
    `pooled=False`), and `noise` = the larger: the floor of every interval and the yardstick of the tie
    margin. A floor can only widen an interval, so dense seeds that agree by luck (or a collapsed
    dense model, std 0) leave no interval without one. Which tasks count is decided by dense's own
    seeds alone (`reports.claims.dense_vs_chance`), so a noisy control cannot drop a task."""
    cols = ["backbone", "task", "dense_seeds", "dense_std", "pooled_std", "pooled_dof", "noise"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    bt = pd.Series(list(zip(df["backbone"].tolist(), df["task"].tolist())), index=df.index)
    ss: dict = {}
    dof: dict = {}
    if pooled:  # Σ (n − 1) s² and Σ (n − 1) over cells of ≥ 2 runs, per (backbone, task), by integer codes
        df = with_search(df)
        code = np.zeros(len(df), dtype=np.int64)
        for col in ("backbone", "task", "source", "sparsity", SEARCH):
            c, uniq = pd.factorize(df[col])
            code = code * (len(uniq) + 1) + c
        _, inv = np.unique(code, return_inverse=True)
        v = df["value"].to_numpy(dtype=float)
        n = np.bincount(inv)
        mean = np.bincount(inv, weights=v) / n
        dev2 = np.bincount(inv, weights=(v - mean[inv]) ** 2)  # (n − 1) s² per cell
        owner = bt.to_numpy()[np.unique(inv, return_index=True)[1]]
        for key, k, d2 in zip(owner, n, dev2):
            if k >= 2:
                ss[key] = ss.get(key, 0.0) + float(d2)
                dof[key] = dof.get(key, 0) + int(k - 1)
    dense: dict = {}
    for bb, task, src, v in zip(df["backbone"].tolist(), df["task"].tolist(), df["source"].tolist(),
                                df["value"].tolist()):
        vals = dense.setdefault((bb, task), [])
        if src == DENSE:
            vals.append(v)
    rows = []
    for (bb, task), vals in dense.items():
        n = len(vals)
        sd = float(np.std(vals, ddof=1)) if n >= 2 else math.nan
        k = dof.get((bb, task), 0)
        spread = math.sqrt(ss[(bb, task)] / k) if k else math.nan
        both = [x for x in (sd, spread) if not math.isnan(x)]
        rows.append({"backbone": bb, "task": task, "dense_seeds": n, "dense_std": sd, "pooled_std": spread,
                     "pooled_dof": k, "noise": max(both) if both else math.nan})
    return pd.DataFrame(rows, columns=cols)


def noise_of(noise: pd.DataFrame, backbone: str, task: str, column: str = "noise") -> float:
    """`noise` (or another column) of one (backbone, task) from a `seed_noise` frame (NaN when absent)."""
    for bb, t, v in zip(noise["backbone"], noise["task"], noise[column]):
        if bb == backbone and t == task:
            return float(v)
    return math.nan


def dense_estimate(df: pd.DataFrame, backbone: str, task: str, noise: pd.DataFrame | None = None) -> Estimate:
    """Dense's mean on one task with its interval (dense runs are one search; floored at its noise)."""
    d = df[(df["source"] == DENSE) & (df["backbone"] == backbone) & (df["task"] == task)]
    floor = noise_of(noise, backbone, task) if noise is not None else math.nan
    return estimate(d, floor_sd=floor)


def retention(df: pd.DataFrame, source: str, backbone: str, task: str, sparsity: float,
              noise: pd.DataFrame) -> Estimate:
    """% of dense of one source at one sparsity on one task, dense's own error propagated."""
    at = df[(df["source"] == source) & (df["backbone"] == backbone) & (df["task"] == task)
            & ((df["sparsity"] - sparsity).abs() < 1e-6)]
    if at.empty:
        return NO_RUNS
    floor = noise_of(noise, backbone, task)
    return ratio(estimate(at, floor_sd=floor), dense_estimate(df, backbone, task, noise))


# ---------------------------------------------------------------------------------------------
# Paired comparisons

def paired(a: pd.DataFrame, b: pd.DataFrame, keys: list[str] = PAIR_KEYS) -> pd.DataFrame:
    """Paired differences: rows of `a` and `b` (each with `keys` + `value`, one row per key; a frame
    without `search_seed` is one search) joined on `keys`; columns keys + value_a, value_b, diff."""
    a, b = with_search(a), with_search(b)
    ka, kb = (list(zip(*(f[k].tolist() for k in keys))) if len(f) else [] for f in (a, b))
    for side, k in (("a", ka), ("b", kb)):
        if len(set(k)) < len(k):  # e.g. a method with several sources: pick one per cell first
            raise ValueError(f"paired(): side {side} has several rows for one ({', '.join(keys)}) cell")
    where_b = {k: i for i, k in enumerate(kb)}
    ia = [i for i, k in enumerate(ka) if k in where_b]
    ib = [where_b[ka[i]] for i in ia]
    m = a.iloc[ia][keys].reset_index(drop=True)
    m["value_a"] = a["value"].to_numpy(dtype=float)[ia]
    m["value_b"] = b["value"].to_numpy(dtype=float)[ib]
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
    p: float = math.nan  # two-sided p-value of a win or loss beyond the margin (for Holm)
    searches: int = 0
    per_task: dict = field(default_factory=dict)  # (backbone, task) → outcome on that task alone

    def text(self, digits: int = 1) -> str:
        if self.cells == 0:
            return "no paired cells"
        if math.isnan(self.lo):
            return f"{self.mean:+.{digits}f} points over {self.cells} cells ({self.reason or ONE_SEED})"
        return (f"{self.mean:+.{digits}f} points [95% CI {self.lo:+.{digits}f}, {self.hi:+.{digits}f}] over "
                f"{self.cells} cells, {self.seeds} seeds, {self.searches} search(es); tie margin ±{self.margin:.{digits}f}")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("cells", "seeds", "mean", "lo", "hi", "margin", "outcome", "reason")}


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


def paired_estimate(diffs: pd.DataFrame, noise: pd.DataFrame) -> tuple[Estimate, float, dict]:
    """(the mean paired difference over tasks — each task the mean over its sparsities — with its
    interval; the tie-margin noise: root mean square of the tasks' seed noise; {(backbone, task):
    (that task's estimate, its noise)})."""
    per, sig = {}, []
    for (bb, task), g in diffs.groupby(["backbone", "task"], sort=False):
        s = noise_of(noise, bb, task)
        sig.append(s)
        per[(bb, task)] = (estimate(g, cell="sparsity", floor_sd=s, value="diff"), s)
    rms = math.sqrt(float(np.mean(np.square(sig)))) if sig and not any(map(math.isnan, sig)) else math.nan
    return over_tasks([e for e, _ in per.values()]), rms, per


def compare_paired(diffs: pd.DataFrame, noise: pd.DataFrame, tie_fraction: float = TIE_FRACTION,
                   tie_margin: float = 0.0) -> Paired:
    """Mean paired difference over the cells of `diffs` (from `paired`) with its 95 % CI (`estimate`
    per task, `combine` over tasks), a tie margin of `tie_fraction` × the seed noise (or `tie_margin`
    points when > 0: a stated tolerance) and the outcome of `classify`. Not testable with one run per
    cell (no interval) or without a seed-noise estimate (one dense seed)."""
    n = len(diffs)
    if n == 0:
        return Paired(0, 0, math.nan, math.nan, math.nan, math.nan, "not testable", "no paired cells")
    est, rms, per = paired_estimate(with_search(diffs), noise)
    seeds = int(diffs["seed"].nunique())
    if not est.has_ci:
        return Paired(n, seeds, est.mean, math.nan, math.nan, math.nan, "not testable",
                      est.note, searches=est.searches)
    margin = tie_margin if tie_margin > 0 else tie_fraction * rms
    if math.isnan(margin):
        return Paired(n, seeds, est.mean, est.lo, est.hi, math.nan, "not testable",
                      "one dense seed: no seed-noise estimate for the tie margin", searches=est.searches)
    per_task = {k: classify(e.lo, e.hi, tie_margin if tie_margin > 0 else tie_fraction * s) for k, (e, s) in per.items()}
    return Paired(n, seeds, est.mean, est.lo, est.hi, margin, classify(est.lo, est.hi, margin), "",
                  est.p_outside(margin), est.searches, per_task)


def holm(pvalues: list[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction (Holm 1979, Scand. J. Statist. 6:65–70): adjusted p-values and
    which hypotheses are rejected at family-wise level `alpha`. NaN p-values are never rejected."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    adj = [math.nan] * len(pvalues)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adj[i] = running
    return adj, [not math.isnan(a) and a < alpha for a in adj]
