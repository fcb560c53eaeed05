"""The training loop: per-call schedule decaying to 0, divergence as a failed run, masks enforced."""

import pytest
import torch
from torch import nn

from bench.core.errors import RunFailed
from bench.tasks.base import Example
from bench.training import Callback, Snapshot, TrainSettings, train
from bench.training.batching import bucketed_batches, eval_batches


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 8, generator=g)
    return [Example(uid=str(i), image_ids=("img",), texts=("a " * (i % 5 + 1),), target=xs[i]) for i in range(n)]


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def loss(self, batch):
        x = torch.stack([ex.target for ex in batch])
        y = x.sum(dim=1, keepdim=True)
        return ((self.head(torch.relu(self.body(x))) - y) ** 2).mean()


def test_schedule_warms_up_and_decays_to_zero_within_each_call():
    model = Regressor()
    s = TrainSettings(steps=20, batch_size=8, lr=1e-2, warmup=0.2)
    for _ in range(2):  # a second call (an IMP round) gets its own full schedule
        log = train(model, model.loss, _data(), s, log_every=1)
        lrs = [h["lr"] for h in log.history]
        assert max(lrs) == pytest.approx(1e-2)
        assert lrs[3] == pytest.approx(1e-2) and lrs[-1] == 0.0


def test_loss_goes_down():
    torch.manual_seed(0)
    model = Regressor()
    log = train(model, model.loss, _data(), TrainSettings(steps=200, batch_size=16, lr=3e-2), log_every=20)
    assert log.history[-1]["loss"] < 0.1 * log.history[0]["loss"]


def test_non_finite_loss_fails_the_run():
    model = Regressor()

    def bad(batch):
        return model.loss(batch) * float("nan")

    with pytest.raises(RunFailed, match="non-finite loss"):
        train(model, bad, _data(), TrainSettings(steps=5, batch_size=8, lr=1e-3))


def test_snapshot_for_late_rewinding_is_a_copy():
    model = Regressor()
    snap = Snapshot(3, lambda: {"w": model.body.weight.detach().clone()})
    train(model, model.loss, _data(), TrainSettings(steps=10, batch_size=8, lr=1e-2), callbacks=[snap])
    assert not torch.equal(snap.value["w"], model.body.weight)


def test_callbacks_are_called_in_order_at_each_point_of_a_step():
    model, calls = Regressor(), []

    class Spy(Callback):
        def __init__(self, name):
            self.name = name

        def begin(self):
            calls.append((self.name, "begin"))

        def after_grads(self, step):
            calls.append((self.name, "grads", step))
            return self.name == "b" and step == 2  # one callback's stop stops training; the others still ran

        def after_step(self, step, steps, loss):
            calls.append((self.name, "step", step))

    log = train(model, model.loss, _data(), TrainSettings(steps=10, batch_size=8, lr=1e-2),
                callbacks=[Spy("a"), Spy("b")])
    assert log.steps == 2
    assert calls == [("a", "begin"), ("b", "begin"), ("a", "grads", 1), ("b", "grads", 1), ("a", "step", 1),
                     ("b", "step", 1), ("a", "grads", 2), ("b", "grads", 2), ("a", "step", 2), ("b", "step", 2)]


def test_batches_are_seeded_and_cover_the_data():
    data = _data(40)
    a = bucketed_batches(data, 8, seed=1)
    b = bucketed_batches(data, 8, seed=1)
    first = [[ex.uid for ex in next(a)] for _ in range(5)]
    assert first == [[ex.uid for ex in next(b)] for _ in range(5)]
    assert sorted(u for batch in first for u in batch) == sorted(ex.uid for ex in data)
    assert sorted(ex.uid for batch in eval_batches(data, 7) for ex in batch) == sorted(ex.uid for ex in data)
