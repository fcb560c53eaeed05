"""Device bugs caught on a CPU-only machine: fake CUDA tensors (FakeTensorMode) raise on any op that
mixes devices, as real CUDA does. The model is built on the CPU, the ticket's enforcer is created
there (as the runner does), then the model moves to "cuda:0" — the order in which the original
enforcer kept CPU masks and failed on the first CUDA gradient.

A CPU-only torch cannot record autograd through fake CUDA tensors (autograd asks the missing CUDA
device guard for a stream and aborts), so forward passes run without autograd and "backward" gives
every parameter a gradient of its own shape on its own device, as real backward does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from bench.backbones import TaskModel, create_backbone
from bench.tasks.base import Example, TaskSpec
from bench.training import TrainSettings, train
from tickets import MaskEnforcer, global_magnitude_masks
from tickets.testing import ToyTransformer, toy_data

CUDA = torch.device("cuda", 0)
META = torch.device("meta")
FEAT = 16
WORDS = "a the red blue green cube sphere cone is left right of ?".split()


def move_to_fake(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """What `module.to("cuda:0")` does, for a module built inside the FakeTensorMode: every parameter
    and buffer moves, the Parameter objects stay the same (so an enforcer built before the move
    holds the moved parameters, as on a real GPU). `Module.to` itself cannot swap fake parameters."""
    for t in (*module.parameters(), *module.buffers()):
        t.fake_device = device
    return module


class OldEnforcer(MaskEnforcer):
    """Today's enforcer before the fix: bool masks fixed on the parameter's device at construction."""

    def mask_grads(self) -> None:
        for _, p, keep in self._items:
            if p.grad is not None:
                p.grad.masked_fill_(~keep, 0.0)


def fake_backward(model: torch.nn.Module):
    """Tensor.backward for fake CUDA: a gradient like each trainable parameter (see the docstring)."""

    def backward(self, *args, **kwargs):
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.ones_like(p) if p.grad is None else p.grad + 1
    return backward


def _toy_step(enforcer_cls, monkeypatch):
    real = ToyTransformer()  # the masks come from real weights, as a ticket read from disk (CPU)
    masks = global_magnitude_masks({n: p.detach() for n, p in real.prunable_parameters()}, 0.6)
    tokens, target = toy_data(8)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = ToyTransformer()
    named = model.prunable_parameters()
    enforcer = enforcer_cls(named, masks)  # built on the CPU, before the move (outside the mode: masks stay real)
    monkeypatch.setattr(torch.Tensor, "backward", fake_backward(model))
    with mode:
        move_to_fake(model, CUDA)
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(model(tokens.to(CUDA)), target.to(CUDA))
        loss.backward()
        enforcer.mask_grads()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 2.0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
        opt.step()
        devices = {p.device for _, p in named} | {p.grad.device for _, p in named}
        devices |= {t.device for t in enforcer._cache.values()}
    return devices


def test_masked_step_after_moving_to_cuda_follows_the_parameters(monkeypatch):
    assert _toy_step(MaskEnforcer, monkeypatch) == {CUDA}


def test_the_old_enforcer_fails_this_check(monkeypatch):
    """The test above would have caught the bug: CPU masks applied to CUDA gradients raise."""
    with pytest.raises(FakeTensorDeviceMismatchError):
        _toy_step(OldEnforcer, monkeypatch)


@dataclass
class Regions:
    features: torch.Tensor
    boxes: torch.Tensor
    positions: torch.Tensor


class RegionStore:
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.images = {}
        for i in range(n):
            k = 3 + i % 3
            xy = torch.rand(k, 2, generator=g) * 0.5
            boxes = torch.cat([xy, xy + 0.3], 1)
            self.images[f"img{i}"] = Regions(torch.randn(k, FEAT, generator=g), boxes, boxes)

    def get(self, image_id):
        return self.images[image_id]


def _spec(head: str, loss: str) -> TaskSpec:
    return TaskSpec(name=f"dev-{head}", title="", head=head, loss=loss, metrics=("acc",), headline="acc",
                    chance=0.0, files={}, splits=("train", "dev"), loader=lambda *a: [],
                    evaluator=lambda *a: {}, recipes={"toy": TrainSettings(steps=2, batch_size=4, lr=1e-3)})


def _examples(head: str, n: int = 8) -> list[Example]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(3 + i % 4))
        texts = (text,)
        if head == "classify":
            target = {"red": 1.0, "blue": 0.3}
        elif head == "region":
            target = i % 3
        else:  # choice: 2 answers then 2 rationales
            texts, target = (text, "a cube", "a cone", "the red cube"), (i % 2, (i + 1) % 2)
        out.append(Example(f"e{i}", (f"img{i % 4}",), texts, target))
    return out


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    p = tmp_path_factory.mktemp("world") / "vocab.txt"
    p.write_text("\n".join(WORDS) + "\n")
    return p


# itm is not here: its hard-negative mining reads scores (argmax) to build the pairs, which fake tensors lack.
@pytest.mark.parametrize("head,loss", [("classify", "soft_bce"), ("region", "cross_entropy"), ("choice", "cross_entropy")])
def test_training_loop_runs_a_ticket_on_another_device(vocab, monkeypatch, head, loss):
    """`bench.training.train` with a ticket, after the move: tokenisation, region collation,
    targets, masking, clipping and AdamW all stay on the parameters' device. The device is fake
    "meta", not fake CUDA: transformers' BERT slices its position buffer with Python indexing, which
    asks for the CUDA device guard a CPU-only torch lacks. Any tensor left on the CPU still raises.
    Fake tensors carry no values, so the loop's one host read (`_host`) is stubbed."""
    store = RegionStore(4)
    monkeypatch.setattr("bench.training.loop._host", lambda values: [0.0] * len(values))
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        torch.manual_seed(0)
        backbone = create_backbone("toy-uniter", vocab_path=vocab, feat_dim=FEAT, num_layers=1)
        model = TaskModel(backbone, _spec(head, loss), ["red", "blue"] if head == "classify" else None)
    named = backbone.prunable_parameters()
    g = torch.Generator().manual_seed(0)
    enforcer = MaskEnforcer(named, {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in named})
    with mode:
        move_to_fake(model, META)
        log = train(model, lambda b: model.loss(b, store), _examples(head), TrainSettings(steps=2, batch_size=4, lr=1e-3),
                    device=META, enforcer=enforcer)
        assert {p.device for p in model.parameters()} == {META}
        assert {t.device for t in enforcer._cache.values()} == {META}
    assert [h["step"] for h in log.history] == [2]
