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

from bench.core.errors import TicketError


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Sparsity must be a number in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity):
        raise TicketError(f"{what} must be a number in [0, 1), found {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise TicketError(f"{what} must be in [0, 1), found {sparsity}")
    return float(sparsity)


def _abs_np(w: Tensor) -> np.ndarray:
    return np.abs(w.detach().to("cpu", torch.float32).reshape(-1).numpy())


def _alive_np(name: str, w: Tensor, current: dict[str, Tensor] | None) -> np.ndarray | None:
    """Flat bool array of the weights not yet pruned (None = all alive)."""
    if current is None:
        return None
    if name not in current:
        raise TicketError(f"current mask has no entry for '{name}'")
    m = current[name]
    if tuple(m.shape) != tuple(w.shape):
        raise TicketError(f"current mask '{name}': expected shape {tuple(w.shape)}, found {tuple(m.shape)}")
    return m.detach().to("cpu", torch.bool).reshape(-1).numpy()


def _prune_k(weights: dict[str, Tensor], k: int, current: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Keep-masks pruning exactly k weights of `weights` by |w| (already-pruned ones first).

    Ties at the threshold: the lower flat index (dict order, row-major) is pruned first.
    Memory: one float32 buffer of the alive magnitudes, partitioned in place (introselect, no
    sort), then one pass per tensor comparing against the threshold.
    """
    if not weights:
        raise TicketError("no prunable weights given")
    alive = {n: _alive_np(n, w, current) for n, w in weights.items()}
    n_alive = {n: (w.numel() if alive[n] is None else int(np.count_nonzero(alive[n]))) for n, w in weights.items()}
    n_dead = sum(w.numel() for w in weights.values()) - sum(n_alive.values())
    if k < n_dead:
        raise TicketError(f"cannot prune {k} weights: {n_dead} are already pruned (pruned weights are never revived)")
    need = k - n_dead  # alive weights still to prune
    buf = np.empty(sum(n_alive.values()), dtype=np.float32)
    offset = 0
    for n, w in weights.items():
        a = _abs_np(w)
        buf[offset : offset + n_alive[n]] = a if alive[n] is None else a[alive[n]]
        offset += n_alive[n]
    if not np.isfinite(buf).all():
        bad = next(n for n, w in weights.items() if not torch.isfinite(w).all())
        raise TicketError(f"weights of '{bad}' contain NaN or inf: cannot rank magnitudes")
    if need == 0:
        v, ties = -1.0, 0
    elif need >= buf.size:
        v, ties = np.inf, 0
    else:
        buf.partition(need - 1)
        v = buf[need - 1]  # the need-th smallest alive magnitude
        ties = need - int(np.count_nonzero(buf[: need - 1] < v))  # tied-at-v weights to prune
    del buf
    out = {}
    for n, w in weights.items():
        a = _abs_np(w)
        keep = a > v
        if alive[n] is not None:
            keep &= alive[n]
        if v not in (-1.0, np.inf):
            tied = np.flatnonzero(a == v if alive[n] is None else (a == v) & alive[n])
            keep[tied[ties:]] = True  # the first `ties` tied weights are pruned, the rest kept
            ties -= min(ties, tied.size)
        out[n] = torch.from_numpy(keep).reshape(w.shape)
    return out


def global_magnitude_masks(
    weights: dict[str, Tensor], sparsity: float, current: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Masks (True = kept) pruning exactly round(sparsity·N) of all N weights by global |w|.

    With `current` (IMP), weights it prunes stay pruned and count towards the total first; a
    target below the current sparsity is an error. Equal to
    torch.nn.utils.prune.global_unstructured(L1Unstructured, amount=sparsity) when the threshold
    magnitude is not tied.
    """
    sparsity = check_sparsity(sparsity)
    n = sum(w.numel() for w in weights.values())
    return _prune_k(weights, round(sparsity * n), current)


def layerwise_magnitude_masks(
    weights: dict[str, Tensor], sparsity: float, current: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Masks pruning exactly round(sparsity·n_t) weights of each tensor t by its own |w|."""
    sparsity = check_sparsity(sparsity)
    out = {}
    for name, w in weights.items():
        if current is not None and name not in current:
            raise TicketError(f"current mask has no entry for '{name}'")
        cur = None if current is None else {name: current[name]}
        out[name] = _prune_k({name: w}, round(sparsity * w.numel()), cur)[name]
    return out


def masks_with_counts(scores: dict[str, Tensor], counts: dict[str, int]) -> dict[str, Tensor]:
    """Per-tensor masks pruning exactly counts[name] of the lowest |scores| of each tensor."""
    return {name: _prune_k({name: s}, int(counts[name]))[name] for name, s in scores.items()}
