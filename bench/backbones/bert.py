"""BERT: the text-only backbone of the BERT lottery study (Chen et al., NeurIPS 2020).

transformers' `BertModel` (with its pooler) for any BERT-architecture checkpoint given by path: a
`save_pretrained` folder or weights file of `BertModel`, `BertForMaskedLM` or `BertForPreTraining`
(`bert.`-prefixed keys; the MLM head `cls.predictions.*` goes to `pretrained_heads`, in the names of
`bench.backbones.text_model.MLMHead`, so the MLM ticket source starts from it). A checkpoint without
a pooler (`BertForMaskedLM`) leaves the pooler freshly initialised, as transformers does.

The prunable set is Chen et al.'s: the query, key, value and attention-output matrices and both FFN
matrices of every encoder layer (72 in BERT-base), in that order per layer. Not pruned: the
embeddings, biases, LayerNorms, the pooler and the task and MLM heads. Their paper defines the
prunable set as the encoder's matrices; their released code also pruned the pooler
(LT_glue.py, `pruning_model`) — we follow the paper: the pooler exists only for the
classification heads (SQuAD and MLM never read it), so pruning it would make the tickets of
different task kinds prune different sets (tests/test_bert.py pins the choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from bench.backbones.base import Backbone, Encoding
from bench.backbones.checkpoint import load_state_into, read_state_dict, resolve_checkpoint, weights_file
from bench.core.errors import CheckpointError, DataError

# transformers' MLM head (BertOnlyMLMHead) -> ours (text_model.MLMHead): a BERT checkpoint's pre-trained head
MLM_HEAD_NAMES = {
    "cls.predictions.transform.dense.weight": "transform.weight",
    "cls.predictions.transform.dense.bias": "transform.bias",
    "cls.predictions.transform.LayerNorm.weight": "norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "norm.bias",
    "cls.predictions.bias": "bias",
}


def bert_config(config: dict):
    """transformers' BertConfig of a preset's config dict."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=int(config["vocab_size"]), hidden_size=int(config["hidden_size"]),
        num_hidden_layers=int(config["num_layers"]), num_attention_heads=int(config["num_heads"]),
        intermediate_size=int(config["intermediate_size"]), max_position_embeddings=int(config["max_position"]),
        type_vocab_size=int(config.get("type_vocab_size", 2)), hidden_dropout_prob=float(config["dropout"]),
        attention_probs_dropout_prob=float(config["dropout"]), pad_token_id=int(config.get("pad_token_id", 0)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)))


def config_from_bert(raw: dict) -> dict:
    """A transformers BERT config.json -> this family's config keys (a text cap of 128 tokens)."""
    try:
        return {"hidden_size": raw["hidden_size"], "num_layers": raw["num_hidden_layers"],
                "num_heads": raw["num_attention_heads"], "intermediate_size": raw["intermediate_size"],
                "max_position": raw["max_position_embeddings"], "vocab_size": raw["vocab_size"],
                "type_vocab_size": raw.get("type_vocab_size", 2), "dropout": raw.get("hidden_dropout_prob", 0.1),
                "layer_norm_eps": raw.get("layer_norm_eps", 1e-12),
                # run_glue's max_seq_length; SQuAD's 384 is finetune.max_text_len (Backbone.set_max_text_len)
                "max_text_len": min(128, raw["max_position_embeddings"])}
    except KeyError as e:
        raise CheckpointError(f"config.json: missing field {e} (expected a BERT config)") from None


def _normalise(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old BERT checkpoints name LayerNorm parameters gamma / beta, and some keep a `module.` prefix."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        head, _, last = k.rpartition(".")
        out[f"{head}.{ {'gamma': 'weight', 'beta': 'bias'}.get(last, last)}" if head else last] = v
    return out


class BertBackbone(Backbone):
    """transformers' BertModel under `bert.`; `encode_text` gives the sequence and the pooled [CLS]."""

    arch = "bert"
    image_input = "none"
    hf_prefix = "bert."

    def __init__(self, preset: str, family: str, config: dict, tokenizer: Any):
        super().__init__(preset, family, config, tokenizer)
        from transformers import BertModel

        self.bert = BertModel(bert_config(config), add_pooling_layer=True)

    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def _prunable_prefixes(self) -> list[str]:
        return ["bert.encoder.layer."]

    def collate(self, images: Sequence[Any]):
        raise DataError(f"{self.preset}: a text-only backbone takes no images")

    def _encode_batch(self, input_ids, text_mask, images) -> Encoding:
        raise DataError(f"{self.preset}: a text-only backbone takes no images: use encode_text")

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> Encoding:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask.long(), token_type_ids=token_type_ids)
        empty = torch.zeros(input_ids.shape[0], 0, dtype=torch.bool, device=input_ids.device)
        return Encoding(sequence=out.last_hidden_state, pooled=out.pooler_output, image_slice=slice(0, 0),
                        text_mask=attention_mask.bool(), image_mask=empty)

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = {k: v for k, v in _normalise(state).items() if not k.startswith("cls.")}
        return super().adapt_checkpoint(state)

    def load_pretrained(self, path_or_id: str | Path) -> "BertBackbone":
        """Weights of a BERT checkpoint (file or transformers folder); its MLM head to `pretrained_heads`;
        a missing pooler (BertForMaskedLM) stays fresh. Anything else missing or unexpected is an error."""
        p = resolve_checkpoint(path_or_id)
        raw = _normalise(read_state_dict(weights_file(p) if p.is_dir() else p))
        if all(k in raw for k in MLM_HEAD_NAMES):
            self.pretrained_heads = {ours: raw[theirs] for theirs, ours in MLM_HEAD_NAMES.items()}
        state = self.adapt_checkpoint(raw)
        pooler = () if any(k.startswith("bert.pooler.") for k in state) else ("bert.pooler.",)
        load_state_into(self, state, what=str(path_or_id), allow_missing=pooler)
        return self

    def has_pretrained_mlm_head(self) -> bool:
        return bool(self.pretrained_heads)
