"""Exact magnitude pruning: global (one threshold over all prunable weights) and layer-wise.

A mask keeps the largest |w|. Exactly round(s·N) weights are pruned; among equal magnitudes at the
threshold the lower flat index (in the dict's order, row-major) is pruned first, so results are
deterministic. Selection uses numpy's introselect on one concatenated float32 array rather than a sort.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from bench.errors import TicketError


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Sparsity must be a number in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity):
        raise TicketError(f"{what} must be a number in [0, 1), found {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise TicketError(f"{what} must be in [0, 1), found {sparsity}")
    return float(sparsity)


def _scores(weights: dict[str, Tensor], current: dict[str, Tensor] | None) -> np.ndarray:
    """|w| of every weight as one float32 array; already-pruned weights score -1 (pruned first)."""
    if not weights:
        raise TicketError("no prunable weights given")
    parts = []
    for name, w in weights.items():
        a = w.detach().reshape(-1).to("cpu", torch.float32).abs()
        if current is not None:
            if name not in current:
                raise TicketError(f"current mask has no entry for '{name}'")
            m = current[name]
            if tuple(m.shape) != tuple(w.shape):
                raise TicketError(f"current mask '{name}': expected shape {tuple(w.shape)}, found {tuple(m.shape)}")
            a = a.masked_fill(~m.reshape(-1).to("cpu", torch.bool), -1.0)
        parts.append(a)
    flat = torch.cat(parts).numpy()
    if not np.isfinite(flat).all():
        bad = next(n for n, w in weights.items() if not torch.isfinite(w).all())
        raise TicketError(f"weights of '{bad}' contain NaN or inf: cannot rank magnitudes")
    return flat


def prune_lowest(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean keep-mask over `scores` pruning exactly the k lowest (ties: lower index pruned first)."""
    n = scores.size
    keep = np.ones(n, dtype=bool)
    if k <= 0:
        return keep
    if k >= n:
        return np.zeros(n, dtype=bool)
    v = np.partition(scores, k - 1)[k - 1]  # the k-th smallest score
    below = scores < v
    keep[below] = False
    need = k - int(below.sum())
    if need > 0:
        tied = np.flatnonzero(scores == v)
        keep[tied[:need]] = False
    return keep


def _split(keep: np.ndarray, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    out, offset = {}, 0
    flat = torch.from_numpy(keep)
    for name, w in weights.items():
        n = w.numel()
        out[name] = flat[offset : offset + n].reshape(w.shape).clone()
        offset += n
    return out


def _check_counts(k: int, current: dict[str, Tensor] | None, sparsity: float, where: str) -> None:
    if current is None:
        return
    already = sum(int((~m.to(torch.bool)).sum()) for m in current.values())
    if k < already:
        raise TicketError(
            f"{where}target sparsity {sparsity} prunes {k} weights but the current mask already prunes {already}"
            " (pruned weights are never revived)"
        )


def global_magnitude_masks(
    weights: dict[str, Tensor], sparsity: float, current: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Masks (True = kept) pruning exactly round(sparsity·N) of all N weights by global |w|.

    With `current` (IMP), weights it prunes stay pruned and count towards the total first.
    Equal to torch.nn.utils.prune.global_unstructured(L1Unstructured, amount=sparsity) when
    the threshold magnitude is not tied.
    """
    sparsity = check_sparsity(sparsity)
    scores = _scores(weights, current)
    k = round(sparsity * scores.size)
    _check_counts(k, current, sparsity, "")
    return _split(prune_lowest(scores, k), weights)


def layerwise_magnitude_masks(
    weights: dict[str, Tensor], sparsity: float, current: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Masks pruning exactly round(sparsity·n_t) weights of each tensor t by its own |w|."""
    sparsity = check_sparsity(sparsity)
    out = {}
    for name, w in weights.items():
        cur = None if current is None else {name: current.get(name, torch.ones_like(w, dtype=torch.bool))}
        if current is not None and name not in current:
            raise TicketError(f"current mask has no entry for '{name}'")
        scores = _scores({name: w}, cur)
        k = round(sparsity * scores.size)
        _check_counts(k, cur, sparsity, f"'{name}': ")
        out[name] = _split(prune_lowest(scores, k), {name: w})[name]
    return out


def masks_with_counts(scores: dict[str, Tensor], counts: dict[str, int]) -> dict[str, Tensor]:
    """Per-tensor masks pruning exactly counts[name] of the lowest scores of each tensor."""
    out = {}
    for name, s in scores.items():
        flat = _scores({name: s}, None)
        out[name] = _split(prune_lowest(flat, int(counts[name])), {name: s})[name]
    return out
