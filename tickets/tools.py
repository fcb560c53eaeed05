"""Ticket tools behind `ticketbench tickets show|diff|ls` (text-returning functions), and applying a
ticket to a model that is not a ticketbench backbone (export: `bench.backbones.export`)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
from pathlib import Path

import torch

from bench.core.errors import TicketError
from bench.core.layout import Layout
from tickets.registry import METHODS, get_method
from tickets.sources import TicketStore
from tickets.ticket import Ticket


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in [headers] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def show(path) -> str:
    """Metadata and a per-tensor sparsity table of the ticket at `path`."""
    t = Ticket.load(path)
    m = t.metadata
    head = [
        f"ticket        {path}",
        f"backbone      {m['backbone']}  (fingerprint {m['fingerprint']})",
        f"source        {m['source']}  (method {m['method']}, round {m['round']}, seed {m['seed']})",
        f"weights       {m['weights']}" + (f"  (seed {m.get('weights_seed')})" if m["weights"] != "pretrained" else ""),
        f"hparams       {json.dumps(m['hparams'], sort_keys=True)}",
        f"sparsity      target {_pct(m['target_sparsity'])}, achieved {_pct(t.sparsity)} of the prunable set"
        f" ({m['pruned']}/{m['total']}), {_pct(m['sparsity'].get('model'))} of the whole model",
        f"patterns      include {m['include']}  exclude {m['exclude']}  pattern {m.get('pattern', 'unstructured')}",
        f"content hash  {t.content_hash}   ticketbench {m['ticketbench']}   format {m['format_version']}",
        "",
    ]
    rows = [[n, "x".join(map(str, mk.shape)), mk.numel(), int((~mk).sum()), _pct(t.per_tensor_sparsity[n])]
            for n, mk in t.masks.items()]
    return "\n".join(head) + _table(["tensor", "shape", "weights", "pruned", "sparsity"], rows)


def _check_same_backbone(a: Ticket, b: Ticket) -> None:
    if a.fingerprint != b.fingerprint:
        raise TicketError(
            f"tickets are for different backbones: '{a.backbone}' (fingerprint {a.fingerprint}) and"
            f" '{b.backbone}' (fingerprint {b.fingerprint})"
        )


def _overlap(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    return int((a & b).sum()), int((a | b).sum())


def jaccard(a: Ticket, b: Ticket) -> float:
    """|kept in both| / |kept in either| over all prunable weights (1.0 when neither keeps any)."""
    _check_same_backbone(a, b)
    inter = union = 0
    for n in a.masks:
        i, u = _overlap(a.masks[n], b.masks[n])
        inter, union = inter + i, union + u
    return inter / union if union else 1.0


def diff(path_a, path_b) -> str:
    """Overlap of the kept weights of two tickets: Jaccard overall and per tensor."""
    a, b = Ticket.load(path_a), Ticket.load(path_b)
    _check_same_backbone(a, b)
    rows = []
    for n in a.masks:
        i, u = _overlap(a.masks[n], b.masks[n])
        rows.append([n, _pct(a.per_tensor_sparsity[n]), _pct(b.per_tensor_sparsity[n]), f"{i / u if u else 1.0:.4f}"])
    head = (f"A  {path_a}: {a.metadata['source']} at {_pct(a.sparsity)}\n"
            f"B  {path_b}: {b.metadata['source']} at {_pct(b.sparsity)}\n"
            f"backbone {a.backbone}; Jaccard of kept weights overall: {jaccard(a, b):.4f}\n\n")
    return head + _table(["tensor", "sparsity A", "sparsity B", "jaccard"], rows)


def ls(directory) -> str:
    """A table of the tickets in a store directory, or in every store of a run's output directory
    (`<out>/tickets/<hash>/`)."""
    root = Path(directory)
    if not root.is_dir():
        raise TicketError(f"{root}: not a ticket directory")
    stores = [root] + sorted(p for p in Layout(root).tickets.glob("*") if p.is_dir())
    rows = [r for store in stores for r in TicketStore(store).ls()]
    if not rows:
        return f"no tickets under {root}"
    table = [[r["source"], f"{r['target_sparsity']:.2f}", _pct(r["sparsity"]), r["round"], r["weights"],
              r["backbone"], r["content_hash"], Path(r["path"]).relative_to(root)]
             for r in rows if "error" not in r]
    out = _table(["source", "target", "achieved", "round", "weights", "backbone", "hash", "path"], table)
    errors = [f"! {r['error']}" for r in rows if "error" in r]
    return "\n".join([out] + errors)


def _citation(doc: str) -> tuple[str, str]:
    """(title, citation) from a method module's docstring: its first line, and its first paragraph
    that names a year (the built-ins and the plugin template cite their paper there)."""
    paras = [" ".join(p.split()) for p in (doc or "").strip().split("\n\n") if p.strip()]
    title = paras[0].split(". ")[0].rstrip(".") if paras else ""
    cited = next((p for p in paras if re.search(r"\b(19|20)\d\d\b", p)), "")
    year = re.search(r"\b(19|20)\d\d\b", cited)
    if year:  # up to the end of the sentence naming the year
        end = cited.find(". ", year.end())
        cited = cited if end < 0 else cited[: end + 1]
    return title, cited


def _family(m) -> str:
    return getattr(m, "family", None) or ("training-based" if getattr(m, "trains", True) else "data-free")


def patterns_of(m) -> str:
    """The sparsity patterns a method's tickets can have."""
    if getattr(m, "structured", False):
        return "structured (heads, FFN neurons)"
    return "unstructured, N:M" if getattr(m, "patterns", False) else "unstructured"


def methods_table() -> str:
    """One line per registered method: family (data-free, calibration, training-based), whether it can
    make N:M tickets (`find.pattern`) and its citation."""
    rows = []
    for name in sorted(METHODS.names()):
        try:
            m = get_method(name)
        except TicketError:
            rows.append([name, "(unusable)", "-", "-"])
            continue
        cited = getattr(m, "citation", "") or _citation(getattr(sys.modules.get(m.fn.__module__ or ""), "__doc__",
                                                                "") or "")[1]
        rows.append([name, _family(m), patterns_of(m), cited])
    return _table(["method", "family", "patterns", "citation"], rows)


def describe_methods() -> str:
    """The table of every registered pruning method (built-in and plugin), then each with its
    hyperparameters and citation, for `ticketbench methods`."""
    blocks = [methods_table()]
    for name in sorted(METHODS.names()):
        try:
            m = get_method(name)
        except TicketError as e:
            blocks.append(f"{name}\n  (unusable: {e})")
            continue
        modname = getattr(m.fn, "__module__", None) or ""
        title, cited = _citation(getattr(sys.modules.get(modname), "__doc__", "") or "")
        cited = getattr(m, "citation", "") or cited  # the registered citation first, else the docstring's
        where = "built-in" if modname.startswith("tickets.methods.") else f"plugin {modname or '(no module)'}"
        needs = f"{_family(m)}; " + ("trains on its source" if getattr(m, "trains", True) else "no training") + (
            f", transforms {m.base}'s ticket" if getattr(m, "base", None) else "") + (
            "; N:M tickets" if getattr(m, "patterns", False) else "") + (
            "; structured tickets (heads, FFN neurons)" if getattr(m, "structured", False) else "") + (
            f"; publishes {m.publishes} (the matrix rewinds its mask to θ0)" if getattr(m, "publishes", None) else "")
        lines = [f"{name}  ({where}; {needs})"]
        what = (inspect.getdoc(m.fn) or "").split("\n\n")[0].replace("\n", " ")
        lines += [f"  {x}" for x in (title, cited if cited != title else "", what) if x]
        fields = dataclasses.fields(m.hparams_cls)
        for f in fields:
            lines.append(f"    {f.name} = {f.default!r}  # {f.metadata.get('help', '')}")
        if not fields:
            lines.append("    (no hyperparameters)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ---- using a ticket outside ticketbench -------------------------------------------------------
def _match(name: str, params: dict[str, torch.nn.Parameter], shape: tuple) -> list[str]:
    """Parameters of a foreign model that a mask named `name` fits: the same name, or a name ending
    with it (`bert.encoder.layer.0...` for `encoder.layer.0...`), or without a wrapped model's prefix
    (LXMERT / ViLT tickets name `lxmert.encoder...`, a bare `LxmertModel` has `encoder...`)."""
    names = [name] + ([name.split(".", 1)[1]] if "." in name else [])
    for n in names:
        hits = [k for k in params if (k == n or k.endswith("." + n)) and tuple(params[k].shape) == shape]
        if hits:
            return hits
    return []


def apply_to_model(ticket: Ticket, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Zero the pruned weights of `model` in place (see `ticketbench.apply_ticket`)."""
    if hasattr(model, "prunable_parameters"):  # a ticketbench backbone: the full, fingerprinted check
        return dict(ticket.apply(model))
    weights = ticket.metadata.get("weights", "pretrained")
    if weights != "pretrained":
        raise TicketError(f"ticket of the '{weights}' control: it rewrites weights as well as masking them; "
                          "only tickets of pretrained weights apply to another model")
    params = dict(model.named_parameters())
    chosen: dict[str, torch.nn.Parameter] = {}
    for name, mask in ticket.masks.items():
        hits = _match(name, params, tuple(mask.shape))
        if len(hits) != 1:
            found = "no parameter" if not hits else f"{len(hits)} parameters ({', '.join(hits[:3])})"
            raise TicketError(f"ticket mask '{name}' {tuple(mask.shape)} fits {found} of "
                              f"{type(model).__name__}; the ticket is for backbone '{ticket.backbone}'")
        chosen[name] = params[hits[0]]
    with torch.no_grad():  # checked every mask first: a mismatch leaves the model untouched
        for name, p in chosen.items():
            p.mul_(ticket.masks[name].to(device=p.device, dtype=p.dtype))
    return chosen
