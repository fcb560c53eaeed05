"""Adversarial training (FreeLB / VILLA in embedding space): the perturbation's defining properties on
a tiny model, and the regime as part of every search's and run's identity."""

from __future__ import annotations

import torch
from torch import nn

from bench.config import load_config
from bench.plan import build_plan
from bench.training.adversarial import adversarial_loss_fn


class _Backbone(nn.Module):
    preset = "tiny"

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.img_embeddings = nn.Module()
        self.img_embeddings.img_linear = nn.Linear(4, 8)

    def word_embeddings(self):
        return self.emb


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()
        self.head = nn.Linear(8, 1)

    def forward(self, ids, feats):
        h = self.backbone.emb(ids).mean(1) + self.backbone.img_embeddings.img_linear(feats).mean(1)
        return self.head(torch.tanh(h)).squeeze(-1)


def _setup():
    torch.manual_seed(0)
    model = _Model()
    batch = (torch.randint(0, 10, (6, 5)), torch.randn(6, 3, 4), torch.randn(6))
    calls, seen = [], []

    def loss_fn(b):
        ids, feats, y = b
        calls.append(1)
        # Record the perturbation the hooks added (output minus the clean embedding).
        seen.append(model.backbone.emb(ids).detach().clone())
        return ((model(ids, feats) - y) ** 2).mean()

    return model, batch, loss_fn, calls, seen


def test_k_ascent_steps_within_the_epsilon_ball_raise_the_loss():
    model, batch, loss_fn, calls, seen = _setup()
    clean = loss_fn(batch).item()
    calls.clear(), seen.clear()
    eps = 0.5
    adv = adversarial_loss_fn(model, loss_fn, steps=3, epsilon=eps, step_size=0.2)(batch)
    assert len(calls) == 4  # the clean pass and K = 3 adversarial passes
    ids = batch[0]
    base = model.backbone.emb.weight[ids].detach()
    for perturbed in seen:
        delta = perturbed - base
        assert (delta.flatten(1).norm(dim=1) <= eps + 1e-5).all()
    assert (seen[-1] - base).abs().sum() > 0  # the last pass is perturbed
    assert adv.item() > clean  # ascent: the mean of clean and adversarial losses exceeds the clean one
    adv.backward()
    assert model.head.weight.grad is not None and model.backbone.emb.weight.grad is not None
    # The hooks are gone afterwards: a plain forward is the clean one again.
    assert abs(loss_fn(batch).item() - clean) < 1e-6


def test_the_regime_is_part_of_the_plan_and_every_identity():
    plain, adv = build_plan(load_config("smoke")), build_plan(load_config("smoke", ["finetune.adv_steps=2"]))
    assert plain.hash != adv.hash
    assert adv.finetune_settings("vqa", 0).adv_steps == 2 and plain.finetune_settings("vqa", 0).adv_steps == 0
    # Searches train adversarially too unless find.adv_steps says otherwise.
    assert adv.search_settings(adv.search("imp:vqa").source).adv_steps == 2
    only_ft = build_plan(load_config("smoke", ["finetune.adv_steps=2", "find.adv_steps=0"]))
    assert only_ft.search_settings(only_ft.search("imp:vqa").source).adv_steps == 0
    h = "0" * 12
    assert adv.search_id(adv.search("imp:vqa"), h, h) != plain.search_id(plain.search("imp:vqa"), h, h)
    assert only_ft.search_id(only_ft.search("imp:vqa"), h, h) == plain.search_id(plain.search("imp:vqa"), h, h)
