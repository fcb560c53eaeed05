"""Early-bird tickets: stop the search once the mask stops changing.

You, Li, Xu, Fu, Wang, Chen, Baraniuk, Wang & Lin, "Drawing Early-Bird Tickets: Towards More Efficient
Training of Deep Networks", ICLR 2020. During one source fine-tuning, every `interval` steps the magnitude
mask of the current weights is drawn at each ladder sparsity; when the normalised Hamming distance between
consecutive masks stays below `threshold` for `patience` draws in a row at every sparsity, the tickets are
drawn and training stops (the search's saving). The paper masks BN channels of CNNs; for transformers'
linear weights this uses unstructured global magnitude masks, as EarlyBERT's unstructured variant does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError
from bench.core.hparams import hp
from tickets.methods.common import ladder, magnitude_fn
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class EarlyBirdHparams:
    interval: int = hp(5, "draw the masks every this many training steps")
    threshold: float = hp(0.1, "a ticket is drawn when consecutive masks differ in less than this fraction of weights")
    patience: int = hp(3, "... for this many consecutive draws (the paper's FIFO queue length)")
    scope: str = hp("global", "global: one threshold over all prunable weights; layerwise: per tensor")


def mask_distance(a: dict, b: dict) -> float:
    """Normalised Hamming distance: the fraction of weights whose keep/prune decision differs."""
    differ = sum(int((a[n] != b[n]).sum()) for n in a)
    return differ / sum(m.numel() for m in a.values())


@register_method("early_bird", EarlyBirdHparams, patterns=True, citation="You et al., ICLR 2020 (early-bird tickets)")
def early_bird(ctx: SearchContext, hparams: EarlyBirdHparams) -> list:
    """One fine-tuning, stopped when every sparsity's mask has converged; tickets from the weights then
    (or from the final weights when it never converges: `extra.drawn_at_step` is then null)."""
    if hparams.interval < 1 or hparams.patience < 1 or not 0.0 <= hparams.threshold < 1.0:
        raise ConfigError("method 'early_bird': interval and patience must be >= 1, threshold in [0, 1)")
    prune = magnitude_fn("early_bird", hparams.scope, ctx.pattern)
    sparsities = ladder(ctx, "early_bird")
    state = {"step": 0, "drawn_at": None, "prev": None, "calm": 0, "masks": None, "distances": []}

    def on_grads(weights: dict, _grads: dict) -> bool:
        state["step"] += 1
        if state["step"] % hparams.interval:
            return False
        now = {s: prune({n: w.detach().to("cpu", torch.float32) for n, w in weights.items()}, s) for s in sparsities}
        if state["prev"] is not None:
            d = max(mask_distance(now[s], state["prev"][s]) for s in sparsities)
            state["distances"].append(round(d, 6))
            state["calm"] = state["calm"] + 1 if d < hparams.threshold else 0
        state["prev"] = state["masks"] = now
        if state["calm"] >= hparams.patience:
            state["drawn_at"] = state["step"]
            return True
        return False

    theta0 = copy_weights(ctx.theta0)
    result = ctx.train(theta0, ones_masks(theta0), on_grads=on_grads)
    masks = state["masks"] if state["drawn_at"] else {s: prune(result.weights, s) for s in sparsities}
    extra = {"drawn_at_step": state["drawn_at"], "distances": state["distances"],
             "train_metrics": dict(result.metrics)}
    return [ctx.make_ticket(masks[s], method="early_bird", hparams=hparams, target_sparsity=s, extra=extra)
            for s in sparsities]
