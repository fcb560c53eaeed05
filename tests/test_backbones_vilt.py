"""toy-vilt's pixel path end to end (issue 19): picture file -> PixelStore -> collate -> ViltBackbone.

toy-vilt stayed at chance on toyland until its tagging phase (TAG); these pin the plumbing that was
checked and found right, so a later regression cannot hide behind "the model is just slow": the pixels are the picture's (RGB order,
[0, 255] -> [-1, 1]), every image token is real and the text part of the mask is the text mask, the
pooled output depends on the image, and ITM's gradient reaches the patch projection and the
patch-position and image-[CLS] embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones import create_backbone
from bench.backbones.pretrain_model import PretrainModel
from bench.data.images import normalise_pixels, open_image_store
from bench.tasks.base import Example

WORDS = "a the red blue green square circle is left right of".split()
COLOURS = {"red": (215, 45, 40), "blue": (40, 80, 215), "green": (40, 160, 60)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three 64-px pictures, a grey background with one coloured square each, and a vocab."""
    root = tmp_path_factory.mktemp("vilt")
    (root / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    pics = root / "images"
    pics.mkdir()
    for i, rgb in enumerate(COLOURS.values()):
        arr = np.full((64, 64, 3), 220, np.uint8)
        arr[8 + 10 * i: 26 + 10 * i, 20:38] = rgb
        Image.fromarray(arr).save(pics / f"{i}.png")
    return root


def backbone(world):
    torch.manual_seed(0)
    return create_backbone("toy-vilt", vocab_path=world / "vocab.txt")


def test_pixels_are_the_pictures_rgb_scaled_to_unit_range(world):
    store = open_image_store("pixels", world / "images", shorter=64)
    for i in range(3):
        raw = np.asarray(Image.open(world / "images" / f"{i}.png").convert("RGB")).astype(np.float32)
        got = store.get(str(i))
        assert tuple(got.pixel_values.shape) == (3, 64, 64)  # no resize, no crop at the preset's size
        assert got.pixel_values.dtype == torch.uint8  # as resized: normalised on the device
        np.testing.assert_allclose(normalise_pixels(got.pixel_values).numpy().transpose(1, 2, 0), raw / 127.5 - 1,
                                   atol=1e-6)
        assert bool(got.pixel_mask.all())


def test_image_tokens_are_real_and_differ_between_images(world):
    bb = backbone(world)
    store = open_image_store("pixels", world / "images", shorter=64)
    images = [store.get(str(i)) for i in range(3)]
    texts = ["a red square", "the blue circle is left of a green square", "a green circle"]
    ids, text_mask = bb.tokenize(texts)
    batch = bb.collate(images)
    enc = bb.encode_tokens(ids, text_mask, batch)
    lt = ids.shape[1]
    assert enc.image_slice == slice(lt, lt + 1 + 16)  # image [CLS] + (64 / 16)^2 patches
    assert bool(enc.image_mask.all())  # nothing of the image is masked out
    assert torch.equal(enc.text_mask, text_mask)
    patches = bb.vilt.embeddings.patch_embeddings(batch.pixel_values).flatten(2)
    assert patches.var(0).mean() > 1e-3  # the projection sees different pictures
    with torch.no_grad():  # one caption, three pictures: the pooled output moves with the picture
        pooled = bb.encode([texts[0]] * 3, images).pooled
    assert pooled.std(0).mean() > 1e-3


def test_itm_gradient_reaches_the_patch_path(world):
    bb = backbone(world)
    store = open_image_store("pixels", world / "images", shorter=64)
    model = PretrainModel(bb)
    examples = [Example(str(i), (str(i),), (t,), None) for i, t in enumerate(["a red square", "a blue square", "a green square"])]
    torch.manual_seed(1)
    model.loss(examples, store, {"itm": 1.0})["itm"].backward()
    emb = bb.vilt.embeddings
    for name, p in [("patch projection", emb.patch_embeddings.projection.weight),
                    ("patch positions", emb.position_embeddings), ("image [CLS]", emb.cls_token)]:
        assert p.grad is not None and p.grad.norm() > 0, name


def test_tagging_reads_the_image_alone_and_targets_the_captions_words(world):
    """TAG (the toy stand-in for ViLT's ViT init): the logits come from the image with one [CLS] token
    — no caption word reaches the encoder — and the target is the caption's bag of non-special words."""
    import torch.nn.functional as F

    bb = backbone(world)
    store = open_image_store("pixels", world / "images", shorter=64)
    assert "tag" not in PretrainModel(bb).heads  # only when the plan trains it (a vocabulary-sized head)
    model = PretrainModel(bb, tagging=True)
    ex = [Example("0", ("0",), ("a red square is left of the square",), None),
          Example("1", ("1",), ("a blue circle",), None)]
    loss = model.loss(ex, store, {"tag": 1.0})["tag"]
    ids, mask = bb.tokenize(["[CLS]"] * 2)  # any text: only its [CLS] is read
    enc = bb.encode_tokens(ids[:, :1], mask[:, :1], bb.collate([store.get("0"), store.get("1")]))
    logits = model.heads["tag"](enc.pooled)
    vocab = bb.tokenizer.get_vocab()
    target = torch.zeros_like(logits)
    for row, words in enumerate([["a", "red", "square", "is", "left", "of", "the"], ["a", "blue", "circle"]]):
        target[row, [vocab[w] if w in vocab else vocab["[UNK]"] for w in words]] = 1.0
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, target), atol=1e-6)
    # Other captions change the target, never the logits: the image alone is read.
    other = [Example("0", ("0",), ("blue",), None), Example("1", ("1",), ("green square",), None)]
    target2 = torch.zeros_like(logits)
    target2[0, vocab["blue"]] = target2[1, vocab["green"]] = target2[1, vocab["square"]] = 1.0
    loss2 = model.loss(other, store, {"tag": 1.0})["tag"]
    assert torch.allclose(loss2, F.binary_cross_entropy_with_logits(logits, target2), atol=1e-6)
    loss.backward()
    assert bb.vilt.embeddings.patch_embeddings.projection.weight.grad.norm() > 0


def test_tagging_leads_pixel_pretraining_and_is_dropped_for_region_backbones():
    """`pretrain.tag_fraction` × steps of TAG is a first phase for pixel backbones only (a region backbone reads a
    detector's features, which already name what the regions show); TAG in a mix is dropped for them."""
    from bench.config import load_config
    from bench.core.errors import ConfigError
    from bench.plan import build_plan

    vilt = build_plan(load_config("toyland-backbones", ["backbone.preset=toy-vilt"]))
    p = vilt.config.pretrain
    assert vilt.phases[0].objectives == (("tag", 1.0),) and vilt.phases[0].steps == round(p.tag_fraction * p.steps) > 0
    assert vilt.tagging and sum(p.steps for p in vilt.phases[1:]) == vilt.config.pretrain.steps
    uniter = build_plan(load_config("toyland-backbones", ["pretrain.objectives=itm:2,mlm:1,mrm:1,tag:1"]))
    assert all(n != "tag" for p in uniter.phases for n, _ in p.objectives) and not uniter.tagging
    assert not build_plan(load_config("toyland-backbones", ["backbone.preset=toy-vilt", "pretrain.tag_fraction=0"])).tagging
    with pytest.raises(ConfigError, match="pretrain.tag_fraction.*≥ 0.*-1"):
        build_plan(load_config("toyland-backbones", ["backbone.preset=toy-vilt", "pretrain.tag_fraction=-1"]))
