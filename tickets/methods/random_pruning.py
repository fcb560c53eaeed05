"""Random pruning: the papers' baseline (`random`) and a per-tensor matched control (`random_matched`).

`random` is what both papers compare against: random pruning at the target sparsity, globally over
all prunable weights (so each tensor loses about the same fraction), one ticket per ladder sparsity.
It needs no other ticket; a base ticket in the context is ignored.

`random_matched` is a stricter control of one ticket: random masks with exactly the base ticket's
pruned count in every tensor, so it isolates *which* weights IMP keeps from *how many* per tensor
it keeps. It is not the papers' baseline and is reported under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError
from bench.core.hparams import hp
from tickets.magnitude import masks_with_counts
from tickets.methods.common import ladder, magnitude_fn, need_base
from tickets.registry import register_method
from tickets.search import SearchContext, derived_seed


@dataclass(frozen=True)
class RandomHparams:
    scope: str = hp("global", "global: uniform over all prunable weights (the papers' baseline); "
                              "layerwise: the same sparsity in every tensor")


@dataclass(frozen=True)
class RandomMatchedHparams:
    """No hyperparameters: the per-tensor counts are the base ticket's."""


def _random_scores(shapes: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(shape, generator=gen) for n, shape in shapes.items()}


@register_method("random", RandomHparams, trains=False, patterns=True,
                 citation="Frankle & Carbin 2019; Chen et al. 2020 (global random pruning baseline)")
def random_pruning(ctx: SearchContext, hparams: RandomHparams) -> list:
    """Random masks at every ladder sparsity: global (default) or the same sparsity per tensor."""
    if hparams.scope not in ("global", "layerwise"):
        raise ConfigError(f"method 'random': scope must be global or layerwise, found {hparams.scope!r} "
                          "(the per-tensor match of a ticket is the method 'random_matched')")
    shapes = {n: tuple(t.shape) for n, t in ctx.theta0.items()}
    tickets = []
    for s in ladder(ctx, "random"):
        seed = derived_seed(ctx.seed, "random", s)
        scores = _random_scores(shapes, seed)
        if hparams.scope == "layerwise" and ctx.pattern == "unstructured":
            masks = masks_with_counts(scores, {n: round(s * t.numel()) for n, t in scores.items()})
        else:  # the top-k of uniform scores (per N:M group under a pattern): a uniform draw
            masks = magnitude_fn("random", "global", ctx.pattern)(scores, s)
        tickets.append(ctx.make_ticket(masks, method="random", hparams=hparams, target_sparsity=s, source="random",
                                       extra={"mask_seed": seed}))
    return tickets


@register_method("random_matched", RandomMatchedHparams, trains=False, base="imp",
                 citation="a per-tensor matched random control (not the papers' baseline)")
def random_matched(ctx: SearchContext, hparams: RandomMatchedHparams) -> list:
    """One ticket: random masks with the base ticket's pruned count in every tensor."""
    base = need_base(ctx, "random_matched")
    target = base.metadata["target_sparsity"]
    seed = derived_seed(ctx.seed, "random_matched", target)
    counts = {n: int((~m).sum()) for n, m in base.masks.items()}
    masks = masks_with_counts(_random_scores({n: tuple(m.shape) for n, m in base.masks.items()}, seed), counts)
    return [ctx.make_ticket(masks, method="random_matched", hparams=hparams, target_sparsity=target,
                            round=base.metadata.get("round"),
                            extra={"mask_seed": seed, "base_source": base.metadata.get("source"),
                                   "base_content_hash": base.content_hash})]
