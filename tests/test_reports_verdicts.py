"""Verdicts that chance and seed noise cannot fool, and the statistics behind them (no training:
synthetic stores of run records)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_reports_synth import make_store  # noqa: E402

TASKS = ["vqa", "gqa"]
LADDER = (0.3, 0.5, 0.6, 0.7, 0.9)
SOURCES = ("imp:vqa", "imp:gqa", "imp:pretrain", "random")
SEEDS = (0, 1, 2)


def chance(task: str) -> float:
    from reports.store import task_facts

    return task_facts(task, "").chance


def build(tmp_path, value_fn, seeds=SEEDS, ladder=LADDER, name="o") -> pd.DataFrame:
    """A store where value_fn(source, task, sparsity, seed) gives every run's value."""
    from reports.store import collect_matrix

    values = {"dense": {t: {0.0: tuple(value_fn("dense", t, 0.0, s) for s in seeds)} for t in TASKS}}
    for src in SOURCES:
        values[src] = {t: {sp: tuple(value_fn(src, t, sp, s) for s in seeds) for sp in ladder} for t in TASKS}
    return collect_matrix(make_store(tmp_path / name, values, seeds=seeds, failed=0, tickets=False))


def verdicts(df) -> dict:
    from reports.claims import vl_claims

    return {c.claim: c for c in vl_claims(df, TASKS)}


def claim(df, start: str):
    return next(c for k, c in verdicts(df).items() if k.startswith(start))


def outcomes(df) -> list[str]:
    from reports.claims import all_comparisons

    return all_comparisons(df, TASKS)["outcome"].tolist()


# A store whose tickets are clearly separated: dense 80 (± 1 over seeds), own IMP tickets keep
# ≥ 99% up to 70% and collapse at 90%, the pre-training ticket keeps 99% / 98%, random pruning
# loses 10–40 points.
OWN = {0.3: 80.0, 0.5: 80.0, 0.6: 80.0, 0.7: 79.8, 0.9: 60.0}
PRE = {0.3: 80.0, 0.5: 79.8, 0.6: 79.5, 0.7: 78.5, 0.9: 55.0}
RND = {0.3: 70.0, 0.5: 60.0, 0.6: 55.0, 0.7: 50.0, 0.9: 40.0}
JITTER = (-1.0, 0.0, 1.0)  # the same seed moves every run of a task alike (paired seeds)


def separated(source, task, sp, seed):
    base = {"dense": 80.0, "random": RND.get(sp)}.get(source)
    if base is None:
        base = PRE[sp] if source == "imp:pretrain" else (OWN[sp] if source == f"imp:{task}" else OWN[sp] - 5)
    return base + JITTER[seed]


def test_separated_store_holds(tmp_path):
    df = build(tmp_path, separated)
    assert claim(df, "Relaxed").verdict == "holds"
    assert "vqa: 70%, gqa: 70%; at least 50%: 2/2" in claim(df, "Relaxed").this_run
    assert claim(df, "Pre-training IMP tickets at 60%").verdict == "holds"
    assert claim(df, "Pre-training IMP tickets at 70%").verdict == "holds"
    assert claim(df, "IMP tickets beat random").verdict == "holds"
    assert claim(df, "No IMP ticket").verdict == "fails"  # up to 70% the own ticket is within one dense std
    assert outcomes(df)[0] == "win"  # own-task IMP vs random


def test_all_at_chance_store_never_holds(tmp_path):
    """Every run, dense included, sits at the task's chance level (the old report said "holds")."""
    df = build(tmp_path, lambda src, t, sp, s: chance(t) + (0.3 * s if src == "dense" else 0.0))
    for c in verdicts(df).values():
        assert c.verdict == "not testable", c
    assert "not clearly above chance" in next(iter(verdicts(df).values())).detail
    assert "win" not in outcomes(df) and "loss" not in outcomes(df)


@pytest.mark.parametrize("rng_seed", range(8))
def test_pure_noise_store_never_holds(tmp_path, rng_seed):
    """Every value drawn from one distribution, whatever the source or sparsity: dense beats chance,
    but nothing separates tickets from dense or from random."""
    rng = np.random.default_rng(rng_seed)
    df = build(tmp_path, lambda *_: float(rng.normal(62.0, 3.0)))
    for c in verdicts(df).values():
        assert c.verdict != "holds", c
    assert "win" not in outcomes(df)


def test_one_seed_is_not_testable(tmp_path):
    df = build(tmp_path, separated, seeds=(0,))
    for c in verdicts(df).values():
        assert c.verdict == "not testable", c
    assert "one seed per run" in claim(df, "Relaxed").reason
    assert set(outcomes(df)) == {"not testable"}


def test_paper_sparsity_off_the_ladder_is_not_substituted(tmp_path):
    df = build(tmp_path, separated, ladder=(0.3, 0.5, 0.7, 0.9))
    pre60 = claim(df, "Pre-training IMP tickets at 60%")
    assert pre60.verdict == "not testable" and "60% is not on this run's ladder" in pre60.reason


def test_relaxed_is_two_sided(tmp_path):
    """A task whose tickets stay clearly relaxed at 90% contradicts "50–70%" (the old check counted
    it); one merely level with dense at 90% is within seed noise of the criterion: not testable."""
    def clear(src, task, sp, seed):
        return 83.0 + JITTER[seed] if src == "imp:vqa" else separated(src, task, sp, seed)

    rel = claim(build(tmp_path, clear), "Relaxed")
    assert rel.verdict == "fails" and "vqa (clearly relaxed at 90%" in rel.reason
    assert "vqa: 90%, gqa: 70%; at least 50%: 2/2 tasks" in rel.this_run

    def level(src, task, sp, seed):
        return 80.0 + JITTER[seed] if src == "imp:vqa" else separated(src, task, sp, seed)

    rel = claim(build(tmp_path, level, name="level"), "Relaxed")
    assert rel.verdict == "not testable" and "vqa (within seed noise of the criterion at 90%)" in rel.reason


def test_retention_needs_a_sparsity_that_costs_something(tmp_path):
    """If random pruning keeps as much as the ticket, a retention claim is not evidence of a ticket."""
    def fn(src, task, sp, seed):
        return separated("imp:pretrain" if src == "random" else src, task, sp, seed)

    pre60 = claim(build(tmp_path, fn), "Pre-training IMP tickets at 60%")
    assert pre60.verdict == "not testable" and "random pruning is not clearly below" in pre60.reason


def test_chance_normalised_retention_beside_pct_of_dense(tmp_path):
    """Near chance, % of dense flatters any ticket; the chance-normalised retention does not."""
    from reports.tables import summarize

    c = chance("vqa")
    df = build(tmp_path, lambda src, t, sp, s: c + (2.0 if src == "dense" else 1.0) + JITTER[s] / 10)
    r = summarize(df)
    r = r[(r["task"] == "vqa") & (r["source"] == "random") & (r["sparsity"] == 0.5)].iloc[0]
    assert r["pct_dense"] > 95 and r["pct_above_chance"] == pytest.approx(50.0, abs=0.5)
    pre = claim(build(tmp_path, separated, name="sep"), "Pre-training IMP tickets at 60%")
    assert "(chance-normalised 99.2%)" in pre.this_run  # vqa (79.5 − 24) / (80 − 24), gqa (79.5 − 18) / 62


# ---------------------------------------------------------------------------------------------
# reports.stats


def test_seed_noise_dense_pooled_and_conservative(tmp_path):
    from reports import stats

    df = build(tmp_path, separated)
    n = stats.seed_noise(df).set_index("task")
    assert n.loc["vqa", "dense_std"] == pytest.approx(1.0) and n.loc["vqa", "dense_seeds"] == 3
    assert n.loc["vqa", "pooled_std"] == pytest.approx(1.0) and n.loc["vqa", "pooled_dof"] == 2 * (1 + 4 * 5)
    # A collapsed cell (std 0) cannot lower the noise below the dense seeds' std.
    df.loc[df["source"] != "dense", "value"] = 50.0
    n = stats.seed_noise(df).set_index("task")
    assert n.loc["vqa", "pooled_std"] < 1.0 and n.loc["vqa", "noise"] == pytest.approx(1.0)
    one = stats.seed_noise(df[df["seed"] == 0])
    assert one["noise"].isna().all()


def test_classify_and_intervals():
    from reports import stats

    assert stats.classify(1.1, 3.0, 1.0) == "win" and stats.classify(-3.0, -1.1, 1.0) == "loss"
    assert stats.classify(-0.5, 0.9, 1.0) == "tie" and stats.classify(-0.5, 2.0, 1.0) == "inconclusive"
    assert stats.classify(math.nan, 1.0, 1.0) == "not testable"
    m, lo, hi = stats.mean_ci([1.0, 1.0, 1.0], floor_sd=3.0)  # seeds that agree by luck: sd floored
    assert m == 1.0 and hi - 1.0 == pytest.approx(4.303 * 3.0 / math.sqrt(3), rel=1e-3)
    assert math.isnan(stats.mean_ci([2.0])[1])
    x = np.arange(20.0)
    assert stats.bootstrap_ci(x) == stats.bootstrap_ci(x)  # seeded
    lo, hi = stats.bootstrap_ci(x)
    assert lo < x.mean() < hi


def test_compare_paired_pairs_by_seed(tmp_path):
    from reports import stats

    df = build(tmp_path, separated)
    own = df[df["source"] == "imp:" + df["task"]]
    rnd = df[df["source"] == "random"]
    d = stats.paired(own, rnd)
    assert len(d) == len(TASKS) * len(LADDER) * len(SEEDS)
    # The seed jitter is shared, so every paired difference is exact: OWN − RND.
    assert sorted(set(d["diff"].round(6))) == sorted({round(OWN[s] - RND[s], 6) for s in LADDER})
    p = stats.compare_paired(d, stats.seed_noise(df))
    assert p.outcome == "win" and p.lo > p.margin and p.margin == pytest.approx(0.5)
    assert stats.compare_paired(d[d["seed"] == 0], stats.seed_noise(df)).outcome == "not testable"
    with pytest.raises(ValueError, match="several rows"):
        stats.paired(df[df["method"] == "imp"], rnd)


def test_claim_iv_needs_an_adversarial_plan_and_reads_its_relaxed_tickets(tmp_path):
    """Claim (iv) is not testable without an adversarial plan; with one it is the relaxed-ticket verdict
    under that regime, with the paired difference against the standard plan beside it."""
    from reports import stats
    from reports.claims import check_adversarial

    df = build(tmp_path, separated)
    bb = df["backbone"].iloc[0]
    none = check_adversarial(df, {bb: TASKS}, 0.99, stats.seed_noise(df), {bb: "standard"})
    assert none.verdict == "not testable" and "adv_steps" in none.reason
    both = pd.concat([df, df.assign(backbone=bb + "@adv")], ignore_index=True)
    c = check_adversarial(both, {bb: TASKS, bb + "@adv": TASKS}, 0.99, stats.seed_noise(both),
                          {bb: "standard", bb + "@adv": "adversarial"})
    assert c.verdict == "holds" and "adversarial − standard" in c.this_run and "tie" in c.this_run
