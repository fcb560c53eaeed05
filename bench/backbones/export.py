"""`ticketbench tickets export`: θ0 ⊙ m of a ticket as a transformers model folder (`save_pretrained`).

Lives with the backbones (it builds one from θ0 and turns it into a transformers model); the ticket
format itself stays in `tickets`, below every backbone.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel

from bench.backbones.presets import load_backbone
from bench.backbones.structured import removed_units, shrink_bert
from bench.backbones.uniter import bert_config
from bench.core.errors import TicketError
from bench.core.io import atomic_write_json, file_hash
from bench.core.layout import Layout
from tickets import Ticket


def _theta0_for(ticket: Ticket, ticket_path: Path) -> Path:
    """θ0 of a ticket in a run's store: `<out>/tickets/<hash>/<source>/<file>` → `<out>/pretrain/*/`
    holding the ticket's backbone (by fingerprint)."""
    out = ticket_path.resolve().parents[3] if len(ticket_path.resolve().parents) > 3 else ticket_path.parent
    candidates = Layout(out).theta0s()
    fits = []
    for d in candidates:
        try:
            if json.loads((d / "backbone.json").read_text()).get("preset") != ticket.backbone:
                continue
        except (OSError, ValueError):
            continue
        if load_backbone(d).fingerprint() == ticket.fingerprint:
            fits.append(d)
    if len(fits) != 1:
        what = "no θ0" if not fits else f"{len(fits)} θ0 directories"
        raise TicketError(f"{ticket_path}: {what} of backbone '{ticket.backbone}' under {Layout(out).pretrain}; "
                          "give --theta0 DIR (a <out>/pretrain/<hash>/ directory)")
    return fits[0]


def transformers_model(backbone, where="θ0") -> nn.Module:
    """The backbone as a transformers model: its own (LXMERT, ViLT), or UNITER's BERT part (text
    embeddings, encoder, pooler) as a `BertModel` with its current weights."""
    prefix = backbone.hf_prefix.rstrip(".")
    if prefix and isinstance(getattr(backbone, prefix, None), PreTrainedModel):
        return getattr(backbone, prefix)
    if backbone.arch != "uniter":
        raise TicketError(f"backbone arch '{backbone.arch}' has no transformers export")
    model = BertModel(bert_config(backbone.config))
    state = {k: v for k, v in backbone.state_dict().items() if k.split(".")[0] in ("embeddings", "encoder", "pooler")}
    model.load_state_dict(state, strict=False)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith(("position_ids", "token_type_ids"))]
    if missing:
        raise TicketError(f"{where}: cannot export as a BertModel, missing {missing[0]}")
    return model


def structured_latency(backbone, tickets: list, batch: int = 8, seq: int = 64, rounds: int = 10) -> dict:
    """Forward latency of each structured ticket's smaller BertModel (`shrink_bert`) against the dense
    one, timed round-robin in the same process on the backbone's device (best of `rounds`, one
    batch of `batch` × `seq` random token ids), with the device named: the leaderboard's latency."""
    dense = transformers_model(backbone).eval()
    device = next(dense.parameters()).device
    seq = min(seq, dense.config.max_position_embeddings)
    ids = torch.randint(0, dense.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device)
    names = dict(dense.named_parameters())
    models = {}
    for t in tickets:
        units = (t.metadata.get("extra") or {}).get("structured") or {}
        masks = {n: m for n, m in t.masks.items() if n in names}
        models[t.metadata["target_sparsity"]] = shrink_bert(copy.deepcopy(dense), masks, int(units["num_heads"]))
    best = {k: float("inf") for k in ["dense", *models]}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(rounds):
            for k in best:
                m = dense if k == "dense" else models[k]
                sync()
                t0 = time.perf_counter()
                m(input_ids=ids)
                sync()
                best[k] = min(best[k], time.perf_counter() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"cpu {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    return {"device": name, "batch": [batch, seq], "rounds": rounds, "dense_ms": round(1e3 * best["dense"], 3),
            "tickets": [{"sparsity": s, "ticket_ms": round(1e3 * best[s], 3), "dense_ms": round(1e3 * best["dense"], 3)}
                        for s in models]}


def export_ticket(ticket_path, out, theta0=None) -> Path:
    """Write θ0 ⊙ m as a transformers model folder (`save_pretrained`, loadable with
    `AutoModel.from_pretrained`) plus the tokenizer and `ticketbench.json` (the ticket's provenance).
    UNITER-style backbones export their BERT (text embeddings, encoder, pooler) as a `BertModel`; the
    image embedder is not a transformers module and stays in θ0. LXMERT / ViLT export the whole model.
    A structured ticket (heads and FFN neurons removed) exports as the physically smaller BertModel
    (`shrink_bert`; load it with `bench.backbones.structured.load_exported`)."""
    ticket_path, out = Path(ticket_path), Path(out)
    ticket = Ticket.load(ticket_path)
    theta0 = Path(theta0) if theta0 else _theta0_for(ticket, ticket_path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TicketError(f"{out}: exists and is not an empty directory; choose a new --out")
    backbone = load_backbone(theta0)
    ticket.apply(backbone)  # checks the fingerprint, applies the weight transform, zeroes pruned weights
    model = transformers_model(backbone, theta0)
    units = None
    structured = (ticket.metadata.get("extra") or {}).get("structured")
    if isinstance(structured, dict):  # heads and neurons removed: a physically smaller model
        if not isinstance(model, BertModel):
            raise TicketError(f"{ticket_path}: a structured ticket exports as a smaller BertModel only; "
                              f"backbone arch '{backbone.arch}' exports as {type(model).__name__}")
        masks = {n: m for n, m in ticket.masks.items() if n in dict(model.named_parameters())}
        units = removed_units(masks, int(structured["num_heads"]))
        shrink_bert(model, masks, units["num_heads"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written into a sibling temp folder and renamed: an interrupted export leaves no half folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        backbone.tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "ticketbench.json", {
            "ticket": str(ticket_path), "content_hash": ticket.content_hash, "source": ticket.metadata["source"],
            "backbone": ticket.backbone, "sparsity": ticket.sparsity, "weights": ticket.metadata.get("weights"),
            "theta0": str(theta0), "theta0_hash": file_hash(theta0 / "model.safetensors"),
            "model_class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            # a structured ticket's removed units: `bench.backbones.structured.load_exported` rebuilds the model
            **({"structured": units} if units else {})})
        for p in tmp.rglob("*"):  # mkdtemp makes 0700; an exported model is for others to read
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
