import pytest
import torch
from torch import nn

from bench.core.errors import TicketError
from tickets import MaskEnforcer, global_magnitude_masks
from tickets.testing import ToyTransformer, toy_data


def _train(model, enforcer=None, steps=30, seed=0):
    torch.manual_seed(seed)
    tokens, target = toy_data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(tokens), target)
        opt.zero_grad()
        loss.backward()
        if enforcer is not None:
            enforcer.mask_grads()
        opt.step()
    return opt


def test_pruned_weights_stay_exactly_zero_under_adamw_with_weight_decay():
    model = ToyTransformer()
    named = model.prunable_parameters()
    masks = global_magnitude_masks({n: p.detach() for n, p in named}, 0.6)
    enforcer = MaskEnforcer(named, masks)
    before = enforcer.audit()
    assert before["nonzero_pruned"] == 0 and before["pruned"] == round(0.6 * sum(m.numel() for m in masks.values()))
    opt = _train(model, enforcer, steps=50)
    for n, p in named:
        assert (p.detach()[~masks[n]] == 0).all()
        state = opt.state[p]
        assert (state["exp_avg"][~masks[n]] == 0).all() and (state["exp_avg_sq"][~masks[n]] == 0).all()
        assert (p.detach()[masks[n]] != 0).any()  # the kept weights did train
    audit = enforcer.audit()
    assert audit["nonzero_pruned"] == 0 and audit["trained_sparsity"] >= 0.6


def test_all_ones_mask_is_bit_identical_to_no_ticket():
    a, b = ToyTransformer(seed=4), ToyTransformer(seed=4)
    ones = {n: torch.ones_like(p, dtype=torch.bool) for n, p in b.prunable_parameters()}
    _train(a)
    _train(b, MaskEnforcer(b.prunable_parameters(), ones))
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), n


def test_audit_catches_leaks_and_bad_masks_are_refused():
    model = ToyTransformer()
    named = model.prunable_parameters()
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in named}
    enf = MaskEnforcer(named, masks)
    _train(model, steps=2)  # trains without calling mask_grads: the audit must notice the leak
    assert enf.audit()["nonzero_pruned"] > 0
    with pytest.raises(TicketError, match="shape"):
        MaskEnforcer(named, {named[0][0]: torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(TicketError, match="no matching parameter"):
        MaskEnforcer(named, {"nope": torch.ones(2, dtype=torch.bool)})
