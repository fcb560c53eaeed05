"""Structured IMP: iterative magnitude pruning with attention heads and FFN neurons as the units.

Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (fine-tune, prune, rewind to θ0,
repeat), with the structured units of Prasanna, Rogers & Rumshisky, "When BERT Plays the Lottery,
All Tickets Are Winning", EMNLP 2020 (whole heads and MLP units of BERT) and the weight-norm criterion
of `structured_magnitude`. Each round fine-tunes θ0 ⊙ m on the source, then in every layer removes the
heads and neurons with the smallest norm of their *fine-tuned* weights until the round's ladder
sparsity s of heads and of neurons is gone (the units pruned before have norm 0 and stay pruned; at
least one head and one neuron stay), and rewinds the survivors to θ0. One ticket per round.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import TicketError
from tickets.methods.common import ladder
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks
from tickets.structured import bert_layers, lowest_units, structured_ticket, unit_scores


@dataclass(frozen=True)
class StructuredIMPHparams:
    """No hyperparameters: one round per ladder sparsity, as IMP's ladder mode."""


@register_method("structured_imp", StructuredIMPHparams, family="training-based", structured=True,
                 trains_per_sparsity=True,
                 citation="Frankle & Carbin, ICLR 2019; Prasanna, Rogers & Rumshisky, EMNLP 2020 (structured IMP "
                          "over heads and FFN neurons)")
def structured_imp(ctx: SearchContext, hparams: StructuredIMPHparams) -> list:
    """Per ladder sparsity in turn: fine-tune θ0 ⊙ m, remove the lowest-norm heads and neurons of the
    fine-tuned weights in every layer, rewind to θ0."""
    heads = ctx.meta.get("num_heads")
    if not isinstance(heads, int) or heads < 1:
        raise TicketError("method 'structured_imp' needs the backbone's head count (ctx.meta['num_heads'])")
    theta0 = copy_weights(ctx.theta0)  # private: the runner's tensors may be live parameters
    layers = bert_layers(theta0)
    shapes = {n: tuple(w.shape) for n, w in theta0.items()}
    masks = ones_masks(theta0)
    tickets = []
    for r, s in enumerate(ladder(ctx, "structured_imp"), 1):
        result = ctx.train(copy_weights(theta0), {n: m.clone() for n, m in masks.items()})
        trained = {n: result.weights[n].detach() * masks[n] for n in theta0}  # pruned units: norm 0, pruned first
        scores = {layer.prefix: unit_scores(trained, layer, heads) for layer in layers}
        ticket = structured_ticket(ctx, shapes, layers, heads, *lowest_units(scores, heads, s), method="structured_imp",
                                   hparams=hparams, sparsity=s, round=r,
                                   extra={"train_metrics": dict(result.metrics)})
        masks = {n: m.clone() for n, m in ticket.masks.items()}
        tickets.append(ticket)
    return tickets
