"""Structured magnitude pruning: whole attention heads and FFN neurons by the norm of their weights.

Michel, Levy & Neubig, "Are Sixteen Heads Really Better than One?", NeurIPS 2019 (pruning heads) and
the weight-norm criterion of Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient
ConvNets", ICLR 2017, applied to heads (the L2 norm of a head's q, k, v rows and attention-output
columns) and FFN neurons (its intermediate row and output column) of θ0. In every layer the fraction s
of heads and of neurons with the smallest norm is removed (at least one head and one neuron stay), so
the ticket's sparsity over the layers is about s. A structured ticket can be exported as a physically
smaller model (`bench.backbones.structured.shrink_bert`) with the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import TicketError
from tickets.methods.common import ladder
from tickets.registry import register_method
from tickets.search import SearchContext
from tickets.structured import bert_layers, lowest_units, structured_ticket, unit_scores


@dataclass(frozen=True)
class StructuredHparams:
    """No hyperparameters: heads and neurons are each removed at the ladder's sparsity per layer."""


@register_method("structured_magnitude", StructuredHparams, trains=False, family="data-free", structured=True,
                 citation="Michel, Levy & Neubig, NeurIPS 2019; Li et al., ICLR 2017 (heads and neurons by weight norm)")
def structured_magnitude(ctx: SearchContext, hparams: StructuredHparams) -> list:
    """Per ladder sparsity: in every layer remove the lowest-norm fraction s of heads and of neurons."""
    heads = ctx.meta.get("num_heads")
    if not isinstance(heads, int) or heads < 1:
        raise TicketError("method 'structured_magnitude' needs the backbone's head count (ctx.meta['num_heads'])")
    layers = bert_layers(ctx.theta0)
    scores = {layer.prefix: unit_scores(ctx.theta0, layer, heads) for layer in layers}
    shapes = {n: tuple(w.shape) for n, w in ctx.theta0.items()}
    return [structured_ticket(ctx, shapes, layers, heads, *lowest_units(scores, heads, s), method="structured_magnitude",
                              hparams=hparams, sparsity=s) for s in ladder(ctx, "structured_magnitude")]
