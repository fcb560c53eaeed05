"""Keep pruned weights at exactly zero while training, by masking their gradients.

The weights are zeroed once; after every backward pass (before clipping and the optimizer step)
`mask_grads()` multiplies the gradients of the masked tensors by their keep-masks, so clipping sees
the kept gradients only and optimizers see a zero gradient at every pruned weight: AdamW's moments
stay zero, its update is zero and decoupled weight decay of a zero weight is zero.

Cost and devices: the keep-masks are cached per (device, dtype) of the parameter *at use*, so a
model moved after the enforcer was built (`train` moves it to the GPU) is masked on its own device;
the multiply is one `torch._foreach_mul_` per (device, dtype) group (one multi-tensor kernel on
CUDA). On CPU a float multiply is ~17x faster than `masked_fill_` with a bool mask (2.2 ms vs 38 ms
for MiniLM's 10.6M prunable weights, 1 thread), which is what kept the masked step at 1.16x dense.
No reparametrisation, no weight copies, no per-backward hooks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.core.errors import TicketError


class MaskEnforcer:
    """Zero the pruned weights of `named_params` and keep them zero during training.

    Call `mask_grads()` after backward and before clipping and every optimizer step
    (`bench.training.train` does); tensors whose mask keeps everything are skipped, so an all-ones
    ticket is bit-identical to training without one. The masks are kept as given (bool, on the
    ticket's device); every tensor the enforcer applies follows the parameter's device and dtype.
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
            self._items.append((name, p, m.detach().to(dtype=torch.bool)))
        # Only tensors with something pruned are touched per step.
        self._active = [(p, keep) for _, p, keep in self._items if not bool(keep.all())]
        self._cache: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}
        self.zero_pruned()

    def _keep(self, i: int, keep: Tensor, like: Tensor) -> Tensor:
        """Keep-mask i as `like`'s device and dtype (cached: built once per device and dtype)."""
        key = (i, like.device, like.dtype)
        t = self._cache.get(key)
        if t is None:
            # A moved model leaves masks of the old device behind: drop them (GPU memory).
            for k in [k for k in self._cache if k[0] == i]:
                del self._cache[k]
            t = self._cache[key] = keep.to(device=like.device, dtype=like.dtype)
        return t

    def zero_pruned(self) -> None:
        """Set every pruned weight to exactly zero (done once at construction)."""
        with torch.no_grad():
            self._mul_([(i, p, keep) for i, (p, keep) in enumerate(self._active)])

    def mask_grads(self) -> None:
        """Zero the accumulated gradient of every pruned weight, in place (a multiply by the keep-mask)."""
        self._mul_([(i, p.grad, keep) for i, (p, keep) in enumerate(self._active) if p.grad is not None])

    def _mul_(self, items: list[tuple[int, Tensor, Tensor]]) -> None:
        groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
        for i, t, keep in items:
            ts, ks = groups.setdefault((t.device, t.dtype), ([], []))
            ts.append(t)
            ks.append(self._keep(i, keep, t))
        for ts, ks in groups.values():
            torch._foreach_mul_(ts, ks)

    def audit(self) -> dict:
        """{'pruned': pruned weights, 'nonzero_pruned': pruned weights that are not exactly 0,
        'trained_sparsity': fraction of the masked weights that are exactly 0 now}."""
        pruned = nonzero = zeros = total = 0
        with torch.no_grad():
            for _, p, keep in self._items:
                # count_nonzero, no boolean indexing: a few ms a matrix at full size instead of ~40.
                keep = keep.to(p.device)
                pruned += keep.numel() - int(keep.count_nonzero())
                nonzero += int(p.masked_fill(keep, 0).count_nonzero())
                zeros += p.numel() - int(p.count_nonzero())
                total += p.numel()
        return {"pruned": pruned, "nonzero_pruned": nonzero, "trained_sparsity": zeros / total if total else 0.0}
