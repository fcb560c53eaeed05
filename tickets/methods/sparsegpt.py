"""SparseGPT: one-shot pruning with the optimal-brain-surgeon row update.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot", ICML 2023.
For each linear layer, H = Σ x xᵀ over its calibration inputs, dampened by `damp` × mean(diag H);
columns are processed left to right in blocks of `blocksize`: within a block the weights with the
lowest w² / [H⁻¹]_jj² are pruned (adaptive mask selection, the block's share of the sparsity; under
`find.pattern=N:M`, M − N of every M inputs of each row), and each pruned column's error is spread over
the columns not yet processed with the rows of the Cholesky factor of H⁻¹ (the OBS update, every row
at once). Layers go in sequence, block by block (a transformer layer's linears together, as the
reference does): a block's calibration inputs are computed with every earlier block already pruned
and reconstructed.

It changes weights as well as the mask: the ticket is the mask (it rewinds to θ0 like any other
ticket); the reconstructed weights are stored beside it (`Ticket.reconstructed()`) for the "without
fine-tuning" evaluation. Departure: H is accumulated in float64 (the reference: float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.calibration import CalibrationHparams, blocks, calibration_record, input_stats
from tickets.methods.common import ladder
from tickets.patterns import parse_pattern
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class SparseGPTHparams(CalibrationHparams):
    blocksize: int = hp(128, "columns per block: the unit of adaptive mask selection and of the lazy update")
    damp: float = hp(0.01, "dampening: λ = damp × mean(diag H) added to H's diagonal (the reference's percdamp)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.blocksize, int) and self.blocksize < 1:
            raise ConfigError(f"method 'sparsegpt': blocksize must be >= 1, found {self.blocksize}")
        if isinstance(self.damp, (int, float)) and not self.damp > 0:
            raise ConfigError(f"method 'sparsegpt': damp must be > 0, found {self.damp}")


def inverse_hessian_factor(hessian: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    """(upper Cholesky factor of (H + λI)⁻¹, dead inputs): inputs no calibration token reached get
    H_jj = 1 so H stays invertible (their weights are zeroed, as in the reference)."""
    h = hessian.detach().double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(hinv, upper=True), dead
    except RuntimeError:  # torch.linalg.LinAlgError: not positive definite even dampened
        raise TicketError("method 'sparsegpt': the dampened calibration Hessian is not positive definite; "
                          "raise find.hparams.sparsegpt.damp") from None


def obs_prune(weight: Tensor, hessian: Tensor, sparsity: float, *, pattern: str = "unstructured",
              blocksize: int = 128, damp: float = 0.01, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(reconstructed weight, keep-mask) of one layer. `keep` fixes the mask instead of selecting it
    (tests compare the update with a column-by-column OBS with explicit inverses)."""
    nm = parse_pattern(pattern)
    if nm is not None and blocksize % nm[1]:
        raise ConfigError(f"method 'sparsegpt': blocksize {blocksize} must be a multiple of M={nm[1]} for {pattern}")
    w = weight.detach().double().clone()
    rows, cols = w.shape
    hinv, dead = inverse_hessian_factor(hessian, damp)
    w[:, dead] = 0.0
    pruned = torch.zeros(rows, cols, dtype=torch.bool) if keep is None else ~keep.to("cpu", torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1, h1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        q1, err1 = torch.zeros_like(w1), torch.zeros_like(w1)
        diag = torch.diag(h1)
        if keep is None and nm is None:
            score = (w1 ** 2 / diag[None, :] ** 2).reshape(-1)
            k = round(sparsity * score.numel())
            block = torch.zeros(score.numel(), dtype=torch.bool)
            block[torch.sort(score, stable=True).indices[:k]] = True
            pruned[:, i1:i2] = block.reshape(w1.shape)
        for i in range(i2 - i1):
            if keep is None and nm is not None and i % nm[1] == 0:
                n, m = nm
                score = w1[:, i:i + m] ** 2 / diag[i:i + m][None, :] ** 2
                order = torch.sort(score, dim=1, stable=True).indices[:, : m - n]
                pruned[:, i1 + i:i1 + i + m] = torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, True)
            col, d = w1[:, i], h1[i, i]
            q = col.masked_fill(pruned[:, i1 + i], 0.0)
            q1[:, i] = q
            err = (col - q) / d
            w1[:, i:] -= err[:, None] * h1[i, i:][None, :]
            err1[:, i] = err
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w.to(weight.dtype), ~pruned


def reconstruction_error(weight: Tensor, new: Tensor, hessian: Tensor) -> float:
    """‖W X − W' X‖²_F = tr((W − W') H (W − W')ᵀ) over the calibration inputs (H = Σ x xᵀ)."""
    d = (weight.double() - new.double())
    return float(torch.einsum("ij,jk,ik->", d, hessian.double(), d))


@register_method("sparsegpt", SparseGPTHparams, trains=False, patterns=True, family="calibration",
                 citation="Frantar & Alistarh, ICML 2023 (SparseGPT)",
                 publishes="reconstructed weights (the OBS update; kept in the ticket)")
def sparsegpt(ctx: SearchContext, hparams: SparseGPTHparams) -> list:
    """Per ladder sparsity, from θ0: block by block, collect H of every linear's inputs (earlier blocks
    already pruned), prune and reconstruct each linear; the mask is the ticket, the weights ride along."""
    tickets = []
    for s in ladder(ctx, "sparsegpt"):
        weights, masks = copy_weights(ctx.theta0), ones_masks(ctx.theta0)
        errors, record = {}, None
        for names in blocks(ctx.theta0):
            stats = input_stats(ctx, "sparsegpt", hparams, weights, masks, names, hessian=True)
            record = record or calibration_record(ctx, hparams, stats)
            for n in names:
                new, keep = obs_prune(weights[n], stats[n].hessian, s, pattern=ctx.pattern,
                                      blocksize=hparams.blocksize, damp=hparams.damp)
                errors[n] = reconstruction_error(weights[n], new, stats[n].hessian) / max(stats[n].tokens, 1)
                weights[n], masks[n] = new.to(ctx.theta0[n].dtype), keep
        tickets.append(ctx.make_ticket(
            masks, method="sparsegpt", hparams=hparams, target_sparsity=s, reconstructed_weights=weights,
            extra={"calibration": record,
                   "reconstruction_error_per_token": {n: round(e, 8) for n, e in errors.items()}}))
    return tickets
