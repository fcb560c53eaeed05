"""Wanda: pruning by weights and activations, no weight update.

Sun, Liu, Bair & Kolter, "A Simple and Effective Pruning Approach for Large Language Models", ICLR 2024.
The score of weight W_ij (output i, input j) is |W_ij| · ‖X_j‖₂, X_j the j-th input feature of the
layer over the calibration tokens (one forward pass of θ0); the weights are compared **per output
row** (the reference's comparison group: each row keeps the same number of inputs), and the kept
weights keep their θ0 values. `group=layer` compares within the whole tensor instead (the paper's
ablation); under `find.pattern=N:M` each row keeps N of every M inputs. Departure: the calibration
inputs include padded token positions (the backbones' forward passes keep them).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hparams import hp
from tickets.methods.calibration import (
    CalibrationHparams,
    activation_norms,
    calibration_record,
    check_group,
    input_stats,
    select,
)
from tickets.methods.common import ladder
from tickets.registry import register_method
from tickets.search import SearchContext, ones_masks


@dataclass(frozen=True)
class WandaHparams(CalibrationHparams):
    group: str = hp("row", "comparison group: row (each output row prunes the same fraction, the reference's) "
                           "or layer (one threshold per tensor)")

    def __post_init__(self) -> None:
        super().__post_init__()  # checked when the plan is built
        check_group("wanda", self.group)


def wanda_scores(ctx: SearchContext, hparams: CalibrationHparams) -> tuple[dict, dict]:
    """({name: |W| · ‖X_j‖₂}, calibration record) at θ0."""
    stats = input_stats(ctx, "wanda", hparams, ctx.theta0, ones_masks(ctx.theta0), ctx.theta0)
    scores = {n: w.detach().double().abs() * activation_norms(stats[n])[None, :] for n, w in ctx.theta0.items()}
    return scores, calibration_record(ctx, hparams, stats)


@register_method("wanda", WandaHparams, trains=False, patterns=True, family="calibration",
                 scores=lambda ctx, hparams: wanda_scores(ctx, hparams)[0],
                 citation="Sun, Liu, Bair & Kolter, ICLR 2024 (Wanda)")
def wanda(ctx: SearchContext, hparams: WandaHparams) -> list:
    """Keep the largest |W_ij|·‖X_j‖₂ of every output row; one ticket per ladder sparsity."""
    check_group("wanda", hparams.group)
    scores, record = wanda_scores(ctx, hparams)
    return [ctx.make_ticket(select(ctx, scores, s, hparams.group), method="wanda", hparams=hparams,
                            target_sparsity=s, extra={"calibration": record})
            for s in ladder(ctx, "wanda")]
