"""The cost estimate of `ticketbench plan` (bench/cost.py): counted from the plan and the declared recipes
and split sizes, before anything runs and without the data or the checkpoint."""

import math
from pathlib import Path

import pytest

from bench.backbones.presets import count_parameters
from bench.cli import main
from bench.config import load_config
from bench.core.errors import ConfigError
from bench.cost import MFU, PEAK_TFLOPS, estimate
from bench.plan import build_plan
from bench.tasks import TASKS

PAPER = "bench/configs/paper-uniter.yaml"


def _plan(config, *overrides):
    return build_plan(load_config(config, list(overrides)))


def test_plan_of_the_paper_config_prints_gpu_hours_without_data_or_checkpoint(capsys):
    cfg = load_config(PAPER)
    assert not Path(cfg.world.data_root).exists() and not Path(cfg.backbone.checkpoint).exists()
    assert main(["plan", PAPER]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan ")  # the plan's own description first, then its cost
    assert "GPU-hours at 40% MFU of 989 TFLOP/s" in out and "H100 SXM, dense bf16" in out
    total = [line for line in out.splitlines() if line.startswith("total:")]
    assert len(total) == 1 and "13 searches, 2,184 runs" in total[0] and total[0].endswith("GPU-hours")
    for task in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "pretrain"):
        assert any(line.startswith(task + " ") for line in out.splitlines()), task


def test_one_run_is_six_n_d_for_training_plus_two_n_d_for_evaluation():
    plan = _plan(PAPER, "matrix.tasks=nlvr2", "matrix.sources=dense", "matrix.seeds=1")
    est = estimate(plan)
    n = count_parameters("uniter-base")
    row = est.rows["nlvr2"]
    assert (row.searches, row.runs, row.steps) == (0, 1, 8000)
    # UNITER's NLVR2 recipe: 10,240 tokens a step; evaluation: 6,982 dev statements x 2 images x (60 + 50).
    assert row.train_tokens == 8000 * 10240 and row.forward_tokens == 0
    assert row.eval_tokens == TASKS.get("nlvr2").sizes["dev"] * 2 * (60 + 50)
    assert est.flops(row) == pytest.approx(6 * n * 8000 * 10240 + 2 * n * row.eval_tokens)
    assert est.gpu_hours(est.flops(row)) == pytest.approx(est.flops(row) / (MFU * PEAK_TFLOPS * 1e12) / 3600)


def test_retrieval_evaluation_scores_every_text_against_every_image():
    plan = _plan(PAPER, "matrix.tasks=retrieval", "matrix.sources=dense", "matrix.seeds=1")
    assert estimate(plan).rows["retrieval"].eval_tokens == 5000 * 1000 * (60 + 50)
    limited = _plan(PAPER, "matrix.tasks=retrieval", "matrix.sources=dense", "matrix.seeds=1", "finetune.dev_limit=500")
    assert estimate(limited).rows["retrieval"].eval_tokens == 500 * 100 * (60 + 50)


def test_the_estimate_scales_linearly_with_steps():
    one = estimate(_plan(PAPER, "finetune.steps=1000"))
    two = estimate(_plan(PAPER, "finetune.steps=2000"))
    for task in ("vqa", "retrieval", "vcr"):
        a, b = one.rows[task], two.rows[task]
        assert b.steps == 2 * a.steps and b.eval_tokens == a.eval_tokens
        assert two.train_flops(b) == pytest.approx(2 * one.train_flops(a))
    # IMP trains once per round: 9 rounds on VQA, plus OMP's one training and 312 runs.
    assert one.rows["vqa"].steps == (9 + 1 + 312) * 1000


def test_image_tokens_follow_the_backbone_and_the_flags():
    vilt = estimate(_plan("bench/configs/paper-vilt.yaml", "matrix.tasks=vqa"))
    assert vilt.image_tokens == (384 // 32) ** 2 + 1 == 145
    assert estimate(_plan("bench/configs/paper-lxmert.yaml", "matrix.tasks=vqa")).image_tokens == 36
    plan = _plan(PAPER, "matrix.tasks=vqa")
    assert estimate(plan).image_tokens == 50 and estimate(plan, regions=100).image_tokens == 100
    slow = estimate(plan, mfu=0.2)
    fast = estimate(plan)
    assert slow.gpu_hours(1e18) == pytest.approx(2 * fast.gpu_hours(1e18))
    with pytest.raises(ConfigError, match="--mfu"):
        estimate(plan, mfu=1.5)
    with pytest.raises(ConfigError, match="--regions"):
        estimate(plan, regions=0)


def test_token_budgets_count_their_tokens_and_example_batches_their_examples():
    plan = _plan(PAPER, "matrix.tasks=vqa,refcoco_plus", "matrix.sources=dense", "matrix.seeds=1")
    rows = estimate(plan).rows
    assert rows["vqa"].train_tokens == 6000 * 20480 * 5  # tokens, whatever the text length
    assert rows["refcoco_plus"].train_tokens == 10000 * 128 * (60 + 50)


def test_toyland_plans_leave_evaluation_unestimated(capsys):
    assert main(["plan", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "evaluation not estimated on toyland" in out and "total:" in out
    est = estimate(_plan("smoke"))
    assert est.total.eval_tokens is None and math.isfinite(est.flops(est.total))


@pytest.mark.parametrize("family", ["uniter", "lxmert", "vilt"])
def test_each_paper_config_states_its_own_estimate(family):
    """The comment at the top of bench/configs/paper-<family>.yaml is the command's output: when a recipe
    or the plan changes, run `ticketbench plan bench/configs/paper-<family>.yaml` and paste the totals."""
    path = f"bench/configs/paper-{family}.yaml"
    comment = " ".join(line.lstrip("# ") for line in Path(path).read_text().splitlines() if line.startswith("#"))
    est = estimate(_plan(path))
    total = est.total
    stated = (f"{total.searches} searches, {total.runs:,} runs, {total.steps:,} optimizer steps, "
              f"{est.flops(total):.2e} FLOPs").replace("e+", "e")
    assert stated in comment, f"{path}: the comment should state '{stated}'"
    hours = f"~{round(est.gpu_hours(est.flops(total)), -1):,.0f} GPU-hours"
    assert hours in comment, f"{path}: the comment should state {hours}"


def test_a_toyland_world_gives_the_evaluation_sizes(tmp_path, capsys):
    import json

    from bench.data.toyland import generate_world

    generate_world(tmp_path / "world", seed=0, scale="smoke")
    plan = _plan("smoke", "finetune.dev_limit=0")
    est = estimate(plan, world=tmp_path / "world")
    counts = json.loads((tmp_path / "world" / "MANIFEST.json").read_text())["counts"]
    seq = est.image_tokens + min(plan.config.finetune.max_text_len, 40)
    runs = est.rows["nlvr2"].runs
    assert est.rows["nlvr2"].eval_tokens == runs * counts["nlvr2"]["dev"] * 2 * seq
    assert est.rows["refcoco_plus"].eval_tokens == runs * counts["refcoco_plus"]["val"] * seq
    karpathy = json.loads((tmp_path / "world" / "flickr30k" / "dataset_flickr30k.json").read_text())["images"]
    test = [im for im in karpathy if im["split"] == "test"]
    texts = sum(len(im["sentences"]) for im in test)
    assert est.rows["retrieval"].eval_tokens == runs * texts * len(test) * seq
    assert est.total.eval_tokens > 0
    assert main(["plan", "smoke", "--out", str(tmp_path)]) == 0
    assert f"split sizes: counted in the toyland world {tmp_path / 'world'}" in capsys.readouterr().out
