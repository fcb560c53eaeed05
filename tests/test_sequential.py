"""The sequential rule of adaptive seeds keeps its error rate under optional stopping (simulated with the
shipped functions of `bench.core.sequential`), where a t-interval re-checked after every seed does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.core.sequential import Interval, boundary, decided, mean_cs, mixture_rho, relative_cs, side

ALPHA = 0.05
N_SIM = 4000
# Monte-Carlo slack: three binomial standard errors at the nominal level.
SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_SIM)


def test_boundary_is_howard_et_al_normal_mixture():
    # u(v) = sqrt((v + ρ) log((v + ρ) / (ρ α²))): at v = 0 it is sqrt(ρ log(1/α²)).
    assert boundary(0.0, 2.0, ALPHA) == pytest.approx(math.sqrt(2.0 * math.log(1 / ALPHA ** 2)))
    rho = mixture_rho(ALPHA, 1.0, 5)
    # ρ is optimal for v = 5: nudging it either way widens the boundary there.
    assert boundary(5.0, rho, ALPHA) <= min(boundary(5.0, rho * 1.2, ALPHA), boundary(5.0, rho / 1.2, ALPHA))
    assert mixture_rho(ALPHA, 2.0, 5) == pytest.approx(4 * rho)  # scales with σ²
    assert mean_cs([], 1.0) == Interval(-math.inf, math.inf)
    with pytest.raises(ValueError, match="sigma"):
        mean_cs([1.0], 0.0)


def test_coverage_holds_at_every_time_at_once():
    """P(∃ t ≤ 40: μ ∉ CS_t) ≤ α over many simulated sequences (Gaussian noise of std σ)."""
    rng = np.random.default_rng(0)
    sigma, mu, n = 2.0, 60.0, 40
    x = rng.normal(mu, sigma, size=(N_SIM, n))
    t = np.arange(1, n + 1)
    means = np.cumsum(x, axis=1) / t
    # The shipped CS, per time: its half-width does not depend on the data, only on t.
    half = np.array([(lambda c: (c.hi - c.lo) / 2)(mean_cs([0.0] * k, sigma, ALPHA, n_opt=3)) for k in t])
    ever_missed = (np.abs(means - mu) > half).any(axis=1).mean()
    assert ever_missed <= ALPHA + SLACK
    # A fixed-n z-interval re-checked after every observation (what a naive adaptive rule would do):
    naive = (np.abs(means - mu) > 1.96 * sigma / np.sqrt(t)).any(axis=1).mean()
    assert naive > 3 * ALPHA  # the test has teeth: optional stopping breaks the fixed-n interval


@pytest.mark.parametrize("delta", [0.0, 0.5])
def test_decision_error_under_optional_stopping(delta):
    """The adaptive rule itself: add a seed while the CS of (cell vs dense, % of dense) straddles the
    threshold, stop when it does not or at the cap. A cell truly at or above the threshold is called
    'below' in at most α of the simulated studies (and symmetrically)."""
    rng = np.random.default_rng(1 + int(10 * delta))
    sigma, dense_mu, cap, threshold, n_sim = 2.0, 60.0, 12, 99.0, 1500
    cell_mu = dense_mu * (threshold + delta) / 100
    wrong = stopped_early = 0
    for _ in range(n_sim):
        cell = list(rng.normal(cell_mu, sigma, 2))
        dense = list(rng.normal(dense_mu, sigma, 2))
        while True:
            ci = relative_cs(cell, dense, sigma, ALPHA, n_opt=cap)
            if decided(ci, [threshold]) or len(cell) >= cap:
                break
            cell.append(rng.normal(cell_mu, sigma))
            dense.append(rng.normal(dense_mu, sigma))  # dense follows its undecided cells
        wrong += side(ci, threshold) == "below"
        stopped_early += len(cell) < cap
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / n_sim)
    assert wrong / n_sim <= ALPHA + slack
    assert stopped_early < n_sim  # some do stop before the cap (it is a rule, not a fixed design)


def test_clear_cells_stop_at_once_and_close_calls_run_on():
    sigma = 1.0
    far = relative_cs([70.0, 70.5], [60.0, 60.2], sigma, ALPHA, n_opt=8)
    assert side(far, 99.0) == "above" and decided(far, [99.0])
    close = relative_cs([59.5, 59.7], [60.0, 60.2], sigma, ALPHA, n_opt=8)
    assert side(close, 99.0) == "undecided" and not decided(close, [99.0])
