"""Toy backbones of every family: forward/backward, pinned prunable sets, save/load, bad input."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch

from bench.backbones import PRESETS, create_backbone, describe_presets, load_backbone, resolve_device
from bench.core.errors import ConfigError, DataError, TicketbenchError

FEAT = 32
WORDS = "a the red blue green cube sphere cone is left right of above below ? big small".split()


@dataclass
class Regions:  # the image store's RegionFeatures shape
    features: torch.Tensor
    boxes: torch.Tensor
    positions: torch.Tensor


@dataclass
class Pixels:  # the image store's PixelInput shape
    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor


def regions(n: int, feat: int = FEAT, pos_dim: int = 7, seed: int = 0) -> Regions:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.3], dim=1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    pos = torch.cat([boxes, w[:, None], h[:, None], (w * h)[:, None]], 1)[:, :pos_dim]
    return Regions(torch.randn(n, feat, generator=g), boxes, pos)


def pixels(size: int = 64, seed: int = 0) -> Pixels:
    g = torch.Generator().manual_seed(seed)
    return Pixels(torch.rand(3, size, size, generator=g) * 2 - 1, torch.ones(size, size, dtype=torch.long))


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    p = tmp_path_factory.mktemp("world") / "vocab.txt"
    p.write_text("\n".join(WORDS) + "\n")
    return p


def build(preset, vocab, **kw):
    torch.manual_seed(0)
    extra = {} if preset == "toy-vilt" else {"feat_dim": FEAT}
    return create_backbone(preset, vocab_path=vocab, **extra, **kw)


def images_for(bb, n=2):
    if bb.image_input == "pixels":
        return [pixels(seed=i) for i in range(n)]
    return [regions(3 + 2 * i, seed=i) for i in range(n)]


TEXTS = ["a red cube", "the blue sphere is left of the big green cone ?"]

# Pinned prunable sets: (count, first names, last name). Changing them invalidates stored tickets.
PINNED = {
    "toy-uniter": (12, [
        "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.key.weight",
        "encoder.layer.0.attention.self.value.weight", "encoder.layer.0.attention.output.dense.weight",
        "encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.output.dense.weight"],
        "encoder.layer.1.output.dense.weight"),
    "toy-lxmert": (28, [
        "lxmert.encoder.layer.0.attention.self.query.weight", "lxmert.encoder.layer.0.attention.self.key.weight",
        "lxmert.encoder.layer.0.attention.self.value.weight", "lxmert.encoder.layer.0.attention.output.dense.weight",
        "lxmert.encoder.layer.0.intermediate.dense.weight", "lxmert.encoder.layer.0.output.dense.weight"],
        "lxmert.encoder.x_layers.0.visn_output.dense.weight"),
    "toy-vilt": (12, [
        "vilt.encoder.layer.0.attention.attention.query.weight", "vilt.encoder.layer.0.attention.attention.key.weight",
        "vilt.encoder.layer.0.attention.attention.value.weight", "vilt.encoder.layer.0.attention.output.dense.weight",
        "vilt.encoder.layer.0.intermediate.dense.weight", "vilt.encoder.layer.0.output.dense.weight"],
        "vilt.encoder.layer.1.output.dense.weight"),
}


@pytest.mark.parametrize("preset", ["toy-uniter", "toy-lxmert", "toy-vilt"])
def test_forward_backward_and_shapes(preset, vocab):
    bb = build(preset, vocab)
    assert 0.1e6 <= bb.num_parameters() <= 1.5e6  # toy width: the default run's CPU budget
    assert bb.family == "toy" and bb.preset == preset
    enc = bb.encode(TEXTS, images_for(bb))
    b, length, h = enc.sequence.shape
    assert (b, h) == (2, bb.hidden_size) and enc.pooled.shape == (2, h)
    lt = enc.text_mask.shape[1]
    assert enc.image_slice == slice(lt, length) and enc.image_token_slice == enc.image_slice
    assert enc.image_mask.shape == (2, length - lt)
    assert enc.text_mask.sum(1).tolist()[0] < enc.text_mask.sum(1).tolist()[1]
    if bb.image_input == "regions":  # 3 and 5 regions, padded to 5
        assert enc.image_mask.sum(1).tolist() == [3, 5]
    (enc.pooled.pow(2).mean() + enc.sequence.mean()).backward()
    grads = [p.grad for _, p in bb.prunable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("preset", list(PINNED))
def test_prunable_parameters_pinned(preset, vocab):
    bb = build(preset, vocab)
    named = bb.prunable_parameters()
    count, first, last = PINNED[preset]
    names = [n for n, _ in named]
    assert len(named) == count and names[:6] == first and names[-1] == last
    assert len(set(names)) == len(names)
    params = dict(bb.named_parameters())
    assert all(params[n] is p and p.ndim == 2 for n, p in named)
    assert not any(k in n for n in names for k in ("embedding", "LayerNorm", "pooler", "bias", "visn_fc"))
    if preset == "toy-lxmert":  # language, then vision (r_layers), then cross-modality layers
        order = [n.split(".")[2] for n in names]
        assert order == ["layer"] * 6 + ["r_layers"] * 6 + ["x_layers"] * 16
    fp = bb.fingerprint()
    assert fp == build(preset, vocab).fingerprint()
    assert fp != build(preset, vocab, hidden_size=32, intermediate_size=128).fingerprint()


def test_unpadded_regions_do_not_change_outputs(vocab):
    """Padding a batch with a bigger image must not change another example's encoding."""
    bb = build("toy-uniter", vocab).eval()
    one = regions(3, seed=5)
    with torch.no_grad():
        alone = bb.encode(TEXTS[:1], [one]).pooled
        batched = bb.encode([TEXTS[0], TEXTS[1]], [one, regions(9, seed=6)]).pooled[:1]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_lxmert_accepts_4d_and_uniter_derives_7d(vocab):
    bb = build("toy-lxmert", vocab)
    assert bb.encode(TEXTS, [regions(4, pos_dim=4), regions(2, pos_dim=7)]).pooled.shape == (2, 64)
    bb = build("toy-uniter", vocab)
    assert bb.encode(TEXTS, [regions(4, pos_dim=4), regions(2, pos_dim=7)]).pooled.shape == (2, 64)


@pytest.mark.parametrize("preset", ["toy-uniter", "toy-lxmert", "toy-vilt"])
def test_save_and_load_roundtrip(preset, vocab, tmp_path):
    bb = build(preset, vocab).eval()
    bb.save(tmp_path / "bb")
    assert {p.name for p in (tmp_path / "bb").iterdir()} >= {"model.safetensors", "backbone.json", "tokenizer"}
    back = load_backbone(tmp_path / "bb").eval()
    assert (back.preset, back.family, back.arch) == (bb.preset, bb.family, bb.arch)
    assert back.fingerprint() == bb.fingerprint()
    imgs = images_for(bb)
    torch.manual_seed(1)
    with torch.no_grad():
        a = bb.encode(TEXTS, imgs).pooled
        torch.manual_seed(1)
        b = back.encode(TEXTS, imgs).pooled
    assert torch.allclose(a, b, atol=1e-6)
    assert back.tokenizer(TEXTS[1])["input_ids"] == bb.tokenizer(TEXTS[1])["input_ids"]


def test_tokenizer_is_word_level_with_specials(vocab):
    tok = build("toy-uniter", vocab).tokenizer
    ids = tok("A red cube?")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "a", "red", "cube", "?", "[SEP]"]
    assert tok.convert_ids_to_tokens(tok("a purple cube")["input_ids"])[2] == "[UNK]"
    assert tok.pad_token_id == 0 and tok.mask_token == "[MASK]"


def test_tokenisation_is_cached_per_text(vocab):
    bb = build("toy-uniter", vocab)
    bb.tokenize(TEXTS)
    assert set(bb._token_cache) == set(TEXTS)
    ids, mask = bb.tokenize([TEXTS[1], TEXTS[1]])
    assert torch.equal(ids[0], ids[1]) and mask.all()


def test_long_text_is_truncated_with_a_warning(vocab):
    bb = build("toy-uniter", vocab, max_text_len=8)
    long_text = " ".join(["red cube"] * 20)
    with pytest.warns(UserWarning, match="truncated to max_text_len=8"):
        ids, mask = bb.tokenize([long_text])
    assert ids.shape == (1, 8) and ids[0, -1] == bb.tokenizer.sep_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bb.tokenize([long_text + " a"])  # warned once per backbone
    with pytest.raises(ConfigError, match="exceeds the position table"):
        build("toy-uniter", vocab, max_text_len=100)


def test_finetune_max_text_len_is_applied_at_tokenisation(vocab):
    """`finetune.max_text_len` (the runner calls set_max_text_len): longer texts are cut to it,
    capped by the position table; a cached tokenisation of the old length is not reused."""
    bb = build("toy-uniter", vocab)  # preset: 40
    long_text = " ".join(["red cube"] * 40)
    with pytest.warns(UserWarning):
        assert bb.tokenize([long_text])[0].shape == (1, 40)
    with pytest.warns(UserWarning, match="max_text_len=12"):
        assert bb.set_max_text_len(12).tokenize([long_text])[0].shape == (1, 12)
    assert bb.tokenize([TEXTS[0]])[0].shape[1] < 12  # short texts are not padded to the cap
    with pytest.warns(UserWarning):
        assert bb.set_max_text_len(220).tokenize([long_text])[0].shape == (1, 64)  # the position table
    with pytest.raises(ConfigError, match="at least 2"):
        bb.set_max_text_len(1)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(TicketbenchError, match=r"unknown backbone preset 'toy-unitr' \(did you mean 'toy-uniter'\?\)") as e:
        create_backbone("toy-unitr")
    assert "\n" not in str(e.value)


def test_unknown_override_and_missing_tokenizer(vocab):
    with pytest.raises(ConfigError, match="unknown override 'hiden_size'.*hidden_size"):
        create_backbone("toy-uniter", vocab_path=vocab, hiden_size=64)
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        create_backbone("toy-uniter")
    with pytest.raises(ConfigError, match="needs checkpoint"):
        create_backbone("uniter-base")


def test_wrong_region_feature_dimension_is_one_line_error(vocab):
    bb = build("toy-uniter", vocab)
    with pytest.raises(DataError, match=r"image #1: region features have shape \(4, 16\).*expects \[n, 32\]") as e:
        bb.encode(TEXTS, [regions(3), regions(4, feat=16)])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="takes region features"):
        bb.encode(TEXTS[:1], [pixels()])
    with pytest.raises(DataError, match="takes pixels"):
        build("toy-vilt", vocab).encode(TEXTS[:1], [regions(3)])


def test_presets_registry_and_description():
    assert set(PRESETS.names()) >= {"toy-uniter", "toy-lxmert", "toy-vilt", "minilm-uniter",
                                     "uniter-base", "lxmert-base", "vilt-b32"}
    text = describe_presets()
    lines = text.splitlines()
    assert len(lines) == 1 + len(PRESETS.names())
    row = next(line for line in lines if line.startswith("uniter-base"))
    assert "regions" in row and "M" in row and "uniter-base.pt" in row
    assert "pixels" in next(line for line in lines if line.startswith("vilt-b32"))
    assert PRESETS.get("toy-vilt").image_input == "pixels"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="backbone.device"):
        resolve_device("tpu:9")
