"""Sparsity patterns of a ticket: unstructured, or N:M along the input dimension.

N:M (e.g. 2:4, the pattern sparse tensor cores accelerate): in every output row of a weight
[out, in], each group of M consecutive inputs keeps exactly N weights, so the sparsity is 1 − N/M.
A ticket records its pattern (`pattern` in the metadata); loading an N:M ticket checks every group.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from bench.core.errors import ConfigError, TicketError

UNSTRUCTURED = "unstructured"


def parse_pattern(pattern: str, where: str = "find.pattern") -> tuple[int, int] | None:
    """None for "unstructured", (N, M) for "N:M" with 0 < N < M; anything else a one-line ConfigError."""
    text = str(pattern).strip()
    if text == UNSTRUCTURED:
        return None
    found = re.fullmatch(r"(\d+):(\d+)", text)
    if not found or not 0 < int(found[1]) < int(found[2]):
        raise ConfigError(f"{where}: expected 'unstructured' or N:M with 0 < N < M (e.g. 2:4, 4:8), found {pattern!r}")
    return int(found[1]), int(found[2])


def pattern_sparsity(pattern: str) -> float | None:
    """The one sparsity an N:M pattern has (1 − N/M); None when unstructured."""
    nm = parse_pattern(pattern)
    return None if nm is None else 1.0 - nm[0] / nm[1]


def _groups(name: str, shape, m: int, where: str) -> None:
    if len(shape) != 2 or shape[1] % m:
        raise TicketError(f"{where}: '{name}' of shape {tuple(shape)} cannot carry an N:M pattern with M={m} "
                          f"(needs a 2-d weight whose input dimension is a multiple of {m})")


def nm_masks(scores: dict[str, Tensor], pattern: str, current: dict[str, Tensor] | None = None,
             where: str = "find.pattern") -> dict[str, Tensor]:
    """Keep-masks keeping the N highest scores of every M consecutive inputs of each row. Already
    pruned weights (`current` False) are pruned first; ties go to the lower input index."""
    n, m = parse_pattern(pattern, where)
    out = {}
    for name, s in scores.items():
        _groups(name, s.shape, m, where)
        s = s.detach().to("cpu", torch.float64)
        if current is not None:
            s = s.masked_fill(~current[name].to("cpu", torch.bool), float("-inf"))
        rows, cols = s.shape
        # stable descending sort: among equal scores the lower index is kept
        order = torch.sort(s.reshape(rows, cols // m, m), dim=-1, descending=True, stable=True).indices
        keep = torch.zeros(rows, cols // m, m, dtype=torch.bool)
        keep.scatter_(-1, order[..., :n], True)
        keep = keep.reshape(rows, cols)
        if current is not None and bool((keep & ~current[name].to("cpu", torch.bool)).any()):
            raise TicketError(f"{where}: '{name}' has a group of {m} with fewer than {n} weights left: "
                              f"cannot make it {n}:{m} without reviving pruned weights")
        out[name] = keep
    return out


def check_pattern(masks: dict[str, Tensor], pattern: str, where: str) -> None:
    """Every group of M consecutive inputs of every row keeps exactly N (one-line TicketError naming
    the first tensor, row and group that does not)."""
    try:
        nm = parse_pattern(pattern, f"{where}: pattern")
    except ConfigError as e:
        raise TicketError(str(e)) from None
    if nm is None:
        return
    n, m = nm
    for name, mask in masks.items():
        _groups(name, mask.shape, m, where)
        kept = mask.reshape(mask.shape[0], -1, m).sum(-1)
        bad = (kept != n).nonzero()
        if bad.numel():
            r, g = (int(x) for x in bad[0])
            raise TicketError(f"{where}: mask '{name}' is not {n}:{m}: row {r}, inputs {g * m}..{g * m + m - 1} "
                              f"keep {int(kept[r, g])}, expected {n}")
