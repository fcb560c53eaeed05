"""UNITER: a single-stream BERT encoder over [text tokens; image regions].

Text embedder: transformers' BertEmbeddings (word + position + token type 0 + LayerNorm).
Image embedder (UNITER's): LayerNorm(img_linear(features)) + LayerNorm(pos_linear(7-d position))
+ token-type-1 embedding, then LayerNorm. Encoder and pooler: transformers' BertEncoder/BertPooler.
Parameter names equal the official checkpoint's without its `uniter.` prefix (see convert_uniter.py).

Prunable set (Chen et al.'s BERT tickets): per encoder layer, in layer order, the weights of
attention.self.query, .key, .value, attention.output.dense, intermediate.dense, output.dense.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from bench.backbones.base import Backbone, Encoding, RegionBatch, collate_regions
from bench.backbones.convert_uniter import convert_uniter_state_dict, is_official_uniter


def bert_config(cfg: dict):
    """A transformers BertConfig from a backbone config dict."""
    from transformers import BertConfig

    bc = BertConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_layers"],
        num_attention_heads=cfg["num_heads"],
        intermediate_size=cfg["intermediate_size"],
        max_position_embeddings=cfg["max_position"],
        type_vocab_size=2,
        hidden_dropout_prob=cfg.get("dropout", 0.1),
        attention_probs_dropout_prob=cfg.get("dropout", 0.1),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        pad_token_id=cfg.get("pad_token_id", 0),
    )
    bc._attn_implementation = "sdpa"
    return bc


class UniterImageEmbeddings(nn.Module):
    """Region features and 7-d box positions -> hidden vectors (UNITER's image embedder)."""

    def __init__(self, feat_dim: int, hidden: int, dropout: float, eps: float = 1e-12, pos_dim: int = 7):
        super().__init__()
        self.img_linear = nn.Linear(feat_dim, hidden)
        self.img_layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.pos_linear = nn.Linear(pos_dim, hidden)
        self.pos_layer_norm = nn.LayerNorm(hidden, eps=eps)
        # Added to masked regions during MRM (row 0 stays zero: "not masked").
        self.mask_embedding = nn.Embedding(2, feat_dim, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features, positions, type_embeddings, region_masked=None):
        if region_masked is not None:
            features = features + self.mask_embedding(region_masked.long())
        x = self.img_layer_norm(self.img_linear(features)) + self.pos_layer_norm(self.pos_linear(positions))
        return self.dropout(self.LayerNorm(x + type_embeddings))


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] bool -> [B, 1, 1, L] additive attention mask (0 keep, large negative drop)."""
    return (~mask)[:, None, None, :].to(dtype) * torch.finfo(dtype).min


class UniterBackbone(Backbone):
    arch = "uniter"
    image_input = "regions"

    def __init__(self, preset: str, family: str, config: dict, tokenizer: Any):
        super().__init__(preset, family, config, tokenizer)
        from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertPooler

        bc = bert_config(config)
        self.embeddings = BertEmbeddings(bc)
        self.img_embeddings = UniterImageEmbeddings(
            config["feat_dim"], bc.hidden_size, bc.hidden_dropout_prob, bc.layer_norm_eps
        )
        self.encoder = BertEncoder(bc)
        self.pooler = BertPooler(bc)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def adapt_checkpoint(self, state):
        """Official UNITER files (`uniter.*` keys) are converted; our own files pass through."""
        if is_official_uniter(state):
            state = convert_uniter_state_dict(state)
        return super().adapt_checkpoint(state)

    def collate(self, images: Sequence[Any]) -> RegionBatch:
        b = collate_regions(images, self.config["feat_dim"], 7, self.preset)
        dev = self.device
        return RegionBatch(b.features.to(dev), b.positions.to(dev), b.mask.to(dev))

    def word_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _prunable_prefixes(self) -> list[str]:
        return ["encoder.layer."]

    def _encode_batch(self, input_ids, text_mask, images: RegionBatch, region_masked=None) -> Encoding:
        txt = self.embeddings(input_ids=input_ids)
        img_type = self.embeddings.token_type_embeddings(
            torch.ones(images.features.shape[:2], dtype=torch.long, device=input_ids.device)
        )
        img = self.img_embeddings(
            images.features.to(txt.dtype), images.positions.to(txt.dtype), img_type, region_masked
        )
        hidden = torch.cat([txt, img], dim=1)
        mask = torch.cat([text_mask, images.mask], dim=1)
        out = self.encoder(hidden, attention_mask=additive_mask(mask, hidden.dtype))
        seq = out[0] if isinstance(out, tuple) else out.last_hidden_state
        lt = input_ids.shape[1]
        return Encoding(seq, self.pooler(seq), slice(lt, seq.shape[1]), text_mask, images.mask)

    def encode_tokens(self, input_ids, text_mask, images, region_masked=None) -> Encoding:
        """Encode tokenised text; `region_masked` [B, N] marks regions masked for MRM."""
        return self._encode_batch(input_ids, text_mask, images, region_masked)
