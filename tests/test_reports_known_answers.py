"""Known-answer tests of the verdict rules: many simulated stores with planted truths, judged by the
shipped functions (`reports.claims`, `reports.stats`), must say "holds" or "fails" wrongly no more
often than the stated level, and must find a clearly true effect.

Stated level: a wrong verdict in at most `LEVEL` = 5 % of stores (the rules' intervals are 95 %,
each wrong direction has 2.5 % nominally). With `N` simulated stores the observed count may exceed
5 % by chance: the allowance is the 99.9 % quantile of Binomial(N, 0.05), so a correct rule fails
this file about once in a thousand runs, a rule that errs at twice the level almost always.

Each store is a frame shaped like `load_results(out).frame` (one `backbone` per store, so the stores
of one planted case are one frame): dense with its seeds, ticket sources with `search_seed`
replicates (a search's effect τ shared by its seeds and sparsities) and fine-tuning seeds (σ).
Noise is realistic for the toy study: σ = 1.5 points on a dense score of 70 (the default run's
eval-set noise alone is 1.4–2.5 points), τ = 0.5.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from reports import stats
from reports.claims import (
    FAILS,
    HOLDS,
    check_imp_vs_random,
    check_pretrain_transfer,
    check_strict,
    dense_vs_chance,
)

LEVEL = 0.05
N = 150  # stores per planted case
SIGMA, TAU, DENSE_MEAN, CHANCE = 1.5, 0.5, 70.0, 40.0
TASKS = ("gqa", "snli_ve")


def allowance(n: int = N, p: float = LEVEL, q: float = 0.999) -> int:
    """The q quantile of Binomial(n, p): the most wrong verdicts a rule at level p shows in n stores."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


def simulate(truth, sources, ladder, *, n: int = N, seed: int = 0, dense_seeds: int = 3, seeds: int = 3,
             searches: int = 1, sigma: float = SIGMA, tau: float = TAU, tasks=TASKS) -> pd.DataFrame:
    """`n` stores in one frame: truth(source, task, sparsity) → the true mean score; dense has
    `dense_seeds` seeds, every other source `searches` search replicates × `seeds` seeds."""
    rng = np.random.default_rng(seed)
    rows = [("dense", t, 0.0, 0, s) for t in tasks for s in range(dense_seeds)]
    rows += [(src, t, sp, r, s) for src, t, sp, r, s in itertools.product(sources, tasks, ladder, range(searches),
                                                                          range(seeds))]
    one = pd.DataFrame(rows, columns=["source", "task", "sparsity", "search_seed", "seed"])
    mean = np.array([truth(r.source, r.task, r.sparsity) for r in one.itertuples()])
    # a search replicate's effect: one per (store, source, task, search), shared by its seeds and sparsities
    search_key = one.groupby(["source", "task", "search_seed"]).ngroup().to_numpy()
    n_keys = search_key.max() + 1
    is_dense = (one["source"] == "dense").to_numpy()
    eff = rng.normal(0.0, tau, size=(n, n_keys))[:, search_key] * ~is_dense
    values = mean + eff + rng.normal(0.0, sigma, size=(n, len(one)))
    df = pd.concat([one] * n, ignore_index=True)
    df["backbone"] = np.repeat([f"store{i}" for i in range(n)], len(one))
    df["value"] = values.ravel()
    df["method"] = df["source"].str.partition(":")[0]
    df["source_task"] = df["source"].str.partition(":")[2]
    df["metric"] = "accuracy"
    df["chance"] = CHANCE
    dense = df[df["source"] == "dense"].groupby(["backbone", "task"])["value"].mean().rename("dense_value")
    df = df.join(dense, on=["backbone", "task"])
    df["relative"] = df["value"] / df["dense_value"]
    df["steps_factor"] = 1
    return df


def verdicts(df: pd.DataFrame, check) -> pd.Series:
    """check(store frame, tasks) → Claim, per store: the verdicts."""
    return pd.Series([check(g, list(TASKS)).verdict for _, g in df.groupby("backbone", sort=False)])


def share(v: pd.Series, what: str) -> int:
    return int((v == what).sum())


# ---------------------------------------------------------------------------------------------
# Planted truths

def test_dense_at_chance_is_not_eligible():
    """Dense truly at chance (every source too): the eligibility rule passes a task in at most 5 %
    of stores (nominally 2.5 %), so no claim is judged on a model that learnt nothing."""
    df = simulate(lambda *_: CHANCE, ("imp:gqa",), (0.5,), seed=1)
    dvc = dense_vs_chance(df, list(TASKS))
    wrong = int((dvc.groupby("backbone")["learns"].apply(lambda s: (s == "yes").any())).sum())
    assert wrong <= allowance(), wrong
    # ...and one clearly above chance (+8 points, 3 seeds of σ 1.5) is eligible in nearly every store
    up = dense_vs_chance(simulate(lambda *_: CHANCE + 8, ("imp:gqa",), (0.5,), seed=2), list(TASKS))
    assert (up["learns"] == "yes").mean() >= 0.9


def test_strict_matching_tickets_equal_to_dense_never_hold_falsely():
    """Own-task IMP tickets truly equal to dense at every sparsity (a strict match exists): the
    claim "no ticket strictly matches" must not hold in more than 5 % of stores."""
    df = simulate(lambda *_: DENSE_MEAN, [f"imp:{t}" for t in TASKS], (0.3, 0.5, 0.7), seed=3, searches=3)
    v = verdicts(df, lambda g, t: check_strict(g, t))
    assert share(v, HOLDS) <= allowance(), v.value_counts()


def test_strict_matching_tickets_two_sigma_below_dense_never_fail_falsely():
    """Own-task IMP tickets truly 2 σ below dense (no strict match: the rule is dense − 1 σ): the old
    rule said "fails" in 89 % of stores; now "fails" (a clear strict match) in at most 5 %."""
    def truth(src, task, sp):
        return DENSE_MEAN if src == "dense" else DENSE_MEAN - 2 * SIGMA

    df = simulate(truth, [f"imp:{t}" for t in TASKS], (0.3, 0.5, 0.7), seed=4, searches=3)
    v = verdicts(df, lambda g, t: check_strict(g, t))
    assert share(v, FAILS) <= allowance(), v.value_counts()
    # power: tickets truly 4 σ below dense, a powered design (σ = 1, 5 searches × 6 seeds, 10 dense
    # seeds): "no strict match" holds in at least 80 % of stores (at 3 σ below: 38 of 50 stores)
    def far(src, task, sp):
        return 70.0 if src == "dense" else 66.0

    many = simulate(far, [f"imp:{t}" for t in TASKS], (0.5,), n=50, seed=5, searches=5, seeds=6,
                    dense_seeds=10, sigma=1.0, tau=0.2)
    assert share(verdicts(many, lambda g, t: check_strict(g, t)), HOLDS) >= 0.8 * 50


def _pretrain(pct: float):
    """imp:pretrain truly at `pct` % of dense at 60 %; random pruning far below (the sanity gate)."""
    def truth(src, task, sp):
        return {"dense": DENSE_MEAN, "imp:pretrain": DENSE_MEAN * pct / 100}.get(src, 0.7 * DENSE_MEAN)
    return truth


@pytest.mark.parametrize("searches", [1, 3])
def test_pretrain_ticket_truly_at_97_does_not_hold_a_98_claim(searches):
    """The issue's case: a pre-training ticket that truly keeps 97 % against the paper's 98 % got
    "holds" in 37 % of 3-seed stores. The claim holds iff the CI's lower bound ≥ 98 − 0.5: at 97 %
    truly, "holds" in at most 5 % of stores."""
    df = simulate(_pretrain(97.0), ("imp:pretrain", "random"), (0.6,), seed=6 + searches, searches=searches)
    v = verdicts(df, lambda g, t: check_pretrain_transfer(g, t, 0.6, stats.seed_noise(g)))
    assert share(v, HOLDS) <= allowance(), v.value_counts()


def test_pretrain_ticket_truly_at_100_does_not_fail_and_is_found():
    """A pre-training ticket truly at 100 % of dense: "fails" in at most 5 % of stores; and with a
    powered design (5 dense seeds, 5 seeds, 4 tasks, σ = 1) "holds" in at least 80 % of them."""
    df = simulate(_pretrain(100.0), ("imp:pretrain", "random"), (0.6,), seed=9)
    v = verdicts(df, lambda g, t: check_pretrain_transfer(g, t, 0.6, stats.seed_noise(g)))
    assert share(v, FAILS) <= allowance(), v.value_counts()
    tasks = ("gqa", "snli_ve", "nlvr2", "vqa")
    big = simulate(_pretrain(100.0), ("imp:pretrain", "random"), (0.6,), n=60, seed=10, dense_seeds=5, seeds=5,
                   sigma=1.0, tasks=tasks)
    hv = pd.Series([check_pretrain_transfer(g, list(tasks), 0.6, stats.seed_noise(g)).verdict
                    for _, g in big.groupby("backbone", sort=False)])
    assert share(hv, HOLDS) >= 0.8 * 60, hv.value_counts()


def test_imp_equal_to_random_does_not_beat_it_and_a_real_gap_is_found():
    """IMP truly equal to random: "IMP beats random" holds in at most 5 % of stores. IMP truly
    5 points (3.3 σ) above random: it holds in at least 90 % of them (power)."""
    ladder = (0.5, 0.7)

    def equal(src, task, sp):
        return DENSE_MEAN if src == "dense" else DENSE_MEAN - 10

    df = simulate(equal, [f"imp:{t}" for t in TASKS] + ["random"], ladder, seed=11)
    v = verdicts(df, lambda g, t: check_imp_vs_random(g, t, stats.seed_noise(g)))
    assert share(v, HOLDS) <= allowance(), v.value_counts()

    def gap(src, task, sp):
        return DENSE_MEAN if src == "dense" else DENSE_MEAN - (15 if src == "random" else 10)

    df = simulate(gap, [f"imp:{t}" for t in TASKS] + ["random"], ladder, seed=12)
    v = verdicts(df, lambda g, t: check_imp_vs_random(g, t, stats.seed_noise(g)))
    assert share(v, HOLDS) >= 0.9 * N, v.value_counts()


def test_allowance_is_the_binomial_quantile():
    # P(X ≤ 13) ≥ 0.999 > P(X ≤ 12) for X ~ Binomial(100, 0.05)
    assert allowance(100) == 13 and allowance(200) == 21


def test_strict_matching_reports_the_highest_clear_match_with_its_interval():
    """Tickets equal to dense up to 50 % and far below at 70 %, three searches: claim (i) fails, and the
    report names each task's highest clearly matching sparsity with its interval (seeded draw); with one search
    the same numbers are not testable (the claim is about tickets, not one mask's seeds)."""
    def truth(src, task, sp):
        return 60.0 if src != "dense" and sp == 0.7 else DENSE_MEAN

    df = simulate(truth, [f"imp:{t}" for t in TASKS], (0.3, 0.5, 0.7), n=1, seed=13, searches=3, sigma=0.3, tau=0.1)
    c = check_strict(df, list(TASKS))
    assert c.verdict == FAILS and "gqa: up to 50% (100.2% [95% CI 99.4, 101.1] vs 99.2)" in c.this_run
    assert "snli_ve: " in c.this_run  # this draw: no clear match on snli_ve (its CI reaches below 99.2)
    assert "% [95% CI " in c.this_run and "(3 ticket search(es) per cell)" in c.this_run
    one = check_strict(df[df["search_seed"] == 0], list(TASKS))
    assert one.verdict == "not testable" and "1 ticket search(es) per cell: strict matching needs ≥ 3" in one.reason
