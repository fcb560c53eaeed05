"""LXMERT's optimizer, `BertAdam` (airsplay/lxmert src/lxrt/optimization.py), for recipes that name it.

Its step differs from AdamW's in three ways that change numbers: no bias correction of the moments (the
first steps move by m / (√v + ε) with m, v still near zero: larger than Adam's for the same lr), ε = 1e-6
added outside the square root, and the weight decay added to the update (decoupled, as AdamW) on every
parameter LXMERT hands it — `BertAdam(list(self.model.parameters()), ...)`, biases and LayerNorms included.
The learning-rate schedule (warm-up then linear decay, `warmup_linear`) is the training loop's scheduler,
which gives the same factor at each step; LXMERT's own clipping inside BertAdam is commented out there.
"""

from __future__ import annotations

import torch


class BertAdam(torch.optim.Optimizer):
    """p ← p − lr_t · (m / (√v + ε) + wd · p), m and v BertAdam's uncorrected moving averages."""

    def __init__(self, params, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p]["next_m"] = torch.zeros_like(p)
                    self.state[p]["next_v"] = torch.zeros_like(p)
            grads = [p.grad for p in params]
            m = [self.state[p]["next_m"] for p in params]
            v = [self.state[p]["next_v"] for p in params]
            torch._foreach_mul_(m, beta1)
            torch._foreach_add_(m, grads, alpha=1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            update = torch._foreach_div(m, torch._foreach_add(torch._foreach_sqrt(v), group["eps"]))
            if group["weight_decay"] > 0.0:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return loss
