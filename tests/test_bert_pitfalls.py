"""The known pitfalls of the original BERT-ticket code, as tests of the suite's IMP on a BERT backbone:

1. the rewind copy must not alias live parameters (one original script's "rewinding" reloaded trained
   weights): every round starts from θ0 ⊙ m, even when θ0 is handed over as the live parameters;
2. the learning-rate schedule restarts with each IMP round (the original's spanned all rounds, so a
   round never decayed to 0): every round warms up / decays from the peak to 0 within itself;
3. the mask stays fixed through fine-tuning: pruned weights and their AdamW state stay exactly zero.
"""

from __future__ import annotations

import pytest
import torch
from fixtures.text_files import write_glue_tsv

import tickets.methods
from bench.backbones.presets import create_backbone
from bench.backbones.text_model import TextTaskModel
from bench.core.settings import TrainSettings
from bench.tasks import TASKS, label_space
from bench.training import loop
from tickets.enforce import MaskEnforcer
from tickets.fingerprint import fingerprint_of
from tickets.search import SearchContext, TrainResult

STEPS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pitfalls")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _search(tmp_path, monkeypatch)


def _search(tmp_path, monkeypatch) -> dict:
    """IMP (ladder 10 / 20 / 30 %) of toy-bert on the SST-2 fixture, recording every round."""
    spec = TASKS.get("sst2")
    examples = spec.load(write_glue_tsv(tmp_path), "train") * 4
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(sorted({w for ex in examples for w in ex.texts[0].lower().split()})) + "\n")
    torch.manual_seed(0)
    model = TextTaskModel(create_backbone("toy-bert", vocab_path=vocab), spec, labels=label_space(spec, examples))
    named = model.backbone.prunable_parameters()
    pretrained = {n: p.detach().clone() for n, p in named}
    heads0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    rounds = []  # per round: start weights given to train, masks, history, the optimizer, trained weights
    optimizers = []
    real_adamw = loop.make_adamw
    monkeypatch.setattr(loop, "make_adamw", lambda *a, **k: optimizers.append(real_adamw(*a, **k)) or optimizers[-1])

    def train(start, masks, on_grads=None) -> TrainResult:
        with torch.no_grad():
            for n, p in model.named_parameters():  # heads and embeddings restart too
                p.copy_(heads0[n])
            for n, p in named:
                p.copy_(start[n])
        enforcer = MaskEnforcer(named, masks)
        settings = TrainSettings(steps=STEPS, batch_size=8, lr=1e-3, warmup=0.25, weight_decay=0.01, grad_clip=1.0)
        log = loop.train(model, model.loss, examples, settings, enforcer=enforcer, log_every=1)
        trained = {n: p.detach().clone() for n, p in named}
        rounds.append({"start": {n: t.clone() for n, t in start.items()}, "masks": masks, "history": log.history,
                       "opt": optimizers[-1], "trained": trained})
        return TrainResult(trained, None, {"loss_last": log.history[-1]["loss"]})

    # θ0 handed over as the live parameters themselves (detached views sharing their storage): the
    # aliasing of the original script, which IMP must survive by copying before anything trains.
    ctx = SearchContext(backbone="toy-bert", fingerprint=fingerprint_of(named), theta0={n: p.detach() for n, p in named},
                        train=train, source="sst2", sparsities=(0.1, 0.2, 0.3))
    found = tickets.methods.get("imp")(ctx, {"mode": "ladder"})
    return {"named": named, "pretrained": pretrained, "rounds": rounds, "tickets": found}


def test_rewinding_reloads_the_pretrained_weights_not_the_trained_ones(setup):
    rounds, pretrained = setup["rounds"], setup["pretrained"]
    assert len(rounds) == 3 and [round(t.sparsity, 2) for t in setup["tickets"]] == [0.1, 0.2, 0.3]
    for r in range(1, 3):
        start, masks, before = rounds[r]["start"], rounds[r]["masks"], rounds[r - 1]["trained"]
        for n, w0 in pretrained.items():
            assert torch.equal(start[n] * masks[n], w0 * masks[n])  # θ0 ⊙ m, bit for bit
        assert any(not torch.equal(start[n], before[n]) for n in pretrained)  # not the trained weights
    # the copies IMP hands to train share no storage with the live parameters
    live = {p.data_ptr() for _, p in setup["named"]}
    assert not any(t.data_ptr() in live for r in rounds for t in r["start"].values())


def test_lr_schedule_restarts_with_each_round(setup):
    lrs = [[h["lr"] for h in r["history"]] for r in setup["rounds"]]
    assert all(len(x) == STEPS for x in lrs)
    assert lrs[0] == lrs[1] == lrs[2]  # each round its own warm-up and decay, not one schedule across rounds
    assert max(lrs[0]) == pytest.approx(1e-3) and lrs[0][-1] == 0.0  # reaches the peak and decays to 0 within a round


def test_mask_stays_fixed_pruned_weights_and_adamw_state_stay_zero(setup):
    last = setup["rounds"][-1]
    masks, opt = last["masks"], last["opt"]
    pruned = sum(int((~m.bool()).sum()) for m in masks.values())
    assert pruned > 0
    for n, p in setup["named"]:
        keep = masks[n].bool()
        assert torch.count_nonzero(p.detach()[~keep]) == 0  # exactly zero after the last step
        state = opt.state[p]
        assert torch.count_nonzero(state["exp_avg"][~keep]) == 0
        assert torch.count_nonzero(state["exp_avg_sq"][~keep]) == 0
        assert torch.count_nonzero(p.detach()[keep]) > 0
