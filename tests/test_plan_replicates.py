"""Search replicates (`find.seeds`): each ticket search repeated inside one plan with distinct search seeds,
crossed with the matrix's cells; find.seeds = 1 keeps every key of today."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import prepare

from bench.config import load_config
from bench.core.source import Source
from bench.plan import build_plan, key_settings


def plan_of(*sets: str):
    return build_plan(load_config("smoke", ["matrix.tasks=snli_ve,gqa", *sets]))


def test_one_search_seed_keeps_every_key():
    base, explicit, three = plan_of(), plan_of("find.seeds=1"), plan_of("find.seeds=3")
    assert "seeds" not in key_settings(base.config, "find") and base.hash == explicit.hash
    assert three.hash != base.hash
    # Replicate 0 of a replicated plan is today's plan: same searches, same ids, same cells.
    h = "0123456789abcdef"
    ids = {s.source: base.search_id(s, h, "data") for s in base.searches}
    assert {s.source: three.search_id(s, h, "data") for s in three.searches if s.search_seed == 0} == ids
    assert [c for c in three.cells if c.search_seed == 0] == list(base.cells)
    # The adaptive settings change nothing while adaptive seeds are off.
    assert plan_of("matrix.adaptive_sigma=5", "matrix.adaptive_max_seeds=3").hash == base.hash
    assert plan_of("matrix.adaptive=true").hash != base.hash


def test_replicates_are_distinct_searches_and_controls_branch_from_their_own():
    plan = plan_of("find.seeds=2")
    h = "0123456789abcdef"
    for src in ("imp:snli_ve", "random", "reinit:pretrain"):
        a, b = plan.search(src, 0), plan.search(src, 1)
        assert (a.search_seed, b.search_seed) == (0, 1)
        assert plan.search_id(a, h, "d") != plan.search_id(b, h, "d")
    assert plan.search_settings(Source.parse("imp:snli_ve"), 1).seed == plan.search_settings(
        Source.parse("imp:snli_ve"), 0).seed + 1
    # Bases first, each derived search after every replicate of its base.
    order = [(str(s.source), s.search_seed) for s in plan.searches]
    assert order.index(("reinit:pretrain", 1)) > order.index(("imp:pretrain", 1))
    # Cells: every ticket cell once per replicate; dense has no search to repeat.
    per_rep = {r: [c for c in plan.cells if c.search_seed == r and not c.source.is_dense] for r in (0, 1)}
    assert len(per_rep[0]) == len(per_rep[1]) > 0
    assert all(c.search_seed == 0 for c in plan.cells if c.source.is_dense)
    assert "2 search replicates" in plan.describe()


def test_replicates_end_to_end_tickets_runs_and_results(tmp_path: Path):
    """Training-free searches, two replicates: random draws differ (distinct tickets, distinct run ids);
    pretrained magnitude is deterministic (one ticket content, one shared run reported once per replicate).
    Fine-tuning is the fake executor's (runner_fakes.counting_pair): the keys are what is tested here."""
    from runner_fakes import counting_pair

    from bench.runner.executors import run_pairs
    from bench.runner.finetune import make_pairs
    from bench.runner.results import write_manifest
    from bench.runner.stages import search_jobs
    from bench.runner.study import Study
    from reports.store import load_results

    out = tmp_path / "out"
    sources = ["random", "pretrained_magnitude", "dense"]
    prepare(out, "find.seeds=2", "matrix.seeds=2", tasks=["snli_ve"], sources=sources)
    cfg = load_config("smoke", ["pretrain.steps=5", "finetune.steps=3", "find.steps=3", "find.seeds=2",
                                "matrix.seeds=2", "matrix.tasks=snli_ve", f"matrix.sources={','.join(sources)}"])
    plan = build_plan(cfg)
    study = Study(cfg, out)
    theta0 = next((out / "pretrain").iterdir())
    roots = {(j.search.source, j.search.search_seed): j.root for j in search_jobs(plan, study, theta0)}
    assert len({r for r in roots.values()}) == 4  # two sources × two replicates, each its own folder
    pairs = make_pairs(plan, study, theta0, roots)
    by = {(p.source, p.sparsity, p.seed, p.search_seed): p for p in pairs}
    for s in plan.ladder:
        for seed in (0, 1):
            rnd = by[("random", s, seed, 0)], by[("random", s, seed, 1)]
            assert rnd[0].ticket_hash != rnd[1].ticket_hash and rnd[0].run_id != rnd[1].run_id
            mag = by[("pretrained_magnitude", s, seed, 0)], by[("pretrained_magnitude", s, seed, 1)]
            assert mag[0].ticket_hash == mag[1].ticket_hash and mag[0].run_id == mag[1].run_id
    # Fine-tuning seeds stay a separate replicate: another seed, another run.
    assert by[("random", 0.5, 0, 0)].run_id != by[("random", 0.5, 1, 0)].run_id
    write_manifest(out, plan, theta0, roots, pairs)
    summary = run_pairs(pairs, out, counting_pair, progress=False)
    assert not summary.failed
    df = load_results(out).frame
    assert len(df) == len(pairs)  # one row per cell: the shared magnitude run under each replicate
    assert set(df.loc[df["source"] != "dense", "search_seed"]) == {0, 1}
    assert set(df.loc[df["source"] == "dense", "search_seed"]) == {0}
    rows = df[df["source"] == "pretrained_magnitude"].groupby("search_seed")["run_id"].agg(set)
    assert rows[0] == rows[1]  # identical tickets: the same runs, not new ones, and not dropped


def test_old_stores_read_as_search_seed_zero(tmp_path: Path):
    import json

    from runner_fakes import counting_pair
    from runner_fakes import make_pairs as fake_pairs

    from bench.runner.executors import run_pairs
    from reports.store import collect_matrix

    run_pairs(fake_pairs(2), tmp_path, counting_pair, progress=False)
    for rec in tmp_path.glob("runs/*/record.json"):  # as written before replicates existed
        data = json.loads(rec.read_text())
        data.pop("search_seed")
        rec.write_text(json.dumps(data))
    df = collect_matrix(tmp_path, write=False)
    assert list(df["search_seed"]) == [0, 0]


@pytest.mark.parametrize("bad", ["find.seeds=0", "matrix.adaptive_alpha=1.5", "matrix.adaptive_max_seeds=0"])
def test_bad_replicate_settings_are_one_line_errors(bad):
    from bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match=bad.partition("=")[0]):
        load_config("smoke", [bad])
    with pytest.raises(ConfigError, match="adaptive_max_seeds: the cap .2. is below the first wave's matrix.seeds=3"):
        plan_of("matrix.adaptive=true", "matrix.seeds=3", "matrix.adaptive_max_seeds=2")
    assert "up to 8 seeds" in plan_of("matrix.adaptive=true").describe()


def test_mask_to_mask_beside_fine_tuning_spread():
    import pandas as pd

    from reports.seeds import replicate_spread

    # Two replicates of one cell, two fine-tuning seeds each: means 60 and 64, within-replicate sd √2.
    df = pd.DataFrame({"backbone": "b", "source": "random", "sparsity": 0.5, "task": "vqa",
                       "search_seed": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "value": [59.0, 61.0, 63.0, 65.0]})
    row = replicate_spread(df).iloc[0]
    assert (row["replicates"], row["seeds"]) == (2, 4)
    assert row["mask_std"] == pytest.approx(pd.Series([60.0, 64.0]).std())
    assert row["finetune_std"] == pytest.approx(2 ** 0.5)
    assert replicate_spread(df[df["search_seed"] == 0]).empty  # one search: nothing to show


def test_claim_tasks_power_a_core_and_keep_the_broad_matrix_at_replicate_0():
    """`matrix.claim_tasks`: the claims' sources (own-task IMP, imp:pretrain, baselines) on the claim tasks get
    every search replicate at claim_sparsities; everything else reads replicate 0, and searches only the
    broad matrix reads stop at its highest sparsity. Empty (the default) keeps every key of today."""
    assert plan_of("matrix.claim_tasks=").hash == plan_of().hash
    plan = plan_of("find.seeds=3", "find.sources=snli_ve,gqa,pretrain", "find.sparsities=0.3,0.5,0.7",
                   "matrix.sparsities=0.5", "matrix.claim_tasks=snli_ve", "matrix.claim_sparsities=0.5,0.7")
    reps = {}
    for s in plan.searches:
        reps.setdefault(str(s.source), set()).add(s.search_seed)
    assert reps["imp:snli_ve"] == reps["imp:pretrain"] == reps["random"] == {0, 1, 2}
    assert reps["imp:gqa"] == {0}  # read by the broad matrix only
    assert plan.search("imp:gqa").sparsities == (0.3, 0.5)  # no rounds past the sparsity the matrix reads
    assert plan.search("imp:snli_ve").sparsities == (0.3, 0.5, 0.7)
    core = {(str(c.source), c.sparsity, c.search_seed) for c in plan.cells if c.task == "snli_ve" and not c.source.is_dense}
    for src in ("imp:snli_ve", "imp:pretrain", "random"):
        assert {(src, s, r) for s in (0.5, 0.7) for r in range(3)} <= core
    assert ("imp:gqa", 0.5, 0) in core and not any(src == "imp:gqa" and r for src, _, r in core)
    other = [c for c in plan.cells if c.task == "gqa"]
    assert all(c.search_seed == 0 and c.sparsity in (0.0, 0.5) for c in other)
    assert len(set(plan.cells)) == len(plan.cells)  # the core does not repeat a broad cell
    assert "claims decided on snli_ve" in plan.describe()


def test_claim_tasks_must_be_target_tasks():
    from bench.core.errors import ConfigError
    with pytest.raises(ConfigError, match="matrix.claim_tasks: 'vqa' is not a target task"):
        plan_of("matrix.claim_tasks=vqa")
    with pytest.raises(ConfigError, match="matrix.claim_sparsities: 0.6 is not on the ticket ladder"):
        plan_of("matrix.claim_tasks=gqa", "matrix.claim_sparsities=0.6")
