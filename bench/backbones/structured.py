"""A structured ticket as a physically smaller transformers model: heads and FFN neurons removed.

`shrink_bert(model, masks, num_heads)` takes a `BertModel` (UNITER's text encoder exports as one, with
the ticket's weight names) and cuts the pruned heads' rows out of query / key / value and their
columns out of the attention output, and the pruned neurons' rows and columns out of the FFN, in place.
The masked weights it removes contribute exactly nothing (`tickets.structured`), so the smaller model
computes the masked model's outputs; `benchmarks/test_bench_structured.py` measures its CPU latency.

`ticketbench tickets export` writes a structured ticket this way (`save_pretrained` of the smaller
model, its removed units in `ticketbench.json`); transformers 5 has no per-layer head counts
(`pruned_heads` is gone), so `load_exported(folder)` rebuilds the smaller model from the config and
those units before loading the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.core.errors import TicketError
from tickets.structured import bert_layers, pruned_units, unit_masks

STRUCTURED_FILE = "ticketbench.json"  # the export's provenance; its "structured" entry names the removed units


def _linear(old: nn.Linear, rows=None, cols=None) -> nn.Linear:
    """A new nn.Linear holding `old`'s weight rows / columns (and bias rows) given by index tensors."""
    w = old.weight.detach()
    b = old.bias.detach() if old.bias is not None else None
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def shrink_bert(model: nn.Module, masks: dict, num_heads: int) -> nn.Module:
    """Remove the ticket's pruned heads and neurons from `model` (a transformers BertModel) in place;
    every layer keeps at least one head. Returns the model."""
    gone_h, gone_n = pruned_units(masks, num_heads)
    modules = dict(model.named_modules())
    for layer in bert_layers(masks):
        block = modules.get(layer.prefix)
        if block is None:
            raise TicketError(f"the model has no layer '{layer.prefix}' for the ticket's masks")
        att = block.attention.self
        d = att.attention_head_size
        keep_h = [h for h in range(att.num_attention_heads) if h not in set(gone_h[layer.prefix])]
        if not keep_h:
            raise TicketError(f"'{layer.prefix}': every head is pruned; a layer needs at least one")
        idx = torch.tensor([h * d + i for h in keep_h for i in range(d)], dtype=torch.long)
        att.query, att.key, att.value = (_linear(m, rows=idx) for m in (att.query, att.key, att.value))
        block.attention.output.dense = _linear(block.attention.output.dense, cols=idx)
        att.num_attention_heads, att.all_head_size = len(keep_h), len(keep_h) * d
        n = block.intermediate.dense.out_features
        keep_n = torch.tensor([j for j in range(n) if j not in set(gone_n[layer.prefix])], dtype=torch.long)
        block.intermediate.dense = _linear(block.intermediate.dense, rows=keep_n)
        block.output.dense = _linear(block.output.dense, cols=keep_n)
    return model


def removed_units(masks: dict, num_heads: int) -> dict:
    """The units a structured ticket removes, as `ticketbench.json` records them."""
    gone_h, gone_n = pruned_units(masks, num_heads)
    return {"num_heads": num_heads, "pruned_heads": gone_h, "pruned_neurons": gone_n}


def load_exported(folder) -> nn.Module:
    """The smaller BertModel a structured export wrote: built from its config, cut to the recorded
    units (`removed_units`), then its weights loaded strictly (a shape that does not fit is an error)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    try:
        units = json.loads((folder / STRUCTURED_FILE).read_text())["structured"]
    except (OSError, ValueError, KeyError, TypeError):
        raise TicketError(f"{folder}: no '{STRUCTURED_FILE}' with a 'structured' entry; not a structured export "
                          "(load it with AutoModel.from_pretrained)") from None
    model = BertModel(BertConfig.from_pretrained(str(folder)), add_pooling_layer=True)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    masks = unit_masks(shapes, bert_layers(shapes), int(units["num_heads"]), units["pruned_heads"],
                       units["pruned_neurons"])
    shrink_bert(model, masks, int(units["num_heads"]))
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise TicketError(f"{folder}: weights do not fit the structured model "
                          f"({(missing or unexpected)[0]} {'missing' if missing else 'unexpected'})")
    return model.eval()
