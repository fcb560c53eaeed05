"""Movement pruning (hard, top-k): keep the weights that move away from zero during fine-tuning.

Sanh, Wolf & Rush, "Movement Pruning: Adaptive Sparsity by Fine-Tuning", NeurIPS 2020. The score of a
weight is S = −Σ_t (∂L/∂w)_t · w_t accumulated over the fine-tuning steps (positive when the updates
push |w| up); the ticket keeps the top-k scores. The paper prunes gradually while fine-tuning with a
straight-through estimator; here the scores are accumulated over one dense fine-tuning on the source
(or, `gradual`, over one fine-tuning per ladder sparsity, each continuing from the pruned trained weights, on the IMP ladder) and the
ticket is applied to θ0 like every other ticket of the matrix. Soft movement is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.hparams import hp
from tickets.methods.common import keep_highest, ladder
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class MovementHparams:
    gradual: bool = hp(False, "false: score one dense fine-tuning, prune at every ladder sparsity; true: one "
                              "fine-tuning per ladder sparsity, each continuing from the last one's pruned weights")
    scope: str = hp("global", "global: one threshold over all prunable weights; layerwise: per tensor")


def movement_scores(ctx: SearchContext, start: dict, masks: dict, scores: dict | None = None) -> tuple[dict, object]:
    """Fine-tune from start ⊙ masks, adding −w·g of every step to `scores` (float64, on the weights'
    device while training so no step copies to the CPU); returns (scores on the CPU, TrainResult)."""
    scores = dict(scores or {})

    def accumulate(weights: dict, grads: dict) -> None:
        for n, w in weights.items():
            step = (w.detach() * grads[n].detach()).to(torch.float64)
            s = scores.get(n)
            scores[n] = -step if s is None else s.to(step.device).sub_(step)

    result = ctx.train(start, masks, on_grads=accumulate)
    return {n: s.cpu() for n, s in scores.items()}, result


@register_method("movement", MovementHparams, patterns=True, citation="Sanh, Wolf & Rush, NeurIPS 2020 (movement pruning)",
                 publishes="a trained network (pruned while fine-tuning)")
def movement(ctx: SearchContext, hparams: MovementHparams) -> list:
    """One dense fine-tuning accumulating S = −Σ w·g; prune the lowest S. With `gradual`,
    one fine-tuning per ladder sparsity, each continuing from the previous one's pruned weights with
    the scores still accumulating (the paper's gradual pruning, one step per ladder sparsity)."""
    sparsities = ladder(ctx, "movement")
    weights = copy_weights(ctx.theta0)
    masks = ones_masks(weights)
    if not hparams.gradual:
        scores, result = movement_scores(ctx, weights, masks)
        metrics = dict(result.metrics)
        return [ctx.make_ticket(keep_highest(scores, s, hparams.scope, method="movement", pattern=ctx.pattern),
                                method="movement",
                                hparams=hparams, target_sparsity=s, extra={"train_metrics": metrics})
                for s in sparsities]
    tickets, scores = [], None
    for r, s in enumerate(sparsities, 1):
        scores, result = movement_scores(ctx, {n: w * masks[n] for n, w in weights.items()}, masks, scores)
        weights = copy_weights(result.weights)
        masks = keep_highest(scores, s, hparams.scope, current=masks, method="movement", pattern=ctx.pattern)
        tickets.append(ctx.make_ticket(masks, method="movement", hparams=hparams, target_sparsity=s, round=r,
                                       extra={"train_metrics": dict(result.metrics)}))
    return tickets
