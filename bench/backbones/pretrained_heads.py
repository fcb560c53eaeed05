"""Pre-trained MLM / ITM / MRM head weights found in a real checkpoint, in `PretrainModel`'s names.

Pre-training tickets search on the pre-training objectives; a real checkpoint trained those heads,
so they start from its weights instead of a fresh initialisation. Only heads whose every weight is
present are taken (all or nothing per objective); shapes are checked when `PretrainModel` loads them.

  UNITER (official names)   cls.predictions.{transform.dense, transform.LayerNorm, bias}  -> mlm
                            itm_output [2, H]                                              -> itm
                            feat_regress.{net.0, net.2, weight (tied img_linear [H, D]), bias} -> mrm
                            region_classifier.net.{0, 2, 3} [1601 classes]               -> mrc
  LXMERT (LxmertForPreTraining) cls.predictions.*                                          -> mlm
                            cls.seq_relationship [2, H] (is-matched)                       -> itm
                            obj_predict_head.{transform.dense, transform.LayerNorm, decoder_dict.feat} -> mrm
  ViLT (ViltForMaskedLM)    mlm_score.{transform.dense, transform.LayerNorm, bias}         -> mlm

A two-way match classifier also gives `rank.proj` (nn.Linear(H, 1)): its match row alone, weight[1:] and
bias[1:], which UNITER's and ViLT's retrieval fine-tuning copy into their rank head (UNITER train_itm.py
`init_output`); `TaskModel`'s retrieval head starts from it.
Two-way match classifiers become our single match logit exactly: softmax over (no, yes) equals
sigmoid(w_yes·x + b_yes − w_no·x − b_no). UNITER's MRFR output layer reads the image embedder's
weight (tied); here it is a copy.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

HEADS_FILE = "heads.safetensors"


def _bert_transform(prefix: str, head: str, first: int, norm: int) -> dict[str, str]:
    """dense and LayerNorm of a BERT prediction-head transform -> our MLP's layer indices."""
    out = {}
    for ours, theirs in ((first, "dense"), (norm, "LayerNorm")):
        for p in ("weight", "bias"):
            out[f"{prefix}.{theirs}.{p}"] = f"{head}.{ours}.{p}"
    return out


def _normalise(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`module.` prefixes dropped; BERT-era LayerNorm gamma/beta named weight/bias (UNITER's loader
    renames every gamma/beta: its heads' LayerNorms sit in Sequentials, e.g. feat_regress.net.2)."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        head, _, last = k.rpartition(".")
        last = {"gamma": "weight", "beta": "bias"}.get(last, last)
        out[f"{head}.{last}" if head else last] = v
    return out


def _copy(state: dict, names: dict[str, str]) -> dict[str, Tensor] | None:
    if not all(k in state for k in names):
        return None
    return {ours: state[theirs] for theirs, ours in names.items()}


def _match_logit(weight: Tensor, bias: Tensor, out: str) -> dict[str, Tensor]:
    """A [2, H] (no, yes) classifier as one logit: weight [1, H] and bias [1] of `out` (nn.Linear(H, 1)),
    plus the rank head the released retrieval recipes start from: the match row as it is."""
    return {f"{out}.weight": (weight[1] - weight[0])[None, :], f"{out}.bias": (bias[1] - bias[0]).reshape(1),
            "rank.proj.weight": weight[1:].clone(), "rank.proj.bias": bias[1:].clone()}


def _mlm(state: dict, prefix: str) -> dict[str, Tensor] | None:
    names = {**_bert_transform(f"{prefix}.transform", "mlm.transform", 0, 2), f"{prefix}.bias": "mlm.bias"}
    return _copy(state, names)


def head_state(arch: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Head weights of a checkpoint keyed as `PretrainModel.heads` keys them ('mlm.bias', ...)."""
    s = _normalise(state)
    parts: list[dict[str, Tensor] | None] = []
    if arch == "uniter":
        parts.append(_mlm(s, "cls.predictions"))
        if "itm_output.weight" in s and "itm_output.bias" in s:
            parts.append(_match_logit(s["itm_output.weight"], s["itm_output.bias"], "itm.proj"))
        mrm = _copy(s, {"feat_regress.net.0.weight": "mrm.mlp.net.0.weight", "feat_regress.net.0.bias": "mrm.mlp.net.0.bias",
                        "feat_regress.net.2.weight": "mrm.mlp.net.2.weight", "feat_regress.net.2.bias": "mrm.mlp.net.2.bias",
                        "feat_regress.bias": "mrm.mlp.net.3.bias"})
        if mrm is not None and "feat_regress.weight" in s:
            mrm["mrm.mlp.net.3.weight"] = s["feat_regress.weight"].t().contiguous()  # F.linear(x, W.t()) in UNITER
            parts.append(mrm)
        parts.append(_copy(s, {f"region_classifier.net.{i}.{p}": f"mrc.mlp.net.{i}.{p}"
                               for i in (0, 2, 3) for p in ("weight", "bias")}))
    elif arch == "lxmert":
        parts.append(_mlm(s, "cls.predictions"))
        if "cls.seq_relationship.weight" in s and "cls.seq_relationship.bias" in s:
            parts.append(_match_logit(s["cls.seq_relationship.weight"], s["cls.seq_relationship.bias"], "itm.proj"))
        parts.append(_copy(s, {**_bert_transform("obj_predict_head.transform", "mrm.mlp.net", 0, 2),
                               "obj_predict_head.decoder_dict.feat.weight": "mrm.mlp.net.3.weight",
                               "obj_predict_head.decoder_dict.feat.bias": "mrm.mlp.net.3.bias"}))
    elif arch == "vilt":
        parts.append(_mlm(s, "mlm_score"))
    out: dict[str, Tensor] = {}
    for part in parts:
        if part:
            out.update({k: v.detach().to("cpu", torch.float32).clone() for k, v in part.items()})
    return out
