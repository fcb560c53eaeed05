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


class _Classifier(nn.Module):
    """A TaskModel-shaped classifier (batcher, forward_loss, predict_batch) over the tiny backbone."""

    kind = "classify"

    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()
        self.head = nn.Linear(8, 3)

    def logits(self, batch):
        ids, feats, _, _ = batch
        h = self.backbone.emb(ids).mean(1) + self.backbone.img_embeddings.img_linear(feats).mean(1)
        return self.head(torch.tanh(h))

    def batcher(self, store, targets=True):
        def prepare(examples):
            return (torch.stack([e["ids"] for e in examples]), torch.stack([e["feats"] for e in examples]),
                    torch.tensor([e["y"] for e in examples]), [e["uid"] for e in examples])
        return prepare

    def forward_loss(self, batch):
        return nn.functional.cross_entropy(self.logits(batch), batch[2])

    def predict_batch(self, batch):
        with torch.no_grad():
            return dict(zip(batch[3], self.logits(batch).argmax(-1).tolist()))


class _Ex(dict):
    texts = ("a b",)  # the eval batches are ordered by text length


class _Spec:
    name = "toy"

    @staticmethod
    def evaluate(examples, predictions):
        return {"accuracy": 100.0 * sum(predictions[e["uid"]] == e["y"] for e in examples) / len(examples)}


def _fitted_classifier():
    torch.manual_seed(0)
    model = _Classifier()
    examples = [_Ex({"uid": f"u{i}", "ids": torch.randint(0, 10, (5,)), "feats": torch.randn(3, 4), "y": i % 3})
                for i in range(24)]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = model.batcher(None)(examples)
    for _ in range(200):  # fit the training set, so the clean accuracy is high and an attack has room
        opt.zero_grad()
        model.forward_loss(batch).backward()
        opt.step()
    return model, examples


def test_robust_evaluation_scores_under_the_training_attack_and_restores_the_model():
    import pytest

    from bench.core.errors import ConfigError
    from bench.training.adversarial import robust_evaluate

    model, examples = _fitted_classifier()
    clean = _Spec.evaluate(examples, model.predict_batch(model.batcher(None)(examples)))["accuracy"]
    weak, _ = robust_evaluate(model, _Spec, examples, None, steps=2, epsilon=1e-6, step_size=1e-6, batch_size=8)
    strong, _ = robust_evaluate(model, _Spec, examples, None, steps=5, epsilon=5.0, step_size=2.0, batch_size=8)
    assert clean >= 90.0 and weak["accuracy"] == clean  # a vanishing attack changes nothing
    assert strong["accuracy"] < clean  # a large one flips predictions
    assert model.training  # the train/eval mode is restored
    again = _Spec.evaluate(examples, model.predict_batch(model.batcher(None)(examples)))["accuracy"]
    assert again == clean  # the hooks are gone
    with pytest.raises(ConfigError, match="expected steps >= 1"):
        robust_evaluate(model, _Spec, examples, None, steps=0, epsilon=1.0, step_size=0.5)
    model.kind = "itm"
    with pytest.raises(ConfigError, match="head 'itm'; expected a classify or region head"):
        robust_evaluate(model, _Spec, examples, None, steps=1, epsilon=1.0, step_size=0.5)


def test_robust_evaluation_is_outside_a_search_identity():
    cfg = load_config("smoke", ["finetune.adv_eval_steps=2"])
    plan, plain = build_plan(cfg), build_plan(load_config("smoke"))
    assert plan.finetune_settings("vqa", 0).adv_eval_steps == 2
    h = "0" * 12
    assert plan.search_id(plan.search("imp:vqa"), h, h) == plain.search_id(plain.search("imp:vqa"), h, h)
