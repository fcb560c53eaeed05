"""Layer-wise magnitude pruning: the same sparsity in every prunable tensor.

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015 (per-layer magnitude thresholds); the uniform per-layer baseline of Gale, Elsen & Hooker,
"The State of Sparsity in Deep Neural Networks", 2019. Global magnitude lets some tensors (e.g. the
attention projections) lose far more than others; this baseline cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hparams import hp
from tickets.methods.common import ladder, magnitude_fn
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class LayerwiseHparams:
    trained: bool = hp(True, "rank the weights after one source fine-tuning (as omp); false: θ0's weights")


@register_method("layerwise_magnitude", LayerwiseHparams, patterns=True,
                 citation="Han et al., NeurIPS 2015; Gale, Elsen & Hooker 2019 (uniform layer-wise magnitude)")
def layerwise_magnitude(ctx: SearchContext, hparams: LayerwiseHparams) -> list:
    """Prune round(s·n_t) weights of every tensor t by its own |w|, one ticket per ladder sparsity."""
    extra = None
    weights = ctx.theta0
    if hparams.trained:
        theta0 = copy_weights(ctx.theta0)
        result = ctx.train(theta0, ones_masks(theta0))
        weights, extra = result.weights, {"train_metrics": dict(result.metrics)}
    prune = magnitude_fn("layerwise_magnitude", "layerwise", ctx.pattern)
    return [ctx.make_ticket(prune(weights, s), method="layerwise_magnitude", hparams=hparams,
                            target_sparsity=s, extra=extra)
            for s in ladder(ctx, "layerwise_magnitude")]
