"""Anytime-valid confidence sequences: the math of adaptive seeds (`matrix.adaptive`), and nothing else.

A confidence sequence (CS) covers the mean at *every* number of seeds at once: P(∃ t: μ ∉ CS_t) ≤ α. So a
rule that adds a seed while the CS straddles a threshold and stops as soon as it does not — or at a cap —
keeps its error rate whatever the stopping time; a t-interval re-checked after every seed does not (its
error grows with every look: `tests/test_sequential.py` measures both).

The boundary is the two-sided normal mixture of

    Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic confidence
    sequences", Annals of Statistics 49(2), 1055–1080, eq. (14) / Proposition 3 (Robbins' normal mixture):

    |S_t| < u(V_t),   u(v) = sqrt((v + ρ) · log((v + ρ) / (ρ α²))),

with S_t = Σ (x_i − μ) and V_t = σ² t, valid for independent observations that are sub-Gaussian with
variance proxy σ² (Gaussian noise of std ≤ σ; any score bounded in an interval of width w with σ = w / 2,
Hoeffding). σ is a stated bound (`matrix.adaptive_sigma`), never estimated from the same runs: a plug-in
estimate would void the guarantee. ρ > 0 is any constant fixed before the data; `mixture_rho` picks the one
that makes the boundary tightest at a planned number of observations (Howard et al., Section 3.5).

Pure functions of their inputs (no randomness, no I/O): the same values give the same decisions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

DEFAULT_ALPHA = 0.05


def _check(alpha: float, sigma: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1), found {alpha}")
    if not sigma > 0.0:
        raise ValueError(f"sigma: expected a positive noise bound, found {sigma}")


def boundary(v: float, rho: float, alpha: float) -> float:
    """u(v) of the two-sided normal mixture (Howard et al. 2021, eq. 14) at intrinsic time v = σ² t."""
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha * alpha)))


@functools.lru_cache(maxsize=256)  # pure, and called per cell per wave
def mixture_rho(alpha: float, sigma: float, n_opt: float) -> float:
    """The mixture's ρ that minimises u(v)/v at v = σ² · n_opt (where the CS should be tightest).

    u(v)²/v² ∝ (1 + r) · log((1 + r) / (r α²)) / v with r = ρ / v, so the best r depends on α only:
    a deterministic golden-section search over log r."""
    _check(alpha, sigma)
    if not n_opt > 0:
        raise ValueError(f"n_opt: expected a positive number of observations, found {n_opt}")

    def f(log_r: float) -> float:
        r = math.exp(log_r)
        return (1.0 + r) * math.log((1.0 + r) / (r * alpha * alpha))

    lo, hi = math.log(1e-6), math.log(1e6)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(200):
        if f(a) < f(b):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return math.exp((lo + hi) / 2.0) * sigma * sigma * n_opt


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    def straddles(self, threshold: float) -> bool:
        return self.lo <= threshold <= self.hi


def mean_cs(values: Sequence[float], sigma: float, alpha: float = DEFAULT_ALPHA, n_opt: float = 3.0) -> Interval:
    """The CS for the mean after len(values) observations: x̄_t ± u(σ² t) / t. No value: (−∞, ∞)."""
    _check(alpha, sigma)
    t = len(values)
    if t == 0:
        return Interval(-math.inf, math.inf)
    half = boundary(sigma * sigma * t, mixture_rho(alpha, sigma, n_opt), alpha) / t
    mean = math.fsum(values) / t
    return Interval(mean - half, mean + half)


def relative_cs(values: Sequence[float], reference: Sequence[float], sigma: float, alpha: float = DEFAULT_ALPHA,
                n_opt: float = 3.0) -> Interval:
    """A CS for 100 · μ / μ_ref (% of the reference, e.g. of dense), from one CS per mean at α / 2 each: both
    hold at every time with probability ≥ 1 − α (union bound), so the ratio's interval does too. Scores are
    non-negative; a reference interval reaching 0 leaves the ratio unbounded above."""
    a, d = mean_cs(values, sigma, alpha / 2, n_opt), mean_cs(reference, sigma, alpha / 2, n_opt)
    if not (math.isfinite(a.lo) and math.isfinite(d.lo)):
        return Interval(-math.inf, math.inf)
    lo = 100.0 * max(a.lo, 0.0) / d.hi if d.hi > 0 else -math.inf
    hi = 100.0 * a.hi / d.lo if d.lo > 0 else math.inf
    return Interval(lo, hi)


def decided(interval: Interval, thresholds: Sequence[float]) -> bool:
    """Whether every decision the interval feeds is settled: no threshold lies inside it."""
    return not any(interval.straddles(t) for t in thresholds)


def side(interval: Interval, threshold: float) -> str:
    """'above' / 'below' the threshold, or 'undecided' while the interval straddles it."""
    if interval.lo > threshold:
        return "above"
    if interval.hi < threshold:
        return "below"
    return "undecided"
