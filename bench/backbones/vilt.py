"""ViLT (single-stream over text tokens and image patches) via transformers.ViltModel.

Images are raw pixels (`PixelInput`); ViLT's own embedder turns them into patch tokens plus an
image [CLS] token. Prunable set: every nn.Linear weight of the transformer blocks
(vilt.encoder.layer.N: query, key, value, attention output, intermediate, output), in layer order.
Patch projection, embeddings, final LayerNorm and pooler are not prunable.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from bench.backbones.base import Backbone, Encoding, PixelBatch, collate_pixels
from bench.backbones.uniter import additive_mask
from bench.data.images import normalise_pixels


def vilt_config(cfg: dict):
    from transformers import ViltConfig

    return ViltConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_layers"],
        num_attention_heads=cfg["num_heads"],
        intermediate_size=cfg["intermediate_size"],
        image_size=cfg["image_size"],
        patch_size=cfg["patch_size"],
        max_position_embeddings=cfg["max_position"],
        hidden_dropout_prob=cfg.get("dropout", 0.0),
        attention_probs_dropout_prob=cfg.get("dropout", 0.0),
        max_image_length=-1,
        pad_token_id=cfg.get("pad_token_id", 0),
    )


def config_from_vilt(hf) -> dict:
    """Our config dict from a transformers ViltConfig (e.g. dandelin/vilt-b32-mlm's)."""
    return {
        "vocab_size": hf.vocab_size, "hidden_size": hf.hidden_size, "num_layers": hf.num_hidden_layers,
        "num_heads": hf.num_attention_heads, "intermediate_size": hf.intermediate_size,
        "image_size": hf.image_size, "patch_size": hf.patch_size, "max_position": hf.max_position_embeddings,
        "max_text_len": hf.max_position_embeddings, "dropout": hf.hidden_dropout_prob,
        "pad_token_id": hf.pad_token_id if hf.pad_token_id is not None else 0,
    }


class ViltBackbone(Backbone):
    arch = "vilt"
    hf_prefix = "vilt."
    image_input = "pixels"

    def __init__(self, preset: str, family: str, config: dict, tokenizer: Any, hf_model: nn.Module | None = None):
        super().__init__(preset, family, config, tokenizer)
        from transformers import ViltModel

        self.vilt = hf_model if hf_model is not None else ViltModel(vilt_config(config))

    def collate(self, images: Sequence[Any]) -> PixelBatch:
        b = collate_pixels(images, self.preset)
        dev = self.device
        return PixelBatch(b.pixel_values.to(dev), b.pixel_mask.to(dev))

    def word_embeddings(self) -> nn.Embedding:
        return self.vilt.embeddings.text_embeddings.word_embeddings

    def _prunable_prefixes(self) -> list[str]:
        return ["vilt.encoder.layer."]

    def _encode_batch(self, input_ids, text_mask, images: PixelBatch) -> Encoding:
        # ViltModel.forward does not return the patch mask, so run its parts here to keep it.
        v = self.vilt
        dtype = v.embeddings.text_embeddings.word_embeddings.weight.dtype
        pixels = normalise_pixels(images.pixel_values, images.pixel_mask)  # the stores' uint8 pictures
        emb, mask = v.embeddings(
            input_ids, text_mask.long(), torch.zeros_like(input_ids), pixels.to(dtype),
            images.pixel_mask.long(), None, None, image_token_type_idx=1,
        )
        mask = mask.bool()
        out = v.encoder(emb, attention_mask=additive_mask(mask, emb.dtype))
        seq = v.layernorm(out[0] if isinstance(out, tuple) else out.last_hidden_state)
        lt = input_ids.shape[1]
        return Encoding(seq, v.pooler(seq), slice(lt, seq.shape[1]), text_mask, mask[:, lt:])
