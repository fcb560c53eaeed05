"""RIA: relative importance and activations, no weight update.

Zhang, Bai, Lin, Zhao, Hou & Cannistraci, "Plug-and-Play: An Efficient Post-training Pruning Method for
Large Language Models", ICLR 2024. The score of W_ij is its relative importance — |W_ij| over the sum of
|W| in its input column plus |W_ij| over the sum of |W| in its output row — times ‖X_j‖₂^a (a = 0.5),
X_j the j-th input feature over the calibration tokens; weights are compared within each tensor (the
reference's default) or, `group=row`, per output row. Its channel permutation for N:M is not
implemented (`find.pattern=N:M` selects N of every M inputs directly, the reference's "direct N:M").
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import ConfigError
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
class RIAHparams(CalibrationHparams):
    a: float = hp(0.5, "exponent of the activation norm ‖X_j‖₂^a (the paper's 0.5)")
    group: str = hp("layer", "comparison group: layer (one threshold per tensor, the reference's default) or row")

    def __post_init__(self) -> None:
        super().__post_init__()  # checked when the plan is built
        check_group("ria", self.group)


def relative_importance(w):
    """|W_ij| / Σ_i |W_ij| + |W_ij| / Σ_j |W_ij| (an all-zero row or column contributes 0)."""
    a = w.detach().double().abs()
    col, row = a.sum(0, keepdim=True), a.sum(1, keepdim=True)
    return a / col.where(col > 0, 1.0) + a / row.where(row > 0, 1.0)


def ria_scores(ctx: SearchContext, hparams: RIAHparams) -> tuple[dict, dict]:
    if not hparams.a >= 0:
        raise ConfigError(f"method 'ria': a must be >= 0, found {hparams.a}")
    stats = input_stats(ctx, "ria", hparams, ctx.theta0, ones_masks(ctx.theta0), ctx.theta0)
    scores = {n: relative_importance(w) * activation_norms(stats[n])[None, :] ** hparams.a
              for n, w in ctx.theta0.items()}
    return scores, calibration_record(ctx, hparams, stats)


@register_method("ria", RIAHparams, trains=False, patterns=True, family="calibration",
                 scores=lambda ctx, hparams: ria_scores(ctx, hparams)[0],
                 citation="Zhang et al., ICLR 2024 (RIA: relative importance and activations)")
def ria(ctx: SearchContext, hparams: RIAHparams) -> list:
    """Keep the largest relative importance × ‖X_j‖₂^a per tensor; one ticket per ladder sparsity."""
    check_group("ria", hparams.group)
    scores, record = ria_scores(ctx, hparams)
    return [ctx.make_ticket(select(ctx, scores, s, hparams.group), method="ria", hparams=hparams,
                            target_sparsity=s, extra={"calibration": record})
            for s in ladder(ctx, "ria")]
