"""LXMERT (two-stream: language, vision and cross-modality layers) via transformers.LxmertModel.

Positions are LXMERT's 4-d normalised x1y1x2y2 (the first 4 columns of UNITER's 7-d ones).
Prunable set, in this order: every nn.Linear weight of the language layers (encoder.layer.N),
then the vision layers (encoder.r_layers.N), then the cross-modality layers (encoder.x_layers.N),
each layer in module order. The visual feature projection (visn_fc), embeddings and pooler are not.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from bench.backbones.base import Backbone, Encoding, RegionBatch, collate_regions


def lxmert_config(cfg: dict):
    from transformers import LxmertConfig

    return LxmertConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_attention_heads=cfg["num_heads"],
        intermediate_size=cfg["intermediate_size"],
        l_layers=cfg["l_layers"],
        x_layers=cfg["x_layers"],
        r_layers=cfg["r_layers"],
        visual_feat_dim=cfg["feat_dim"],
        visual_pos_dim=4,
        max_position_embeddings=cfg["max_position"],
        hidden_dropout_prob=cfg.get("dropout", 0.1),
        attention_probs_dropout_prob=cfg.get("dropout", 0.1),
        pad_token_id=cfg.get("pad_token_id", 0),
    )


def config_from_lxmert(hf) -> dict:
    """Our config dict from a transformers LxmertConfig (e.g. unc-nlp/lxmert-base-uncased's)."""
    return {
        "vocab_size": hf.vocab_size, "hidden_size": hf.hidden_size, "num_heads": hf.num_attention_heads,
        "intermediate_size": hf.intermediate_size, "l_layers": hf.l_layers, "x_layers": hf.x_layers,
        "r_layers": hf.r_layers, "feat_dim": hf.visual_feat_dim, "max_position": hf.max_position_embeddings,
        "max_text_len": min(hf.max_position_embeddings, 40), "dropout": hf.hidden_dropout_prob,
        "pad_token_id": hf.pad_token_id if hf.pad_token_id is not None else 0,
    }


class LxmertBackbone(Backbone):
    arch = "lxmert"
    hf_prefix = "lxmert."
    image_input = "regions"

    def __init__(self, preset: str, family: str, config: dict, tokenizer: Any, hf_model: nn.Module | None = None):
        super().__init__(preset, family, config, tokenizer)
        from transformers import LxmertModel

        self.lxmert = hf_model if hf_model is not None else LxmertModel(lxmert_config(config))

    def collate(self, images: Sequence[Any]) -> RegionBatch:
        b = collate_regions(images, self.config["feat_dim"], 4, self.preset)
        dev = self.device
        return RegionBatch(b.features.to(dev), b.positions.to(dev), b.mask.to(dev))

    def word_embeddings(self) -> nn.Embedding:
        return self.lxmert.embeddings.word_embeddings

    def _prunable_prefixes(self) -> list[str]:
        return ["lxmert.encoder.layer.", "lxmert.encoder.r_layers.", "lxmert.encoder.x_layers."]

    def _encode_batch(self, input_ids, text_mask, images: RegionBatch) -> Encoding:
        dtype = self.lxmert.embeddings.word_embeddings.weight.dtype
        out = self.lxmert(
            input_ids=input_ids,
            visual_feats=images.features.to(dtype),
            visual_pos=images.positions.to(dtype),
            attention_mask=text_mask.long(),
            visual_attention_mask=images.mask.long(),
            return_dict=True,
        )
        seq = torch.cat([out.language_output, out.vision_output], dim=1)
        lt = input_ids.shape[1]
        return Encoding(seq, out.pooled_output, slice(lt, seq.shape[1]), text_mask, images.mask)
