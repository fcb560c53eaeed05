"""SynFlow: iterative synaptic flow pruning, data-free.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively conserving
synaptic flow", NeurIPS 2020. With every parameter replaced by |θ| and an all-ones input, the
synaptic flow R = 1ᵀ f(1) is a sum over input-output paths of products of |weights|; a weight's
score ∂R/∂θ ⊙ θ is the flow through it, and each layer's scores sum to R (conservation). Pruning
over n iterations on the exponential schedule (1 − s)^(k/n), re-scoring the masked network each
time, avoids layer collapse. No data, no loss, no training: the context's `flow_fn` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import ConfigError
from bench.core.hparams import hp
from tickets.methods.common import keep_highest, ladder, need
from tickets.registry import register_method
from tickets.search import SearchContext, ones_masks


@dataclass(frozen=True)
class SynflowHparams:
    iterations: int = hp(100, "pruning iterations per ladder sparsity (exponential schedule)")
    scope: str = hp("global", "global: one threshold over all prunable weights; layerwise: per tensor")


def synflow_scores(ctx: SearchContext, masks: dict) -> dict:
    """∂R/∂θ ⊙ |θ| of the masked network (pruned weights score 0)."""
    grads = need(ctx, "synflow", "flow_fn")(ctx.theta0, masks)
    return {n: (grads[n] * w.abs() * masks[n]).float() for n, w in ctx.theta0.items()}


@register_method("synflow", SynflowHparams, trains=False,
                 citation="Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020 (SynFlow)")
def synflow(ctx: SearchContext, hparams: SynflowHparams) -> list:
    """Per ladder sparsity s: n rounds of (score the masked network, keep the top (1 − s)^(k/n))."""
    if hparams.iterations < 1:
        raise ConfigError(f"method 'synflow': iterations must be >= 1, found {hparams.iterations}")
    tickets = []
    for s in ladder(ctx, "synflow"):
        masks = ones_masks(ctx.theta0)
        for k in range(1, hparams.iterations + 1):
            target = 1.0 - (1.0 - s) ** (k / hparams.iterations)
            # Pruned weights score 0 and are pruned first: never revived.
            masks = keep_highest(synflow_scores(ctx, masks), target, hparams.scope, current=masks, method="synflow")
        tickets.append(ctx.make_ticket(masks, method="synflow", hparams=hparams, target_sparsity=s))
    return tickets
