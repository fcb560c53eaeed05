"""Fisher-based structured mask search: attention heads and FFN neurons ranked by the Fisher information of their masks.

Kwon, Kim, Mahoney, Hassoun, Keutzer & Gholami, "A Fast Post-Training Pruning Framework for
Transformers", NeurIPS 2022 (the mask search of its section 4.1). Each head h and FFN neuron j gets a
mask variable m (1 = kept) that scales its output; the importance of a unit is the empirical Fisher
information of its mask, I = Σ_batches (∂L/∂m)², and ∂L/∂m is read off the source-loss gradients of
the weights the unit's output goes through: Σ_{i, j ∈ unit} W_o[i, j]·∂L/∂W_o[i, j] (the attention
output's columns of the head; the FFN output's column of the neuron). Under a budget of kept weights
(1 − s of the heads' and neurons' weights; a head costs 4·H·d, a neuron 2·H), the search keeps, for
every possible number of heads, the top heads and fills the rest of the budget with the top neurons,
and takes the split with the largest total importance: the paper's Algorithm 1, exact because units
of one kind cost the same. Every layer keeps its most important head (a layer needs one to run).

Not here: the paper's mask rearrangement and mask tuning (rescaling the kept units by least squares)
— the ticket is the mask and, like every ticket, rewinds to θ0; and its per-example Fisher is taken
over batches of the search's source (`score_batches` batches; batch size 1 gives the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.common import ladder, need
from tickets.registry import register_method
from tickets.search import SearchContext, ones_masks
from tickets.structured import Layer, bert_layers, structured_ticket


@dataclass(frozen=True)
class FisherMaskHparams:
    score_batches: int = hp(8, "batches of the source whose squared mask gradients sum to the Fisher information")

    def __post_init__(self) -> None:
        if isinstance(self.score_batches, int) and self.score_batches < 1:
            raise ConfigError(f"method 'fisher_mask': score_batches must be >= 1, found {self.score_batches}")


def mask_gradients(weights: dict, grads: dict, layer: Layer, heads: int) -> tuple[Tensor, Tensor]:
    """(∂L/∂m per head, per neuron) of one layer from the weights' gradients: the sum of W ⊙ ∂L/∂W
    over the attention output's columns of each head and the FFN output's column of each neuron."""
    wo, go = weights[layer.o].double(), grads[layer.o].double()
    d = wo.shape[1] // heads
    head = (wo * go).reshape(wo.shape[0], heads, d).sum((0, 2))
    neuron = (weights[layer.ff_out].double() * grads[layer.ff_out].double()).sum(0)
    return head, neuron


def fisher_scores(ctx: SearchContext, layers: list[Layer], heads: int, batches: int) -> dict:
    """{layer prefix: (head Fisher, neuron Fisher)} summed over `batches` seeded batches at θ0."""
    score_fn = need(ctx, "fisher_mask", "score_fn")
    masks = ones_masks(ctx.theta0)
    out: dict = {}
    for b in range(batches):
        grads = score_fn(ctx.theta0, masks, batch=b)
        for layer in layers:
            h, n = mask_gradients(ctx.theta0, grads, layer, heads)
            fh, fn = out.get(layer.prefix, (0.0, 0.0))
            out[layer.prefix] = (fh + h.pow(2), fn + n.pow(2))
    return out


def search_mask(fisher: dict, head_cost: int, neuron_cost: int, budget: float) -> tuple[dict, dict]:
    """({layer: pruned heads}, {layer: pruned neurons}) keeping the most Fisher importance within
    `budget` kept weights: every layer's best head is kept first; then for each number of further
    heads the top ones, the budget left filled with the top neurons; the best split wins (ties: fewer
    heads). Kept weights never exceed the budget beyond the mandatory heads."""
    prefixes = list(fisher)
    must = {p: int(torch.argmax(fisher[p][0])) for p in prefixes}
    extra_h = sorted(((float(f), p, i) for p in prefixes for i, f in enumerate(fisher[p][0].tolist()) if i != must[p]),
                     key=lambda t: -t[0])
    all_n = sorted(((float(f), p, j) for p in prefixes for j, f in enumerate(fisher[p][1].tolist())),
                   key=lambda t: -t[0])
    left = budget - head_cost * len(prefixes)
    cum_h = [0.0]
    for f, _, _ in extra_h:
        cum_h.append(cum_h[-1] + f)
    cum_n = [0.0]
    for f, _, _ in all_n:
        cum_n.append(cum_n[-1] + f)
    best = None
    for k in range(len(extra_h) + 1):
        room = left - k * head_cost
        if room < 0:
            break
        n = min(int(room // neuron_cost), len(all_n))
        value = cum_h[k] + cum_n[n]
        if best is None or value > best[0] + 1e-15:
            best = (value, k, n)
    _, k, n = best if best is not None else (0.0, 0, 0)
    kept_h = {(p, must[p]) for p in prefixes} | {(p, i) for _, p, i in extra_h[:k]}
    kept_n = {(p, j) for _, p, j in all_n[:n]}
    gone_h = {p: [i for i in range(len(fisher[p][0])) if (p, i) not in kept_h] for p in prefixes}
    gone_n = {p: [j for j in range(len(fisher[p][1])) if (p, j) not in kept_n] for p in prefixes}
    return gone_h, gone_n


@register_method("fisher_mask", FisherMaskHparams, trains=False, family="calibration", structured=True,
                 citation="Kwon et al., NeurIPS 2022 (Fisher-based mask search over heads and neurons)")
def fisher_mask(ctx: SearchContext, hparams: FisherMaskHparams) -> list:
    """Per ladder sparsity: the heads and neurons whose masks carry the most Fisher information within
    1 − s of their weights (one Fisher estimate for the whole ladder)."""
    heads = ctx.meta.get("num_heads")
    if not isinstance(heads, int) or heads < 1:
        raise TicketError("method 'fisher_mask' needs the backbone's head count (ctx.meta['num_heads'])")
    layers = bert_layers(ctx.theta0)
    fisher = fisher_scores(ctx, layers, heads, hparams.score_batches)
    first = layers[0]
    hidden, d = ctx.theta0[first.o].shape[0], ctx.theta0[first.q].shape[0] // heads
    head_cost, neuron_cost = 4 * hidden * d, 2 * hidden
    total = sum(head_cost * heads + neuron_cost * ctx.theta0[layer.ff_in].shape[0] for layer in layers)
    shapes = {n: tuple(w.shape) for n, w in ctx.theta0.items()}
    tickets = []
    for s in ladder(ctx, "fisher_mask"):
        gone_h, gone_n = search_mask(fisher, head_cost, neuron_cost, (1.0 - s) * total)
        tickets.append(structured_ticket(ctx, shapes, layers, heads, gone_h, gone_n, method="fisher_mask",
                                         hparams=hparams, sparsity=s))
    return tickets
