"""SNIP: single-shot network pruning by connection sensitivity.

Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019.
Scores every weight at θ0 by |∂L/∂w · w| on the source loss and prunes once, before any training.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hparams import hp
from tickets.methods.common import mean_grads, score_tickets
from tickets.registry import register_method
from tickets.search import SearchContext, ones_masks


@dataclass(frozen=True)
class SnipHparams:
    score_batches: int = hp(1, "average the source-loss gradients over this many seeded batches")
    scope: str = hp("global", "global: one threshold over all prunable weights; layerwise: per tensor")


@register_method("snip", SnipHparams, trains=False, patterns=True, family="calibration",
                 scores=lambda ctx, hparams: snip_scores(ctx, hparams), citation="Lee, Ajanthan & Torr, ICLR 2019 (SNIP)")
def snip(ctx: SearchContext, hparams: SnipHparams) -> list:
    """Keep the largest |g ⊙ θ0| (g: source-loss gradient at θ0), one ticket per ladder sparsity."""
    return score_tickets(ctx, "snip", hparams, snip_scores(ctx, hparams), hparams.scope)


def snip_scores(ctx: SearchContext, hparams: SnipHparams) -> dict:
    """|g ⊙ θ0| with g the source-loss gradient at θ0 averaged over `score_batches` batches."""
    g = mean_grads(ctx, "snip", ctx.theta0, ones_masks(ctx.theta0), hparams.score_batches)
    return {n: (g[n] * w).abs() for n, w in ctx.theta0.items()}
