"""Checkpoints: the official-UNITER converter, transformers model directories, safe loading, errors."""

from __future__ import annotations

import collections

import pytest
import torch
from test_backbones_models import FEAT, TEXTS, WORDS, pixels, regions

from bench.backbones import convert_uniter_state_dict, create_backbone, read_state_dict
from bench.backbones.tokenizer import build_world_tokenizer
from bench.core.errors import CheckpointError

H, LAYERS, INTER, POS = 32, 2, 64, 64


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    (d / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = build_world_tokenizer(d / "vocab.txt")
    tok.save_pretrained(str(d / "tokenizer"))
    return d


def official_uniter_state(vocab: int, old_layer_norm_names: bool = False) -> dict[str, torch.Tensor]:
    """A tiny state dict with the official uniter-base.pt key names and shapes (plus its heads)."""
    g, b = ("gamma", "beta") if old_layer_norm_names else ("weight", "bias")
    t = collections.OrderedDict()

    def lin(name, out_dim, in_dim):
        t[f"{name}.weight"] = torch.randn(out_dim, in_dim)
        t[f"{name}.bias"] = torch.randn(out_dim)

    def ln(name):
        t[f"{name}.{g}"] = 1 + 0.1 * torch.randn(H)
        t[f"{name}.{b}"] = 0.1 * torch.randn(H)

    e = "uniter.embeddings"
    t[f"{e}.word_embeddings.weight"] = torch.randn(vocab, H)
    t[f"{e}.position_embeddings.weight"] = torch.randn(POS, H)
    t[f"{e}.token_type_embeddings.weight"] = torch.randn(2, H)
    ln(f"{e}.LayerNorm")
    i = "uniter.img_embeddings"
    lin(f"{i}.img_linear", H, FEAT)
    ln(f"{i}.img_layer_norm")
    lin(f"{i}.pos_linear", H, 7)
    ln(f"{i}.pos_layer_norm")
    t[f"{i}.mask_embedding.weight"] = torch.cat([torch.zeros(1, FEAT), torch.randn(1, FEAT)])
    ln(f"{i}.LayerNorm")
    for n in range(LAYERS):
        p = f"uniter.encoder.layer.{n}"
        for q in ("query", "key", "value"):
            lin(f"{p}.attention.self.{q}", H, H)
        lin(f"{p}.attention.output.dense", H, H)
        ln(f"{p}.attention.output.LayerNorm")
        lin(f"{p}.intermediate.dense", INTER, H)
        lin(f"{p}.output.dense", H, INTER)
        ln(f"{p}.output.LayerNorm")
    lin("uniter.pooler.dense", H, H)
    # pre-training heads of UniterForPretraining: not backbone weights (pretrained_heads.py maps them)
    lin("cls.predictions.transform.dense", H, H)
    ln("cls.predictions.transform.LayerNorm")
    t["cls.predictions.bias"] = torch.randn(vocab)
    t["cls.predictions.decoder.weight"] = t[f"{e}.word_embeddings.weight"]  # tied
    lin("itm_output", 2, H)
    lin("feat_regress.net.0", H, H)
    ln("feat_regress.net.2")
    t["feat_regress.weight"] = t[f"{i}.img_linear.weight"]  # tied to the image embedder, [H, FEAT]
    t["feat_regress.bias"] = torch.randn(FEAT)
    lin("region_classifier.net.0", H, H)
    ln("region_classifier.net.2")
    lin("region_classifier.net.3", 1601, H)
    return dict(t)


TINY = dict(hidden_size=H, num_layers=LAYERS, num_heads=4, intermediate_size=INTER, max_position=POS, feat_dim=FEAT)


@pytest.mark.parametrize("old_names", [False, True])
def test_converter_maps_official_names(old_names, tokdir):
    vocab = len(build_world_tokenizer(tokdir / "vocab.txt"))
    official = official_uniter_state(vocab, old_names)
    ours = convert_uniter_state_dict({f"module.{k}" if old_names else k: v for k, v in official.items()})
    assert "encoder.layer.1.attention.self.query.weight" in ours
    assert "img_embeddings.pos_linear.weight" in ours and "pooler.dense.weight" in ours
    assert "embeddings.LayerNorm.weight" in ours and not any("gamma" in k or "beta" in k for k in ours)
    assert not any(k.startswith(("cls.", "itm_output", "feat_regress", "uniter.")) for k in ours)
    assert len(ours) == sum(k.startswith("uniter.") for k in official)
    ln = "gamma" if old_names else "weight"
    assert torch.equal(ours["embeddings.LayerNorm.weight"], official[f"uniter.embeddings.LayerNorm.{ln}"])


def test_uniter_base_layout_loads_an_official_pt_file(tokdir, tmp_path):
    vocab = len(build_world_tokenizer(tokdir / "vocab.txt"))
    official = official_uniter_state(vocab)
    torch.save(official, tmp_path / "uniter-base.pt")
    bb = create_backbone("uniter-base", checkpoint=tmp_path / "uniter-base.pt", tokenizer=tokdir / "tokenizer", **TINY)
    assert bb.family == "uniter" and len(bb.prunable_parameters()) == 6 * LAYERS
    w = dict(bb.named_parameters())
    assert torch.equal(w["encoder.layer.1.output.dense.weight"], official["uniter.encoder.layer.1.output.dense.weight"])
    assert torch.equal(w["img_embeddings.img_linear.weight"], official["uniter.img_embeddings.img_linear.weight"])
    enc = bb.encode(TEXTS, [regions(3), regions(4)])
    enc.pooled.sum().backward()
    assert bb.encoder.layer[0].attention.self.query.weight.grad is not None


def test_safetensors_and_wrapped_state_dicts(tokdir, tmp_path):
    from safetensors.torch import save_file

    src = create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", feat_dim=FEAT)
    state = src.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        dst = create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", feat_dim=FEAT,
                              checkpoint=tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_checkpoint_needing_pickle_code_is_refused(tmp_path):
    import argparse

    # Any object other than tensors and plain containers needs pickle code (a class import) to load.
    torch.save({"weights": torch.zeros(2), "args": argparse.Namespace(lr=1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused, the checkpoint needs pickle code") as e:
        read_state_dict(tmp_path / "evil.pt")
    assert "\n" not in str(e.value)


def test_missing_and_unexpected_keys_are_listed(tokdir, tmp_path):
    src = create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", feat_dim=FEAT)
    state = dict(src.state_dict())
    for k in [k for k in state if k.startswith("encoder.layer.1.")]:
        del state[k]
    state["encoder.layer.9.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", feat_dim=FEAT, checkpoint=tmp_path / "bad.pt")
    msg = str(e.value)
    assert "\n" not in msg and "missing 16 keys: encoder.layer.1." in msg and "(+11 more)" in msg
    assert "unexpected 1 keys: encoder.layer.9.extra.weight" in msg
    with pytest.raises(CheckpointError, match="wrong shape"):
        create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", feat_dim=16,
                        checkpoint=_saved(src, tmp_path))
    with pytest.raises(CheckpointError, match="checkpoint file not found|checkpoint not found"):
        create_backbone("toy-uniter", vocab_path=tokdir / "vocab.txt", checkpoint=tmp_path / "nope.pt")


def _saved(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "good.pt")
    return tmp_path / "good.pt"


def test_hub_ids_are_refused_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="runs offline: set backbone.checkpoint"):
        create_backbone("lxmert-base", checkpoint="unc-nlp/lxmert-base-uncased")


def test_lxmert_base_layout_from_a_local_directory(tokdir, tmp_path):
    from transformers import LxmertConfig, LxmertForPreTraining

    tok = build_world_tokenizer(tokdir / "vocab.txt")
    cfg = LxmertConfig(vocab_size=len(tok), hidden_size=H, num_attention_heads=4, intermediate_size=INTER,
                       l_layers=2, x_layers=1, r_layers=1, visual_feat_dim=FEAT, visual_pos_dim=4,
                       num_qa_labels=5, num_object_labels=7, num_attr_labels=3)
    torch.manual_seed(0)
    ref = LxmertForPreTraining(cfg)
    ref.save_pretrained(str(tmp_path / "lxmert"))  # the unc-nlp/lxmert-base-uncased layout
    tok.save_pretrained(str(tmp_path / "lxmert"))
    bb = create_backbone("lxmert-base", checkpoint=tmp_path / "lxmert")
    assert bb.config["feat_dim"] == FEAT and bb.family == "lxmert" and len(bb.prunable_parameters()) == 34
    assert torch.equal(bb.lxmert.encoder.x_layers[0].visn_output.dense.weight,
                       ref.lxmert.encoder.x_layers[0].visn_output.dense.weight)
    bb.encode(TEXTS, [regions(3, pos_dim=4), regions(5, pos_dim=4)]).pooled.sum().backward()


def test_vilt_b32_layout_from_a_local_directory(tokdir, tmp_path):
    from transformers import ViltConfig, ViltForMaskedLM

    tok = build_world_tokenizer(tokdir / "vocab.txt")
    cfg = ViltConfig(vocab_size=len(tok), hidden_size=H, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=INTER, image_size=64, patch_size=16, max_position_embeddings=40)
    torch.manual_seed(0)
    ref = ViltForMaskedLM(cfg)
    ref.save_pretrained(str(tmp_path / "vilt"))  # the dandelin/vilt-b32-mlm layout
    tok.save_pretrained(str(tmp_path / "vilt"))
    bb = create_backbone("vilt-b32", checkpoint=tmp_path / "vilt")
    assert bb.family == "vilt" and len(bb.prunable_parameters()) == 12
    assert torch.equal(bb.vilt.encoder.layer[1].output.dense.weight, ref.vilt.encoder.layer[1].output.dense.weight)
    enc = bb.encode(TEXTS, [pixels(), pixels(seed=1)])
    assert enc.image_mask.shape[1] == 1 + 16  # image [CLS] + 4x4 patches
    enc.pooled.sum().backward()
