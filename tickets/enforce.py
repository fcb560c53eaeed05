"""Keep pruned weights at exactly zero while training, by masking their gradients.

The weights are zeroed once; a tensor hook then zeroes the gradient of every pruned weight before it
is accumulated, so optimizers see a zero gradient there: AdamW's moments stay zero, its update is
zero and decoupled weight decay of a zero weight is zero. No reparametrisation, no weight copies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.errors import TicketError


class MaskEnforcer:
    """Zero the pruned weights of `named_params` and keep them zero during training.

    Gradients are masked by hooks as they are computed; call `mask_grads()` after backward as well
    if something writes `.grad` directly (e.g. loading accumulated gradients). `remove()` detaches.
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
        self._handles = []
        self.zero_pruned()
        for _, p, pruned in self._items:
            self._handles.append(p.register_hook(_grad_masker(pruned)))

    def zero_pruned(self) -> None:
        """Set every pruned weight to exactly zero (done once at construction)."""
        with torch.no_grad():
            for _, p, pruned in self._items:
                p.masked_fill_(pruned, 0.0)

    def mask_grads(self) -> None:
        """Zero the accumulated gradient of every pruned weight (a safety net after backward)."""
        for _, p, pruned in self._items:
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

    def remove(self) -> None:
        """Detach the gradient hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _grad_masker(pruned: Tensor):
    def hook(grad: Tensor) -> Tensor:
        return grad.masked_fill(pruned.to(grad.device), 0.0)

    return hook
