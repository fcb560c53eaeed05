"""The BERT study through every stage (text world, MLM pre-training of toy-bert, IMP on a GLUE task and
on MLM, random, re-init, matrix, report) in miniature; the VL default's plan hash is pinned: the text
study re-keys no VL search or run."""

from __future__ import annotations

import json

import pytest

from bench.config import load_config
from bench.pipeline import run_pipeline
from bench.plan import build_plan

# The plan hash of `ticketbench plan toyland` (the VL default). It changes only with a deliberate change
# to the VL default (its config, a recipe, a toyland version); adding text tasks, presets or worlds must not.
TOYLAND_PLAN = "b30142ba7863"


def test_the_vl_default_plan_hash_is_pinned():
    assert build_plan(load_config("toyland")).hash == TOYLAND_PLAN


def test_bert_toy_plan_has_the_study_shape():
    plan = build_plan(load_config("bert-toy"))
    assert plan.image_input == "none" and plan.family == "toy"
    sources = {str(s.source) for s in plan.searches}
    assert {"imp:pretrain", "imp:mnli", "imp:squad", "random", "reinit:pretrain"} <= sources
    assert [ph.objectives for ph in plan.phases] == [(("mlm", 1.0),)]
    assert {c.task for c in plan.cells} == {"mnli", "qqp", "stsb", "wnli", "qnli", "mrpc", "rte", "sst2", "cola", "squad"}


def test_bert_minilm_plan_is_the_study_on_real_weights():
    plan = build_plan(load_config("bert-minilm"))
    assert plan.image_input == "none" and plan.family == "minilm"
    assert {"imp:pretrain", "imp:mnli", "random", "reinit:pretrain"} <= {str(s.source) for s in plan.searches}
    assert len(plan.cells) == 84  # the breadth its header's time estimate counts


@pytest.mark.slow
def test_bert_study_runs_end_to_end(tmp_path):
    cfg = load_config("bert-toy", overrides=[
        "world.scale=smoke", "pretrain.steps=8", "finetune.steps=3", "finetune.dev_limit=8", "matrix.tasks=sst2,squad",
        "find.sources=sst2,pretrain", "matrix.workers=1", "matrix.dense_seeds=1", "matrix.convergence_check=false"])
    out = run_pipeline(cfg, out=str(tmp_path), quiet=True)
    records = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]
    assert records and all(r["status"] == "done" for r in records)
    assert {r["task"] for r in records} == {"sst2", "squad"}
    assert {r["source"] for r in records} >= {"dense", "imp:sst2", "imp:pretrain", "random", "reinit:pretrain"}
    for r in records:
        assert r["mask_audit"]["nonzero_pruned"] == 0
        assert r["metric"] == {"sst2": "accuracy", "squad": "f1"}[r["task"]]
    assert (out / "world" / "SST-2" / "train.tsv").exists() and (out / "report" / "README.md").exists()
    assert json.loads((out / "world" / "MANIFEST.json").read_text())["kind"] == "textworld"
    claims = (out / "report" / "claims.csv").read_text()  # a text study is judged by the BERT-tickets claims
    assert "Table 2" in claims and "re-initialisation" in claims and "MLM" in claims
    assert "BERT-tickets rules" in (out / "report" / "README.md").read_text()


def test_paper_bert_plan_prints_its_gpu_hours():
    from bench.cost import estimate

    plan = build_plan(load_config("paper-bert"))
    est = estimate(plan)
    assert est.image_tokens == 0  # text only: no image tokens in any sequence
    total = est.total
    assert total.runs == 3100 and total.searches == 13  # 10 tasks x 5 seeds x (11 IMP x 5 + random x 5 + re-init + dense)
    assert 10 < est.gpu_hours(est.flops(total)) < 1000
    assert "GPU-hours" in est.describe()


def test_a_toyland_world_is_refused_for_a_text_backbone(tmp_path):
    from bench.core.errors import TicketbenchError
    from bench.runner.stages import stage_world
    from bench.runner.study import Study

    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "MANIFEST.json").write_text(json.dumps({"seed": 0, "scale": "default", "version": 2}))
    cfg = load_config("bert-toy")
    with pytest.raises(TicketbenchError, match="holds a toyland world .* of the textworld world this backbone reads"):
        stage_world(build_plan(cfg), Study(cfg, tmp_path), quiet=True)
