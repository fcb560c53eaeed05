"""The cost estimate of `ticketbench plan` (bench/cost.py): counted from the plan and the declared recipes
and split sizes, before anything runs and without the data or the checkpoint."""

import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import load_config
from bench.core.errors import ConfigError
from bench.cost import (
    MFU,
    PEAK_TFLOPS,
    Estimate,
    Job,
    design_for_budget,
    estimate,
    flop_model,
    full_design,
    measured_mfu,
    plan_seeds,
    vilt_image_tokens,
)
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
    assert "GPU-hours at an MFU of 40% assumed (a) of 989 TFLOP/s" in out and "H100 SXM, dense bf16" in out
    total = [line for line in out.splitlines() if line.startswith("total:")]
    assert len(total) == 1 and "13 searches, 2,184 runs" in total[0] and total[0].endswith("GPU-hours")
    for task in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "pretrain"):
        assert any(line.startswith(task + " ") for line in out.splitlines()), task


def test_one_run_is_three_forwards_trained_plus_one_forward_evaluated():
    plan = _plan(PAPER, "matrix.tasks=nlvr2", "matrix.sources=dense", "matrix.seeds=1")
    est = estimate(plan)
    model = flop_model("uniter-base")
    row = est.rows["nlvr2"]
    assert (row.searches, row.runs, row.steps) == (0, 1, 8000)
    # UNITER's NLVR2 recipe: 10,240 tokens a step; evaluation: 6,982 dev statements x 2 images x (60 + 50).
    assert row.train_tokens == 8000 * 10240 and row.forward_tokens == 0
    dev = TASKS.get("nlvr2").sizes["dev"]
    assert row.eval_tokens == dev * 2 * (60 + 50)
    sequences = 8000 * 10240 / (2 * 110) * 2  # token budget / tokens an example, 2 sequences an example
    fwd = model.forward(60, 50)
    assert est.flops(row) == pytest.approx(3 * fwd * sequences + fwd * dev * 2)
    # A forward: 2 x matmul weights x tokens through them (no embedding tables) + attention.
    assert fwd == 2 * (60 * model.text_params + 50 * model.image_params + model.sequence_params) + 4 * 768 * 110 ** 2 * 12
    assert est.gpu_hours(est.flops(row)) == pytest.approx(est.flops(row) / (MFU * PEAK_TFLOPS * 1e12) / 3600)


def test_matmul_parameters_match_the_real_architectures_on_the_meta_device():
    """Full-size transformers models built from their configs on the meta device (no weights): the
    estimate's matmul weights are theirs, embedding tables left out."""
    import torch
    from torch import nn
    from transformers import BertConfig, BertModel, LxmertConfig, LxmertModel, ViltConfig, ViltModel

    def matmuls(model):
        return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))

    with torch.device("meta"):
        bert = BertModel(BertConfig(vocab_size=28996))  # UNITER-base's transformer is BERT-base (cased)
        lxmert = LxmertModel(LxmertConfig())  # unc-nlp/lxmert-base-uncased: 9 language, 5 vision, 5 cross layers
        vilt = ViltModel(ViltConfig())  # dandelin/vilt-b32-mlm: ViT-B/32 at 384
    region_projection = 2048 * 768 + 7 * 768  # UNITER's img_linear and pos_linear (7-d boxes)
    assert flop_model("uniter-base").matmul_params == matmuls(bert) + region_projection == 87_102_720
    assert flop_model("lxmert-base").matmul_params == matmuls(lxmert) == 183_831_552
    assert flop_model("vilt-b32").matmul_params == matmuls(vilt) == 87_883_776
    # Every token goes through the 12 layers; LXMERT's text tokens skip the 5 vision layers and the visual
    # projection, its image tokens the 9 language layers.
    layer = 4 * 768 * 768 + 2 * 768 * 3072
    uniter = flop_model("uniter-base")
    assert uniter.text_params == 12 * layer and uniter.image_params == 12 * layer + region_projection
    lx = flop_model("lxmert-base")
    cross = 4 * 768 * 768
    assert lx.text_params == 9 * layer + 5 * (layer + cross)
    assert lx.image_params == 5 * layer + 5 * (layer + cross) + 2048 * 768 + 4 * 768


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
    # ViLT: shorter side 384, longer at most 640, 32-pixel patches + [CLS]; a batch pads to its widest picture.
    assert vilt.image_tokens == 12 * 20 + 1 == 241
    assert vilt_image_tokens(480, 640) == vilt_image_tokens(640, 480) == 12 * 16 + 1 == 193
    assert vilt_image_tokens(300, 1200) == 5 * 20 + 1  # a panorama: 160 x 640, the longer side caps the scale
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


def test_retrieval_samples_its_negatives_and_mining_is_opt_in_and_counted_apart():
    """UNITER's released recipe: 3 sequences an example (positive, one sampled negative each way), no
    forward-only mining; finetune.hard_negatives=K adds 2K forward-only sequences an example."""
    released = _plan(PAPER, "matrix.tasks=retrieval", "matrix.sources=dense", "matrix.seeds=1")
    mined = _plan(PAPER, "matrix.tasks=retrieval", "matrix.sources=dense", "matrix.seeds=1", "finetune.hard_negatives=8")
    a, b = estimate(released).rows["retrieval"], estimate(mined).rows["retrieval"]
    examples = 20000 * 1280
    assert a.train_tokens == b.train_tokens == examples * 3 * 110 and a.forward_tokens == 0
    assert b.forward_tokens == examples * 16 * 110
    fwd = flop_model("uniter-base").forward(60, 50)
    assert b.train_flops - a.train_flops == pytest.approx(examples * 16 * fwd)


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
    stated = (f"{total.searches} searches, {total.runs:,.0f} runs, {total.steps:,.0f} optimizer steps, "
              f"{est.flops(total):.2e} FLOPs").replace("e+", "e")
    assert stated in comment, f"{path}: the comment should state '{stated}'"
    hours = f"~{round(est.total_hours, -1):,.0f} GPU-hours"
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


def test_the_find_stage_critical_path_and_the_matrix_after_it():
    """Searches run in parallel, one a GPU, each its chain of rounds; the matrix starts after the last."""
    est = Estimate("x", 1, 1, "", mfu=1.0, peak_tflops=1.0 / 3600 / 1e12)  # 1 FLOP = 1 GPU-hour
    est.jobs = [("find", Job("imp:a (9 calls)", "a", 9.0), 1), ("find", Job("imp:b", "b", 4.0), 1),
                ("find", Job("imp:c", "c", 3.0), 1), ("find", Job("omp:a", "a", 2.0), 1),
                ("matrix", Job("a run", "a", 1.5), 10), ("matrix", Job("b run", "b", 0.5), 4.0)]
    one = est.schedule(1)
    assert one.find_hours == 18.0 and one.matrix_hours == 17.0 and one.days == pytest.approx(35 / 24)
    two = est.schedule(2)  # longest first: a (9) | b (4) + c (3) + omp (2) = 9
    assert two.find_hours == 9.0 and two.matrix_hours == 8.5
    eight = est.schedule(8)
    assert eight.find_hours == 9.0 and "imp:a (9 calls)" in eight.critical
    assert eight.matrix_hours == max(17.0 / 8, 1.5)
    assert eight.find_gpu_hours == 18.0 and "busy 25%" in eight.describe()  # 18 of 8 x 9 GPU-hours
    with pytest.raises(ConfigError, match="--gpus"):
        est.schedule(0)


def test_seeds_per_cell_are_an_input_and_searches_follow_the_cells_that_need_them():
    plan = _plan(PAPER)
    full = plan_seeds(plan)
    assert sum(full.values()) == len(plan.cells) == 2184
    assert estimate(plan, seeds=full).total_hours == pytest.approx(estimate(plan).total_hours)
    dense = {k: v for k, v in full.items() if k[0] == "dense"}
    est = estimate(plan, seeds=dense)
    assert est.total.searches == 0 and est.total.runs == 21
    half = {k: v / 2 for k, v in dense.items()}  # expected seeds under adaptive stopping may be fractional
    assert estimate(plan, seeds=half).total_hours == pytest.approx(est.total_hours / 2)
    shuffled = {k: v for k, v in full.items() if k[0] == "shuffle:pretrain"}
    with_base = estimate(plan, seeds=shuffled)  # a derived ticket needs its base search: imp:pretrain
    assert with_base.rows["pretrain"].searches == 1 and with_base.rows["(no training)"].searches == 1


def test_a_budget_gets_the_design_that_fits_and_says_which_claims_it_tests(capsys):
    plan = _plan(PAPER)
    design = design_for_budget(plan, 100, gpus=8, max_days=3)
    assert design.estimate.total_hours <= 100 and design.schedule.days <= 3
    dense = {k: v for k, v in design.seeds.items() if k[0] == "dense"}
    assert len(dense) == 7 and set(dense.values()) == {3}  # every verdict's yardstick comes first
    claims = {c: ok for c, ok, _ in design.claims}
    assert claims["no IMP ticket strictly matches dense"] and claims["IMP beats random pruning (paired)"]
    full = full_design(plan, gpus=8)
    assert full.estimate.total_hours == pytest.approx(estimate(plan).total_hours) and all(claims for _, claims, _ in full.claims)
    tiny = design_for_budget(plan, 0.01, gpus=8)  # not even one task's dense seeds
    assert tiny.estimate.total_hours == 0 and not any(ok for _, ok, _ in tiny.claims)
    with pytest.raises(ConfigError, match="--budget"):
        design_for_budget(plan, 0, gpus=8)
    assert main(["plan", PAPER, "--gpus", "8", "--budget", "100", "--full"]) == 0
    out = capsys.readouterr().out
    assert "design: every cell × 3 seed(s), as configured" in out and "design: fits 100 GPU-hours and 3 days" in out
    assert "wall-clock on 8 GPU(s)" in out and "claims this design can test:" in out and "host-time ratio" in out


def test_a_measured_mfu_replaces_the_assumed_one_and_is_labelled(tmp_path, capsys):
    import json

    (tmp_path / "gpu-check.json").write_text(json.dumps({"recipes": [
        {"preset": "uniter-base", "task": "vqa", "mfu": 0.2}, {"preset": "vilt-b32", "task": "vqa", "mfu": 0.3},
        {"preset": "uniter-base", "task": "gqa", "mfu": 0.25, "dry_run": True}]}))
    assert measured_mfu(tmp_path, "uniter-base") == {"vqa": 0.2}  # a dry run measures nothing
    plan = _plan(PAPER, "matrix.tasks=vqa,gqa", "matrix.sources=dense")
    assumed, measured = estimate(plan), estimate(plan, measured={"vqa": 0.2})
    assert sum(measured.row_hours("vqa", measured.rows["vqa"])) == pytest.approx(
        2 * sum(assumed.row_hours("vqa", assumed.rows["vqa"])))
    assert main(["plan", PAPER, "--set", "matrix.tasks=vqa,gqa", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "measured (m) by the store's first GPU runs or gpu-check: vqa" in out and "20%m" in out and "40%a" in out


def test_the_first_real_gpu_runs_measure_mfu_and_host_wait(tmp_path, capsys):
    """Fine-tuning records of the plan's recipe on a CUDA device give the task's MFU (the estimate's FLOPs a
    step over the measured seconds a step) and its host wait; CPU runs, other recipes and the doubled-steps
    reference do not count."""
    import json

    from bench.cost import run_timings, step_flops

    plan = _plan(PAPER, "matrix.tasks=vqa,gqa", "matrix.sources=dense")
    est = estimate(plan)
    want = plan.finetune_settings("vqa", 0)
    flops = step_flops(est, plan, "vqa")
    step = flops / (0.25 * est.peak_tflops * 1e12)  # a run at 25 % MFU

    def record(name, device="cuda:0", step_s=step, **extra):
        config = {"batch_size": want.batch_size, "batch_tokens": want.batch_tokens, "grad_accum": want.grad_accum,
                  "steps": want.steps, **extra.pop("config", {})}
        rec = {"status": "done", "backbone": "uniter-base", "task": "vqa", "env": {"device": device},
               "timings": {"train_s": 100.0, "step_s": step_s, "host_wait_s": 5.0}, "config": config, **extra}
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "record.json").write_text(json.dumps(rec))

    record("a")
    record("b", step_s=step * 3)  # the median of three runs
    record("c", step_s=step * 0.5)
    record("cpu", device="cpu", step_s=step * 100)
    record("other-recipe", step_s=step * 100, config={"grad_accum": want.grad_accum + 1})
    record("reference", step_s=step * 100, steps_factor=2)
    got = run_timings(tmp_path, plan, est)
    assert set(got) == {"vqa"} and got["vqa"].runs == 3
    assert got["vqa"].mfu == pytest.approx(0.25) and got["vqa"].host_wait == pytest.approx(0.05)
    assert main(["plan", PAPER, "--set", "matrix.tasks=vqa,gqa", "--set", "matrix.sources=dense",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "25%m" in out and "40%a" in out and "vqa 5% wait, MFU 25% (3 run(s))" in out
