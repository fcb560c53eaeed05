"""Keep pruned weights at exactly zero while training, by masking their gradients.

The weights are zeroed once; after every backward pass (before the optimizer step) `mask_grads()`
zeroes the gradient of every pruned weight in place, one pass per step, so optimizers see a zero
gradient there: AdamW's moments stay zero, its update is zero and decoupled weight decay of a zero
weight is zero. No reparametrisation, no weight copies, no per-backward hooks (they cost a second
masked copy of every gradient).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.core.errors import TicketError


class MaskEnforcer:
    """Zero the pruned weights of `named_params` and keep them zero during training.

    Call `mask_grads()` after backward and before every optimizer step (`bench.training.train`
    does); tensors whose mask keeps everything are skipped, so an all-ones ticket is bit-identical
    to training without one.
    """

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], masks: dict[str, Tensor]):
        by_name = dict(named_params)
        missing = [n for n in masks if n not in by_name]
        if missing:
            raise TicketError(f"mask '{missing[0]}' has no matching parameter ({len(missing)} masks unmatched)")
        self._items: list[tuple[str, nn.Parameter, Tensor]] = []
        for name, m in masks.items():
            p = by_name[name]
            if tuple(m.shape) != tuple(p.shape):
                raise TicketError(f"mask '{name}': shape {tuple(m.shape)} does not match parameter shape {tuple(p.shape)}")
            pruned = ~m.to(device=p.device, dtype=torch.bool)
            self._items.append((name, p, pruned))
        self._active = [(p, pruned) for _, p, pruned in self._items if bool(pruned.any())]
        self.zero_pruned()

    def zero_pruned(self) -> None:
        """Set every pruned weight to exactly zero (done once at construction)."""
        with torch.no_grad():
            for _, p, pruned in self._items:
                p.masked_fill_(pruned, 0.0)

    def mask_grads(self) -> None:
        """Zero the accumulated gradient of every pruned weight, in place."""
        for p, pruned in self._active:
            if p.grad is not None:
                p.grad.masked_fill_(pruned, 0.0)

    def audit(self) -> dict:
        """{'pruned': pruned weights, 'nonzero_pruned': pruned weights that are not exactly 0,
        'trained_sparsity': fraction of the masked weights that are exactly 0 now}."""
        pruned = nonzero = zeros = total = 0
        with torch.no_grad():
            for _, p, pm in self._items:
                pruned += int(pm.sum())
                nonzero += int((p[pm] != 0).sum())
                zeros += int((p == 0).sum())
                total += p.numel()
        return {"pruned": pruned, "nonzero_pruned": nonzero, "trained_sparsity": zeros / total if total else 0.0}
