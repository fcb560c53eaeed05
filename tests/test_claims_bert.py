"""The BERT-tickets claims (reports/claims_bert.py) on synthetic stores with planted truths (no training)."""

from __future__ import annotations

import pandas as pd
from test_reports_synth import write_record

TASKS = ["mnli", "sst2"]
LADDER = (0.5, 0.7)
SEEDS = (0, 1, 2)
JITTER = (-0.3, 0.0, 0.3)  # one seed moves every run of a task alike (paired seeds)
CHANCE = {"mnli": 35.0, "sst2": 50.0}


def store(tmp_path, value_fn, sources=("imp:mnli", "imp:sst2", "imp:pretrain", "random", "reinit:pretrain"),
          searches=(0,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results frame, dense at 2× steps) of a store where value_fn(source, task, sparsity) + the seed's
    jitter gives every run's value."""
    from reports.store import collect_matrix, split_convergence

    out = tmp_path / "o"
    cells = [("dense", t, 0.0, 0, f) for t in TASKS for f in (1, 2)]
    cells += [(s, t, sp, r, 1) for s in sources for t in TASKS for sp in LADDER for r in searches]
    for src, task, sp, rep, factor in cells:
        method, _, source_task = src.partition(":")
        for seed in SEEDS:
            v = value_fn(src, task, sp) + JITTER[seed] + 0.1 * rep
            write_record(out, f"{src.replace(':', '-')}_{task}_{sp}_{rep}_{seed}_{factor}", status="done",
                         backbone="toy-bert", source=src, method=method, source_task=source_task, sparsity=sp,
                         task=task, seed=seed, search_seed=rep, split="dev", metric="accuracy", value=v,
                         metrics={"accuracy": v}, chance=CHANCE[task], eval_examples=300, steps_factor=factor,
                         timings={"train_s": 1.0, "eval_s": 0.5, "total_s": 1.5})
    return split_convergence(collect_matrix(out))


def separated(src, task, sp):
    """Dense 80; own and MLM tickets match at 50–70 %; other tasks' tickets, re-init and random fall."""
    if src == "dense" or src in (f"imp:{task}", "imp:pretrain"):
        return 80.0
    return {"random": 50.0, "reinit:pretrain": 55.0}.get(src, 70.0)


def test_separated_store_holds_every_claim(tmp_path):
    from reports.claims_bert import bert_claims

    df, ref = store(tmp_path, separated)
    v = {c.claim: c for c in bert_claims(df, TASKS, ref)}
    assert [c.verdict for c in v.values()] == ["holds"] * 4, [(c.claim, c.verdict, c.reason) for c in v.values()]
    table2 = next(c for k, c in v.items() if k.startswith("IMP finds"))
    assert "mnli 70%: matches" in table2.this_run
    assert "sst2 (60%)" in table2.detail  # Table 2's SST-2 sparsity is not on the ladder: named, not stood in for


def test_one_search_missing_is_not_testable_and_losses_fail(tmp_path):
    """A single ticket clearly below dense does not show IMP finds none (≥ 3 searches do); IMP below
    random, below its re-initialisation and an MLM ticket below the other tasks' tickets fail."""
    from reports.claims_bert import bert_claims

    def weak(src, task, sp):
        if src == "dense":
            return 80.0
        base = 70.0 if sp == 0.5 else 60.0  # the IMP tickets, clearly below dense
        return base if src in (f"imp:{task}", "imp:pretrain") else base + 5.0

    df, ref = store(tmp_path, weak)
    table2, random, reinit, mlm = bert_claims(df, TASKS, ref)
    assert table2.verdict == "not testable" and "1 search(es)" in table2.reason, table2
    assert "random pruning" in random.claim and random.verdict == "fails"
    assert "re-initialisation" in reinit.claim and reinit.verdict == "fails"
    assert mlm.verdict == "fails"

    df3, ref3 = store(tmp_path / "three", weak, searches=(0, 1, 2))
    table2 = bert_claims(df3, TASKS, ref3)[0]
    assert table2.verdict == "fails" and "mnli" in table2.reason, table2


def test_unconverged_dense_is_not_counted(tmp_path):
    from reports.claims_bert import bert_claims

    df, ref = store(tmp_path, separated)
    ref = ref.assign(value=ref["value"] + 5.0)  # twice the steps gain 5 points: not converged
    t2 = bert_claims(df, TASKS, ref)[0]
    assert t2.verdict == "not testable" and "dense not converged" in t2.reason


def test_text_study_detection():
    from reports.claims_bert import is_text_study

    assert is_text_study(["mnli", "squad", "text_mlm"])
    assert not is_text_study(["vqa", "gqa"]) and not is_text_study([])


def test_a_correlation_below_zero_is_a_valid_record():
    """CoLA's Matthews and STS-B's Pearson (× 100) go below zero for a model worse than chance; the
    record check takes [-100, 100] for them and keeps [0, 100] for every other score."""
    import pytest

    from bench.core.errors import DataError
    from bench.core.validate import check_record

    assert check_record("r.json", {"task": "cola", "metric": "matthews", "value": -88.4})["value"] == -88.4
    with pytest.raises(DataError, match=r"a pearson correlation × 100, in \[-100, 100\], found -150"):
        check_record("r.json", {"task": "stsb", "metric": "pearson", "value": -150.0})
    with pytest.raises(DataError, match=r"a score in \[0, 100\]"):
        check_record("r.json", {"task": "sst2", "metric": "accuracy", "value": -5.0})
