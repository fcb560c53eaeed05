"""LXMERT's BertAdam (issue 27 item 7): the released update rule, step by step, against a transcription of
airsplay/lxmert src/lxrt/optimization.py's loop; the recipes that name it."""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import ConfigError
from bench.core.settings import TrainSettings
from bench.tasks import TASKS
from bench.training.loop import make_adamw
from bench.training.optim import BertAdam


def _released(p, grads, lr_t, b1=0.9, b2=0.999, e=1e-6, wd=0.01):
    """LXMERT's BertAdam.step as released, one parameter: uncorrected moments, ε outside the root, decay on p."""
    p = p.clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for g, lr in zip(grads, lr_t):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        update = m / (v.sqrt() + e) + wd * p
        p.add_(-lr * update)
    return p


def test_bertadam_steps_as_released():
    torch.manual_seed(0)
    w0 = torch.randn(5, 3, dtype=torch.float64)
    grads = [torch.randn(5, 3, dtype=torch.float64) for _ in range(6)]
    lrs = [0.0, 1e-3, 2e-3, 1.5e-3, 1e-3, 5e-4]  # a warm-up and a decay, as the loop's scheduler sets them
    p = torch.nn.Parameter(w0.clone())
    opt = BertAdam([p], lr=lrs[0], betas=(0.9, 0.999))
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        p.grad = g.clone()
        opt.step()
    assert torch.allclose(p.detach(), _released(w0, grads, lrs), rtol=0, atol=1e-12)
    adamw = torch.nn.Parameter(w0.clone())
    a = torch.optim.AdamW([adamw], lr=1e-3, eps=1e-6, weight_decay=0.01)
    adamw.grad = grads[1].clone()
    a.step()
    one = _released(w0, grads[1:2], [1e-3])
    assert not torch.allclose(adamw.detach(), one)  # Adam's bias correction: a different first step


def test_the_loop_builds_bertadam_decaying_every_parameter():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.0, "lr": 1e-4},
              {"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.01, "lr": 1e-4}]
    opt = make_adamw(groups, TrainSettings(optimizer="bertadam", weight_decay=0.01, betas=(0.9, 0.999)),
                     torch.device("cpu"))
    assert isinstance(opt, BertAdam) and [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.01]
    with pytest.raises(ConfigError, match="optimizer: expected adamw or bertadam, found 'sgd'"):
        make_adamw(groups, TrainSettings(optimizer="sgd"), torch.device("cpu"))


def test_lxmerts_recipes_name_bertadam():
    for name in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr"):
        assert TASKS.get(name).recipe("lxmert", "lxmert-base").optimizer == "bertadam", name
        assert TASKS.get(name).recipe("uniter", "uniter-base").optimizer == "adamw", name
