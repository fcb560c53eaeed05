"""Mid-run checkpoints of `train()`: an interrupted call resumed from its last checkpoint computes exactly
what an uninterrupted one does (weights, optimizer, schedule, RNG and data position restored)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_training_loop import _data
from torch import nn

from bench.training import OnStep, Snapshot, TrainSettings, train
from bench.training.checkpoint import LATEST, Checkpoint


class Noisy(nn.Module):
    """Uses the global RNG in its loss (dropout), has a frozen part, and a MaskEnforcer-free head."""

    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.body = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(16, 1)

    def loss(self, batch):
        x = torch.stack([ex.target for ex in batch])
        y = x.sum(dim=1, keepdim=True)
        return ((self.head(self.drop(torch.relu(self.body(self.frozen(x))))) - y) ** 2).mean()


SETTINGS = TrainSettings(steps=40, batch_size=8, lr=1e-2, warmup=0.2, grad_accum=2, seed=3)


class Interrupted(Exception):
    pass


def _fresh():
    torch.manual_seed(0)
    return Noisy()


def _interrupt_at(step):
    def on_step(s, _steps, _loss):
        if s == step:
            raise Interrupted

    return on_step


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resumed_call_equals_an_uninterrupted_one(tmp_path):
    ref = _fresh()
    ref_log = train(ref, ref.loss, _data(), SETTINGS, log_every=5)

    model = _fresh()
    with pytest.raises(Interrupted):  # killed at step 27: the last checkpoint is step 25's
        train(model, model.loss, _data(), SETTINGS, log_every=5, callbacks=[OnStep(_interrupt_at(27))],
              checkpoint=Checkpoint(tmp_path, 1e-9, key="run"))
    latest = json.loads((tmp_path / LATEST).read_text())
    assert latest["step"] == 25 and latest["batches"] == 25 * SETTINGS.grad_accum
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-00000025"]  # older ones removed
    saved = load_file(tmp_path / "step-00000025" / "weights.safetensors")
    assert set(saved) == {"body.weight", "body.bias", "head.weight", "head.bias"}  # what trains
    torch.load(tmp_path / "step-00000025" / "state.pt", weights_only=True)  # no pickled code

    model = _fresh()  # a new process: fresh model, same seeds
    ck = Checkpoint(tmp_path, 0, key="run")
    log = train(model, model.loss, _data(), SETTINGS, log_every=5, checkpoint=ck)
    assert ck.resumed_from == 25 and log.steps == SETTINGS.steps
    assert log.history == ref_log.history
    for k, v in _state(ref).items():
        assert torch.equal(v, model.state_dict()[k]), k
    ck.clear()
    assert not tmp_path.exists()


def test_no_checkpoint_at_the_last_step_and_none_when_off(tmp_path):
    model = _fresh()
    train(model, model.loss, _data(), SETTINGS, log_every=5, checkpoint=Checkpoint(tmp_path / "off", 0))
    assert not (tmp_path / "off").exists()
    model = _fresh()
    train(model, model.loss, _data(), SETTINGS, log_every=5, checkpoint=Checkpoint(tmp_path / "on", 1e-9))
    assert json.loads((tmp_path / "on" / LATEST).read_text())["step"] == 35  # the last window is not saved


def test_a_checkpoint_of_another_run_or_a_corrupt_one_is_not_resumed(tmp_path, capsys):
    model = _fresh()
    with pytest.raises(Interrupted):
        train(model, model.loss, _data(), SETTINGS, log_every=5, callbacks=[OnStep(_interrupt_at(12))],
              checkpoint=Checkpoint(tmp_path, 1e-9, key="run-a"))
    ref = _fresh()
    ref_log = train(ref, ref.loss, _data(), SETTINGS, log_every=5)

    model = _fresh()
    ck = Checkpoint(tmp_path, 0, key="run-b")
    log = train(model, model.loss, _data(), SETTINGS, log_every=5, checkpoint=ck)
    assert ck.resumed_from == 0 and log.history == ref_log.history
    assert "not resumed: it is for another run; starting over" in capsys.readouterr().err

    (tmp_path / "step-00000010" / "state.pt").write_bytes(b"garbage")
    model = _fresh()
    ck = Checkpoint(tmp_path, 0, key="run-a")
    log = train(model, model.loss, _data(), SETTINGS, log_every=5, checkpoint=ck)
    assert ck.resumed_from == 0 and log.history == ref_log.history
    err = capsys.readouterr().err
    assert "not resumed: unreadable" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_and_rewind_snapshot_are_not_combined(tmp_path):
    model = _fresh()
    with pytest.raises(ValueError, match="snapshot"):
        train(model, model.loss, _data(), SETTINGS, callbacks=[Snapshot(3, dict)],
              checkpoint=Checkpoint(tmp_path, 1))
