"""Magnitude pruning with learning-rate rewinding.

Renda, Frankle & Carbin, "Comparing Rewinding and Fine-tuning in Neural Network Pruning", ICLR 2020.
Like IMP (train, prune globally by magnitude, repeat), but after each pruning the surviving weights
keep their *trained* values; only the learning-rate schedule is rewound (every `ctx.train` call
replays the whole schedule). The ticket is the mask; the matrix applies it to θ0 like every ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickets.methods.common import ladder, magnitude_fn
from tickets.methods.imp import IMPHparams, imp_schedule
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class LRRewindHparams(IMPHparams):
    """IMP's schedule (mode, prune_fraction, rounds); only the restart point differs."""


@register_method("lr_rewind", LRRewindHparams, patterns=True, yields=lambda hp, ladder: imp_schedule(hp, sorted(ladder)),
                 citation="Renda, Frankle & Carbin, ICLR 2020 (learning-rate rewinding)",
                 publishes="a trained network (retrained with the learning rate rewound)")
def lr_rewind(ctx: SearchContext, hparams: LRRewindHparams) -> list:
    """Train → prune → retrain the survivors from their trained values with the full schedule → …"""
    weights = copy_weights(ctx.theta0)
    masks = ones_masks(weights)
    tickets, prune = [], magnitude_fn("lr_rewind", "global", ctx.pattern)
    for r, target in enumerate(imp_schedule(hparams, ladder(ctx, "lr_rewind")), 1):
        result = ctx.train({n: w * masks[n] for n, w in weights.items()}, {n: m.clone() for n, m in masks.items()})
        weights = copy_weights(result.weights)
        masks = prune(weights, target, current=masks)
        tickets.append(ctx.make_ticket(masks, method="lr_rewind", hparams=hparams, target_sparsity=target, round=r,
                                       extra={"train_metrics": dict(result.metrics)}))
    return tickets
