"""The 'without fine-tuning' score a matrix run records when its task's head starts from θ0's: the
pruned model as it is (θ0 ⊙ m, or SparseGPT's reconstructed weights), with the weights and the RNG
restored afterwards so the fine-tuning that follows is unchanged."""

from types import SimpleNamespace

import torch
from torch import nn

import bench.runner.finetune as ft


def test_reconstructed_weights_are_scored_then_restored(monkeypatch):
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0]]))  # θ0 ⊙ m
    seen = []

    def fake_eval(model, spec, examples, store, batch_size, bf16, workers):
        seen.append(lin.weight.detach().clone())
        torch.rand(3)  # evaluation that draws from the RNG must not shift the training that follows
        return {"acc": float(lin.weight.detach().sum())}, [], 0.0

    monkeypatch.setattr(ft, "evaluate_task", fake_eval)
    study = SimpleNamespace(eval_examples=lambda task: ("dev", []), store_for=lambda task: None)
    cfg = SimpleNamespace(finetune=SimpleNamespace(eval_batch_size=4, loader_workers=0))
    pair = SimpleNamespace(task="t", settings=SimpleNamespace(bf16=False))
    spec = SimpleNamespace(headline="acc")
    ticket = SimpleNamespace(reconstructed=lambda: {"w": torch.tensor([[3.0, 0.0]])})
    torch.manual_seed(0)
    state = torch.get_rng_state()
    out = ft.without_finetuning(lin, ticket, [("w", lin.weight)], spec, study, cfg, pair)
    assert out == {"value": 3.0, "weights": "reconstructed"}
    assert torch.equal(seen[0], torch.tensor([[3.0, 0.0]]))
    assert torch.equal(lin.weight.detach(), torch.tensor([[1.0, 0.0]]))  # θ0 ⊙ m back for fine-tuning
    assert torch.equal(torch.get_rng_state(), state)
    # a ticket without reconstructed weights (or the dense model) is scored as it is
    none = SimpleNamespace(reconstructed=lambda: None)
    assert ft.without_finetuning(lin, none, [("w", lin.weight)], spec, study, cfg, pair) == {"value": 1.0,
                                                                                          "weights": "θ0 ⊙ m"}
    assert ft.without_finetuning(lin, None, [], spec, study, cfg, pair)["value"] == 1.0


def test_a_retrieval_head_loaded_from_theta0_asks_for_the_score_without_fine_tuning(tmp_path):
    """The flag `finetune_pair` reads: set only when the task head starts from θ0's own weights (a
    margin-loss retrieval head from the pre-trained ITM head's match row), not for a fresh head."""
    from bench.backbones import create_backbone
    from bench.backbones.task_model import TaskModel
    from bench.tasks import TASKS

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["a", "red", "cube"]) + "\n")
    backbone = create_backbone("toy-uniter", vocab_path=vocab, feat_dim=8)
    h = backbone.config["hidden_size"]
    spec = TASKS.get("retrieval")
    assert not TaskModel(backbone, spec, None).head_from_theta0  # toy: BCE, a fresh head
    backbone.pretrained_heads = {"rank.proj.weight": torch.full((1, h), 0.5), "rank.proj.bias": torch.zeros(1)}
    model = TaskModel(backbone, spec, None, itm_loss="margin")
    assert model.head_from_theta0 and torch.equal(model.head.proj.weight.detach(), torch.full((1, h), 0.5))
    assert not TaskModel(backbone, TASKS.get("vqa"), ["yes", "no"]).head_from_theta0
