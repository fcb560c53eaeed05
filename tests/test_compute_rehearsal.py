"""A full-size rehearsal of uniter-base (slow): random weights saved under the official UNITER key names
(with its pre-training heads), loaded by the preset, a ticket applied, one masked fine-tuning step and
one pre-training step on real-size shapes. The same path at tiny width runs in CI in
tests/test_backbones_pretrained_heads.py and tests/test_backbones_checkpoints.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from fixtures.checkpoints import VOCAB_SIZE, uniter_checkpoint, wordpiece_tokenizer

from bench.backbones import PretrainModel, TaskModel, create_backbone
from bench.tasks import TASKS
from bench.tasks.base import Example
from bench.training import TrainSettings, train
from tickets import MaskEnforcer, global_magnitude_masks


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
    tok = wordpiece_tokenizer(tmp_path / "tokenizer", VOCAB_SIZE["uniter"], lowercase=False)
    uniter_checkpoint(tmp_path / "uniter-base.safetensors", tok)
    h = 768

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
