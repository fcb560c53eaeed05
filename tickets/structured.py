"""Structured tickets: attention heads and FFN neurons as the pruning unit, on BERT-style layers.

A layer is found by its weights' names (`….layer.<i>.attention.self.query.weight`, `key`, `value`,
`attention.output.dense`, `intermediate.dense`, `output.dense`: UNITER's encoder, BERT). Pruning head h
zeroes rows h·d … (h+1)·d − 1 of query, key and value and the same columns of the attention output;
pruning neuron j zeroes row j of `intermediate.dense` and column j of `output.dense`. The pruned unit
then contributes exactly nothing (its biases reach only zeroed weights), so the model with the units
physically removed (`bench.backbones.structured.shrink_bert`) computes the same outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import TicketError

_PARTS = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
          "attention.output.dense": "o", "intermediate.dense": "ff_in", "output.dense": "ff_out"}
_NAME = re.compile(r"^(?P<layer>(?:.*\.)?layer\.\d+)\.(?P<part>" + "|".join(re.escape(p) for p in _PARTS) + r")\.weight$")


@dataclass(frozen=True)
class Layer:
    """The weight names of one transformer layer's prunable units."""

    prefix: str
    q: str
    k: str
    v: str
    o: str
    ff_in: str
    ff_out: str


def bert_layers(names) -> list[Layer]:
    """The complete BERT-style layers among `names`, in order of appearance."""
    found: dict[str, dict] = {}
    for n in names:
        m = _NAME.match(n)
        if m:
            found.setdefault(m["layer"], {})[_PARTS[m["part"]]] = n
    layers = [Layer(prefix, **parts) for prefix, parts in found.items() if len(parts) == len(_PARTS)]
    if not layers:
        raise TicketError("structured tickets need BERT-style layers (…layer.<i>.attention.self.query.weight, …, "
                          "output.dense.weight) in the prunable set; none found")
    return layers


def unit_scores(weights: dict, layer: Layer, heads: int) -> tuple[Tensor, Tensor]:
    """(L2 norm of each head's weights: its q, k, v rows and o columns; of each neuron's: its
    intermediate row and output column)."""
    w = {k: weights[getattr(layer, k)].detach().double() for k in ("q", "k", "v", "o", "ff_in", "ff_out")}
    d = w["q"].shape[0] // heads
    head = sum(w[k].reshape(heads, d, -1).pow(2).sum((1, 2)) for k in ("q", "k", "v"))
    head = head + w["o"].reshape(w["o"].shape[0], heads, d).pow(2).sum((0, 2))
    neuron = w["ff_in"].pow(2).sum(1) + w["ff_out"].pow(2).sum(0)
    return head.sqrt(), neuron.sqrt()


def unit_masks(shapes: dict, layers: list[Layer], heads: int, pruned_heads: dict, pruned_neurons: dict) -> dict:
    """Keep-masks over every tensor of `shapes` removing the given heads and neurons per layer prefix."""
    masks = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    for layer in layers:
        d = shapes[layer.q][0] // heads
        for h in pruned_heads.get(layer.prefix, ()):
            rows = slice(h * d, (h + 1) * d)
            for k in (layer.q, layer.k, layer.v):
                masks[k][rows, :] = False
            masks[layer.o][:, rows] = False
        for j in pruned_neurons.get(layer.prefix, ()):
            masks[layer.ff_in][j, :] = False
            masks[layer.ff_out][:, j] = False
    return masks


def pruned_units(masks: dict, heads: int) -> tuple[dict, dict]:
    """({layer prefix: pruned heads}, {layer prefix: pruned neurons}) of structured masks; a mask that
    prunes part of a unit, or weights outside the units, is a one-line TicketError."""
    layers = bert_layers(masks)
    out_h, out_n = {}, {}
    for layer in layers:
        d = masks[layer.q].shape[0] // heads
        gone_h = [h for h in range(heads) if not masks[layer.q][h * d:(h + 1) * d].any()]
        gone_n = [j for j in range(masks[layer.ff_in].shape[0]) if not masks[layer.ff_in][j].any()]
        expect = unit_masks({n: tuple(masks[n].shape) for n in vars(layer).values() if n != layer.prefix},
                            [layer], heads, {layer.prefix: gone_h}, {layer.prefix: gone_n})
        bad = next((n for n, m in expect.items() if not torch.equal(m, masks[n])), None)
        if bad:
            raise TicketError(f"mask '{bad}' is not structured: it prunes part of a head or neuron")
        out_h[layer.prefix], out_n[layer.prefix] = gone_h, gone_n
    covered = {n for layer in layers for n in vars(layer).values()}
    other = next((n for n, m in masks.items() if n not in covered and not bool(m.all())), None)
    if other:
        raise TicketError(f"mask '{other}' is outside every head and neuron but prunes weights: not a structured ticket")
    return out_h, out_n


def lowest_units(scores: dict, heads: int, sparsity: float) -> tuple[dict, dict]:
    """({layer prefix: pruned heads}, {layer prefix: pruned neurons}) removing, in every layer of
    `scores` ({prefix: (head scores, neuron scores)}), the fraction `sparsity` of heads and of neurons
    with the lowest scores (ties: lower index first); at least one head and one neuron stay."""
    gone_h, gone_n = {}, {}
    for prefix, (h, n) in scores.items():
        gone_h[prefix] = sorted(h.argsort(stable=True)[: min(round(sparsity * heads), heads - 1)].tolist())
        gone_n[prefix] = sorted(n.argsort(stable=True)[: min(round(sparsity * len(n)), len(n) - 1)].tolist())
    return gone_h, gone_n


def structured_ticket(ctx, shapes: dict, layers: list, heads: int, gone_h: dict, gone_n: dict, *, method: str,
                      hparams, sparsity: float, **kw):
    """A structured ticket removing the given units, recording them (`extra.structured`)."""
    extra = {**kw.pop("extra", {}), "structured": {"num_heads": heads, "pruned_heads": gone_h,
                                                  "pruned_neurons": {k: len(v) for k, v in gone_n.items()}}}
    return ctx.make_ticket(unit_masks(shapes, layers, heads, gone_h, gone_n), method=method, hparams=hparams,
                           target_sparsity=sparsity, extra=extra, **kw)
