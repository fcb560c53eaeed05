"""One-shot magnitude pruning: after one source fine-tuning (omp) or of θ0 itself."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hparams import hp
from tickets.methods.common import ladder, magnitude_fn
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class OneShotHparams:
    scope: str = hp("global", "global: one magnitude threshold over all prunable weights; layerwise: per tensor")


def _tickets(ctx, hparams, method, weights, source, extra=None) -> list:
    prune = magnitude_fn(method, hparams.scope, ctx.pattern)
    return [
        ctx.make_ticket(prune(weights, s), method=method, hparams=hparams, target_sparsity=s, source=source,
                        extra=extra)
        for s in ladder(ctx, method)
    ]


@register_method("omp", OneShotHparams, patterns=True, citation="Chen et al. 2020 (one-shot magnitude pruning after fine-tuning)")
def omp(ctx: SearchContext, hparams: OneShotHparams) -> list:
    """Fine-tune θ0 once on the source, then prune the trained weights at each ladder sparsity."""
    theta0 = copy_weights(ctx.theta0)
    result = ctx.train(theta0, ones_masks(theta0))
    return _tickets(ctx, hparams, "omp", result.weights, None, {"train_metrics": dict(result.metrics)})


@register_method("pretrained_magnitude", OneShotHparams, trains=False, patterns=True,
                 scores=lambda ctx, hparams: {n: w.detach().abs() for n, w in ctx.theta0.items()},
                 citation="Chen et al. 2020 (magnitude pruning of the pre-trained weights)")
def pretrained_magnitude(ctx: SearchContext, hparams: OneShotHparams) -> list:
    """Prune θ0 by magnitude at each ladder sparsity, without training."""
    return _tickets(ctx, hparams, "pretrained_magnitude", ctx.theta0, "pretrained_magnitude")
