"""Random pruning: layer-wise matching a base ticket's per-tensor counts, or global."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError
from bench.core.hparams import hp
from tickets.magnitude import global_magnitude_masks, masks_with_counts
from tickets.methods.common import ladder, need_base
from tickets.registry import register_method
from tickets.search import SearchContext, derived_seed


@dataclass(frozen=True)
class RandomHparams:
    scope: str = hp("auto", "auto: match the base ticket per tensor when there is one, else global; "
                            "global: uniform over all prunable weights; layerwise: the same sparsity in every tensor")


def _random_scores(shapes: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(shape, generator=gen) for n, shape in shapes.items()}


@register_method("random", RandomHparams, trains=False, citation="Frankle & Carbin 2019 (random pruning baseline)")
def random_pruning(ctx: SearchContext, hparams: RandomHparams) -> list:
    """Random masks. With a base ticket (scope auto/layerwise): one ticket with exactly the base
    ticket's pruned count in every tensor; otherwise one ticket per ladder sparsity."""
    if hparams.scope not in ("auto", "global", "layerwise"):
        raise ConfigError(f"method 'random': scope must be auto, global or layerwise, found {hparams.scope!r}")
    shapes = {n: tuple(t.shape) for n, t in ctx.theta0.items()}
    if ctx.base_ticket is not None and hparams.scope in ("auto", "layerwise"):
        base = need_base(ctx, "random")
        target = base.metadata["target_sparsity"]
        seed = derived_seed(ctx.seed, "random", target)
        counts = {n: int((~m).sum()) for n, m in base.masks.items()}
        masks = masks_with_counts(_random_scores(shapes, seed), counts)
        return [ctx.make_ticket(masks, method="random", hparams=hparams, target_sparsity=target, source="random",
                                extra={"mask_seed": seed, "matched": base.content_hash})]
    tickets = []
    for s in ladder(ctx, "random"):
        seed = derived_seed(ctx.seed, "random", s)
        scores = _random_scores(shapes, seed)
        if hparams.scope == "layerwise":
            masks = masks_with_counts(scores, {n: round(s * t.numel()) for n, t in scores.items()})
        else:
            masks = global_magnitude_masks(scores, s)
        tickets.append(ctx.make_ticket(masks, method="random", hparams=hparams, target_sparsity=s, source="random",
                                       extra={"mask_seed": seed}))
    return tickets
