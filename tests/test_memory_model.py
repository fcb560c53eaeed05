"""The activation-memory model (bench/backbones/memory.py): checked against what autograd saves on CPU at
full size, and every paper recipe's micro-batch split to fit an 80 GB card with its step's examples kept."""

import pytest
import torch

from bench.backbones.base import PixelBatch, RegionBatch
from bench.backbones.memory import (
    CPU,
    GIB,
    activation_bytes,
    fit_micro_batch,
    gpu_precision,
    micro_batch_bytes,
    state_bytes,
    text_cap,
    widest_image_tokens,
)
from bench.backbones.presets import ARCHS, PRESETS
from bench.config import load_config
from bench.core.errors import ConfigError
from bench.core.settings import TrainSettings
from bench.plan import build_plan
from bench.runner.gpu_check import saved_activation_bytes
from bench.tasks import TASKS


@pytest.mark.parametrize("preset", ["uniter-base", "lxmert-base", "vilt-b32"])
def test_the_model_agrees_with_a_cpu_measurement_at_two_sizes(preset):
    """Full size, random weights, train mode (dropout on where the preset has it), float32 on CPU."""
    spec = PRESETS.get(preset)
    torch.manual_seed(0)
    model = ARCHS[spec.arch](spec.name, spec.family, spec.config, None).train()
    for text, rows in ((16, 2), (40, 6)):  # image: regions, or rows of 12 patches (+ [CLS])
        ids = torch.randint(1, 1000, (1, text))
        mask = torch.ones(1, text, dtype=torch.long)
        if spec.arch == "vilt":
            images = PixelBatch(torch.randn(1, 3, 32 * rows, 32 * 12), torch.ones(1, 32 * rows, 32 * 12, dtype=torch.long))
            image = rows * 12 + 1
        else:
            image = rows * 12
            pos = 7 if spec.arch == "uniter" else 4
            images = RegionBatch(torch.randn(1, image, spec.config["feat_dim"]), torch.rand(1, image, pos),
                                 torch.ones(1, image, dtype=torch.bool))
        measured = saved_activation_bytes({p.untyped_storage().data_ptr() for p in model.parameters()}, lambda i=ids, m=mask, im=images: model.encode_tokens(i, m, im).pooled.sum())
        predicted = activation_bytes(preset, text, image, CPU)
        assert abs(predicted / measured - 1) < 0.15, (preset, text, image, predicted, measured)


@pytest.mark.parametrize("family", ["uniter", "lxmert", "vilt"])
def test_every_paper_recipe_micro_batch_fits_80_gb_keeping_the_step(family):
    plan = build_plan(load_config(f"bench/configs/paper-{family}.yaml"))
    preset = plan.config.backbone.preset
    image = widest_image_tokens(preset, plan.config.world.max_bb)
    split = {}
    for task in plan.config.matrix.tasks:
        spec = TASKS.get(task)
        recipe = spec.recipe(family)
        fitted = plan.finetune_settings(task, 0)
        text = text_cap(preset, spec.recipe_notes[family].text_len, plan.config.finetune.max_text_len)
        size = micro_batch_bytes(preset, fitted, text, image, spec.sequences, gpu_precision(preset))
        assert size <= plan.config.finetune.memory_gib * GIB < 80e9, (task, size / GIB)
        if recipe.batch_tokens:
            assert fitted.batch_tokens * fitted.grad_accum == recipe.batch_tokens * recipe.grad_accum
        else:
            assert fitted.batch_size * fitted.grad_accum == recipe.batch_size * recipe.grad_accum
        split[task] = fitted.grad_accum // recipe.grad_accum
    if family == "vilt":  # 256 retrieval examples x 3 sequences and 128 VCR questions x 8 do not fit one card
        assert split["retrieval"] == 2 and split["vcr"] == 2 and split["vqa"] == 1
    else:
        assert set(split.values()) == {1}
    unsplit = build_plan(load_config(f"bench/configs/paper-{family}.yaml", ["finetune.memory_gib=0"]))
    assert unsplit.finetune_settings("vcr", 0) == plan.finetune_settings("vcr", 0).override(
        batch_size=TASKS.get("vcr").recipe(family).batch_size, grad_accum=TASKS.get("vcr").recipe(family).grad_accum)


def test_a_split_keeps_token_budgets_and_refuses_a_budget_below_one_example():
    s = TrainSettings(batch_tokens=20480, grad_accum=5)
    state = state_bytes("uniter-base")
    activations = micro_batch_bytes("uniter-base", s, 60, 100, 1) - state
    fitted = fit_micro_batch(s, "uniter-base", 60, 100, 1, budget_gib=(state + 0.6 * activations) / GIB)
    assert fitted.batch_tokens == 10240 and fitted.grad_accum == 10
    with pytest.raises(ConfigError, match="memory_gib"):
        fit_micro_batch(s, "uniter-base", 60, 100, 1, budget_gib=0.5)
