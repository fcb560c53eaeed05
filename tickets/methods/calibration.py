"""What the calibration methods (wanda, sparsegpt, ria, owl) share: the calibration settings, the
activation statistics from the context's `calib_fn`, their record in the tickets, and the
comparison groups (per output row, per tensor, N:M).

Calibration data: `calib_samples` examples of the search's source (its task's train split, or the
pre-training corpus for `method:pretrain`), drawn with `calib_seed`. Both are hyperparameters, so they
are named in the config (`find.hparams.wanda.calib_samples=…`), hashed into the search's id and
recorded in every ticket (`hparams`, and `extra.calibration` with the tokens actually seen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.common import need
from tickets.patterns import nm_masks, parse_pattern

GROUPS = ("row", "layer")


@dataclass(frozen=True)
class CalibrationHparams:
    calib_samples: int = hp(128, "calibration examples drawn from the source (its task's train split, or the "
                                 "pre-training corpus); Wanda and SparseGPT use 128 sequences")
    calib_seed: int = hp(0, "seed of the calibration draw")

    def __post_init__(self) -> None:
        # Checked when the plan is built (types are the registry's check).
        if isinstance(self.calib_samples, int) and self.calib_samples < 1:
            raise ConfigError(f"{type(self).__name__}: calib_samples must be >= 1, found {self.calib_samples}")


def check_group(method: str, group: str) -> None:
    if group not in GROUPS:
        raise ConfigError(f"method '{method}': group must be one of {', '.join(GROUPS)}, found {group!r}")


def input_stats(ctx, method: str, hparams: CalibrationHparams, weights: dict, masks: dict, names,
                hessian: bool = False) -> dict:
    """The context's calibration statistics of the inputs of every weight in `names` (each must be a
    2-d nn.Linear weight the forward pass reaches)."""
    names = list(names)
    for n in names:
        if weights[n].dim() != 2:
            raise TicketError(f"method '{method}': '{n}' is not a 2-d linear weight (calibration methods prune "
                              "nn.Linear weights only; drop it with find.exclude)")
    stats = need(ctx, method, "calib_fn")(weights, masks, names, samples=hparams.calib_samples,
                                          seed=hparams.calib_seed, hessian=hessian)
    for n in names:
        s = stats.get(n)
        if s is None or s.tokens == 0:
            raise TicketError(f"method '{method}': no calibration input reached '{n}' (is it an nn.Linear the "
                              "forward pass uses?)")
        if tuple(s.sq_sum.shape) != (weights[n].shape[1],):
            raise TicketError(f"method '{method}': calibration input of '{n}' has {tuple(s.sq_sum.shape)} "
                              f"features, the weight {weights[n].shape[1]} inputs")
    return stats


def calibration_record(ctx, hparams: CalibrationHparams, stats: dict) -> dict:
    """What a ticket records of its calibration data (the data, how many samples, which seed, tokens)."""
    first = next(iter(stats.values()))
    return {"data": "pre-training corpus" if ctx.source in ("pretrain", "", None) else f"{ctx.source} (train split)",
            "samples": int(first.samples), "asked": hparams.calib_samples, "seed": hparams.calib_seed,
            "tokens": int(first.tokens)}


def activation_norms(stats) -> Tensor:
    """‖X_j‖₂ over the calibration tokens, per input feature j."""
    return stats.sq_sum.double().clamp_min(0).sqrt()


def prune_rows(scores: Tensor, sparsity: float) -> Tensor:
    """Keep-mask pruning round(sparsity·in) lowest scores of every output row (ties: lower index first)."""
    rows, cols = scores.shape
    k = round(sparsity * cols)
    order = torch.sort(scores.double(), dim=1, stable=True).indices
    keep = torch.ones(rows, cols, dtype=torch.bool)
    keep.scatter_(1, order[:, :k], False)
    return keep


def prune_tensor(scores: Tensor, sparsity: float) -> Tensor:
    """Keep-mask pruning round(sparsity·numel) lowest scores of the whole tensor (ties: lower index first)."""
    flat = scores.double().reshape(-1)
    k = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    return keep.reshape(scores.shape)


def select(ctx, scores: dict, sparsity: float | dict, group: str) -> dict:
    """Masks keeping the highest scores per comparison group: each output row (`row`, Wanda's) or
    each tensor (`layer`); under an N:M `ctx.pattern`, N of every M inputs of each row instead.
    `sparsity` may be one number or one per tensor (OWL's allocation)."""
    if parse_pattern(ctx.pattern) is not None:
        return nm_masks(scores, ctx.pattern)
    per = sparsity if isinstance(sparsity, dict) else {n: sparsity for n in scores}
    fn = prune_rows if group == "row" else prune_tensor
    return {n: fn(s, per[n]) for n, s in scores.items()}


def block_of(name: str) -> str:
    """The transformer block a weight belongs to: its name up to the first numeric component
    (`encoder.layer.3.attention.self.query.weight` → `encoder.layer.3`); a weight outside any numbered
    block is a block of its own."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if re.fullmatch(r"\d+", p):
            return ".".join(parts[: i + 1])
    return name


def blocks(names) -> list[list[str]]:
    """The weights grouped by block, blocks in order of first appearance (the prunable set's order)."""
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(block_of(n), []).append(n)
    return list(out.values())
