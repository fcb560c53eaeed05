"""Convert the official UNITER checkpoints' key names (uniter-base.pt / uniter-large.pt) to ours.

The official `UniterModel` lives under `uniter.` in its pre-training/fine-tuning wrappers:
  uniter.embeddings.{word,position,token_type}_embeddings.weight, uniter.embeddings.LayerNorm.*
  uniter.img_embeddings.{img_linear, img_layer_norm, pos_linear, pos_layer_norm, mask_embedding, LayerNorm}.*
  uniter.encoder.layer.N.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
                          intermediate.dense, output.{dense,LayerNorm}}.*
  uniter.pooler.dense.*
Our UniterBackbone uses the same names without the prefix. Older BERT-era files name LayerNorm
parameters gamma/beta; DataParallel files prefix `module.`. Keys outside `uniter.` (the
pre-training heads cls.*, itm_output.*, feat_regress.*, region_classifier.*, task heads) are not
part of the backbone and are dropped.
"""

from __future__ import annotations

from typing import Mapping

import torch

from bench.core.errors import CheckpointError

OFFICIAL_PREFIX = "uniter."


def is_official_uniter(state: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys carry the official `uniter.` prefix (possibly under `module.`)."""
    return any(k.removeprefix("module.").startswith(OFFICIAL_PREFIX) for k in state)


def _rename_layer_norm(key: str) -> str:
    head, _, last = key.rpartition(".")
    if "LayerNorm" in head or "layer_norm" in head:
        last = {"gamma": "weight", "beta": "bias"}.get(last, last)
    return f"{head}.{last}" if head else last


def convert_uniter_state_dict(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official UNITER state dict -> UniterBackbone state dict (heads dropped, names mapped)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        key = key.removeprefix("module.")
        if not key.startswith(OFFICIAL_PREFIX):
            continue
        key = _rename_layer_norm(key[len(OFFICIAL_PREFIX):])
        if key.endswith("position_ids"):  # a buffer, rebuilt by BertEmbeddings
            continue
        out[key] = value
    if not out:
        raise CheckpointError("UNITER checkpoint: no 'uniter.*' keys found (is this an official UNITER file?)")
    return out
