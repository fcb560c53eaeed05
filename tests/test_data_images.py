"""Region-feature stores (UNITER npz, LXMERT TSV, optional LMDB) and the ViLT pixel store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.releases import needs_img_db
from fixtures.task_files import FEAT_DIM, REGION_BOXES, H, W, region_features, write_features

from bench.core.errors import DataError
from bench.data.images import (
    PixelInput,
    RegionFeatures,
    image_size,
    normalise_pixels,
    open_image_store,
    resize_pictures,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    write_features(root)
    return root


def test_uniter_npz_store(root):
    store = open_image_store("uniter", root / "features" / "uniter")
    assert store.ids() == ["img1", "img2"] and store.feat_dim == FEAT_DIM
    r = store.get("img1")
    assert isinstance(r, RegionFeatures) and r.features.dtype == torch.float32
    assert r.positions.shape == (3, 7) and r.boxes.shape == (3, 4)
    np.testing.assert_allclose(r.features.numpy(), region_features("img1"))
    np.testing.assert_allclose(r.boxes[1].numpy(), [0.6, 0.2, 0.8, 0.6], rtol=1e-6)
    np.testing.assert_allclose(r.positions[1, 4:].numpy(), [0.2, 0.4, 0.08], rtol=1e-6)
    assert store.get("img1") is r  # cached


def test_lxmert_tsv_store_matches_uniter(root):
    tsv = open_image_store("lxmert", root / "features" / "lxmert")
    uni = open_image_store("uniter", root / "features" / "uniter")
    assert tsv.ids() == ["img1", "img2"] and tsv.feat_dim == FEAT_DIM
    r = tsv.get("img2")
    assert r.positions.shape == (3, 4)
    np.testing.assert_allclose(r.boxes.numpy(), REGION_BOXES / np.array([W, H, W, H]), rtol=1e-6)
    np.testing.assert_allclose(r.features.numpy(), uni.get("img2").features.numpy())
    one_file = open_image_store("lxmert", root / "features" / "lxmert" / "features.tsv")
    assert one_file.ids() == ["img1", "img2"]


@pytest.mark.parametrize("kind, sub", [("uniter", "features/uniter"), ("lxmert", "features/lxmert"), ("pixels", "images")])
def test_missing_image_is_one_line_error(root, kind, sub):
    store = open_image_store(kind, root / sub, **({"shorter": 32} if kind == "pixels" else {}))
    with pytest.raises(DataError) as e:
        store.get("nope")
    assert str(e.value).startswith("image nope has no") and str(root / sub) in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_tsv_row(tmp_path):
    (tmp_path / "f.tsv").write_text("img\t1\t2\n")
    with pytest.raises(DataError, match=r"f.tsv:1: expected 10 tab-separated fields"):
        open_image_store("lxmert", tmp_path / "f.tsv")


def test_bad_npz_and_unknown_kind(tmp_path):
    np.savez(tmp_path / "x.npz", features=np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match="missing array 'norm_bb'"):
        open_image_store("uniter", tmp_path).get("x")
    with pytest.raises(DataError, match="did you mean 'pixels'"):
        open_image_store("pixel", tmp_path)


def test_pixel_store_resizes_like_vilt(root):
    store = open_image_store("pixels", root / "images", shorter=64)
    # 100x50 -> shorter side 64 would make the longer 128 > 1333/800 * 64 = 106, so the longer is
    # capped at 106 (shorter 53), then both round down to multiples of 32: 96 x 32
    p = store.get("img1")
    assert isinstance(p, PixelInput) and p.pixel_values.shape == (3, 32, 96)
    assert p.pixel_mask.shape == (32, 96) and bool(p.pixel_mask.all())
    # uint8 as resized; grey 200 normalised on the device with mean = std = 0.5
    assert p.pixel_values.dtype == torch.uint8
    assert normalise_pixels(p.pixel_values).mean().item() == pytest.approx((200 / 255 - 0.5) / 0.5, abs=1e-2)
    assert store.ids() == ["img1", "img2"] and store.feat_dim == 3


def test_lmdb_store(root, tmp_path):
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"img1", (root / "features" / "uniter" / "img1.npz").read_bytes())
    env.close()
    store = open_image_store("uniter", tmp_path / "db")
    assert store.ids() == ["img1"] and store.get("img1").positions.shape == (3, 7)


# ---- UNITER img_db (tests/fixtures/releases.py) -----------------------------------------------


@pytest.fixture(scope="module")
def img_db(tmp_path_factory):
    from fixtures.releases import write_img_db

    return write_img_db(tmp_path_factory.mktemp("release"))


@needs_img_db
def test_img_db_msgpack_lmdb_in_release_layout(img_db):
    from fixtures.releases import FEAT_DIM, feats, norm_bb6

    store = open_image_store("uniter", img_db / "coco_train2014")  # the img_db folder, not the LMDB
    assert store.ids() == ["coco_train2014_000000000001.npz", "coco_train2014_000000000002.npz"]  # no __keys__
    assert store.feat_dim == FEAT_DIM
    r = store.get("coco_train2014_000000000001.npz")
    assert r.features.dtype == torch.float16  # kept fp16 until the batch is built
    np.testing.assert_allclose(r.features.float().numpy(), feats("coco", "1", 12), atol=1e-2)
    # 6-d norm_bb + the area UNITER computes at load
    assert r.positions.shape == (12, 7)
    bb = norm_bb6(12)
    np.testing.assert_allclose(r.positions[:, 6].numpy(), bb[:, 4] * bb[:, 5], atol=2e-3)
    np.testing.assert_allclose(r.boxes.numpy(), bb[:, :4], atol=2e-3)
    assert "coco_train2014_000000000001" in store  # with or without .npz


@needs_img_db
def test_img_db_box_selection_follows_the_db_name(img_db):
    # all/: every box stored; UNITER's rule keeps conf > 0.2 (12 of 14), between 10 and 100
    assert open_image_store("uniter", img_db / "coco_val2014").get("coco_val2014_000000000003.npz").features.shape[0] == 12
    from bench.data.images import BoxPolicy

    few = open_image_store("uniter", img_db / "coco_val2014", policy=BoxPolicy(0.2, 2, 5))
    assert few.get("coco_val2014_000000000003.npz").features.shape[0] == 5
    # feat_numbb100/ (RefCOCO+'s gt boxes, conf_th -1): the first 100, i.e. all 14
    gt = open_image_store("uniter", img_db / "re_coco_gt")
    assert gt.get("visual_grounding_coco_gt_000000000001.npz").features.shape[0] == 14


@needs_img_db
def test_img_db_reads_msgpack_numpy_values(tmp_path):
    mn = pytest.importorskip("msgpack_numpy")
    import msgpack
    from fixtures.releases import write_lmdb

    a = np.arange(20, dtype=np.float16).reshape(2, 10)
    bb = np.array([[0, 0, 0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.3, 0.9, 0.2, 0.8]], np.float16)
    value = msgpack.packb({"features": a, "norm_bb": bb, "conf": np.ones(2, np.float16)},
                          default=mn.encode, use_bin_type=True)
    write_lmdb(tmp_path / "x" / "feat_th0.2_max100_min10", {"k.npz": value})
    r = open_image_store("uniter", tmp_path / "x").get("k.npz")
    np.testing.assert_array_equal(r.features.numpy(), a)
    assert r.positions[1, 6].item() == pytest.approx(0.2 * 0.8, abs=1e-3)


@needs_img_db
def test_img_db_malformed_value_is_one_line(tmp_path):
    from fixtures.releases import write_lmdb

    write_lmdb(tmp_path / "db" / "all", {"bad.npz": b"\xc1\xc1 not msgpack", "list.npz": b"\x93\x01\x02\x03"})
    store = open_image_store("uniter", tmp_path / "db")
    for key, what in (("bad.npz", "malformed LMDB value"), ("list.npz", "found list")):
        with pytest.raises(DataError) as e:
            store.get(key)
        msg = str(e.value)
        assert "\n" not in msg and f"[{key}]" in msg and what in msg and str(tmp_path / "db" / "all") in msg


@needs_img_db
def test_img_db_refuses_object_arrays(tmp_path):
    import msgpack
    from fixtures.releases import write_lmdb

    evil = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"cos\nsystem\n."}
    write_lmdb(tmp_path / "db" / "all", {"e.npz": msgpack.packb({"features": evil}, use_bin_type=True)})
    with pytest.raises(DataError, match="unsupported array encoding"):
        open_image_store("uniter", tmp_path / "db").get("e.npz")


def test_npz_folder_with_6d_boxes(tmp_path):
    from fixtures.releases import norm_bb6

    np.savez(tmp_path / "a.npz", features=np.ones((3, 4), np.float16), norm_bb=norm_bb6(3), conf=np.ones(3))
    np.savez(tmp_path / "b.npz", features=np.ones((3, 4), np.float32), norm_bb=np.ones((3, 5), np.float32))
    store = open_image_store("uniter", tmp_path)
    assert store.get("a").positions.shape == (3, 7) and store.get("a").features.dtype == torch.float16
    with pytest.raises(DataError, match=r"b.npz: expected features \[n, D\] and norm_bb \[n, 6 or 7\]"):
        store.get("b")


# ---- memory: bounded caches, lazy TSV ---------------------------------------------------------


def test_lru_cache_stays_under_its_bound():
    from bench.data.images import LRUCache

    cache = LRUCache(max_mb=1)
    item = lambda: RegionFeatures(torch.zeros(100, 1000), torch.zeros(100, 4), torch.zeros(100, 7))  # noqa: E731
    size = item().nbytes  # ~0.4 MB
    for k in range(10):
        cache.put(str(k), item())
        assert cache.bytes <= cache.max_bytes
    assert len(cache) == (1 << 20) // size and "9" in cache and "0" not in cache
    cache.get("8")
    cache.put("10", item())
    assert "8" in cache and "9" not in cache  # least recently used goes first


def test_store_cache_is_bounded(root):
    store = open_image_store("uniter", root / "features" / "uniter", cache_mb=0)
    a = store.get("img1")
    assert len(store.cache) == 0 and store.get("img1") is not a  # nothing kept, read again
    np.testing.assert_array_equal(a.features.numpy(), store.get("img1").features.numpy())


def test_tsv_is_indexed_not_loaded(tmp_path):
    from fixtures.releases import feats, tsv_row

    tsv = tmp_path / "f.tsv"
    tsv.write_text(tsv_row("COCO_val2014_000000000003", feats("coco", "3", 36)) + "\n"
                   + tsv_row("2", feats("vg", "2", 36)))
    store = open_image_store("lxmert", tsv)
    assert store.ids() == ["2", "COCO_val2014_000000000003"] and len(store.cache) == 1  # feat_dim read one row
    np.testing.assert_array_equal(store.get("2").features.numpy(), feats("vg", "2", 36))
    with open(tsv, "a") as fh:
        fh.write("3\t50\t100\n")
    with pytest.raises(DataError) as e:
        open_image_store("lxmert", tsv)
    assert str(e.value).startswith(f"{tsv}:4: expected 10 tab-separated fields") and "found 3" in str(e.value)


def test_pixel_tree_lookup(tmp_path):
    from fixtures.releases import write_pictures

    pics = write_pictures(tmp_path)
    store = open_image_store("pixels", pics, shorter=64)
    # flat hit, then nested (NLVR2 train/<dir>/, VCR vcr1images/<movie>/) through the tree index
    assert "train-1-0-img0" in store and "3001_FILM_00.00.01.000-00.00.02.000@0" in store
    assert store.get("train-1-0-img0").pixel_values.shape[0] == 3
    assert "nope" not in store


def test_tsv_memory_stays_within_bounds(tmp_path):
    """Opening indexes (memory ~ the index, not the file); reads stay within the cache bound."""
    import random
    import tracemalloc

    from fixtures.releases import tsv_row

    rng = np.random.default_rng(0)
    tsv = tmp_path / "train2014_obj36.tsv"
    with open(tsv, "w") as fh:
        for i in range(48):  # 36 boxes x 2048-d float32 a row, as LXMERT's: ~0.4 MB of base64 each
            fh.write(tsv_row(f"COCO_train2014_{i:012d}", rng.standard_normal((36, 2048)).astype(np.float32)))
    size = tsv.stat().st_size
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = open_image_store("lxmert", tsv, cache_mb=2)
        opened = tracemalloc.get_traced_memory()[0] - base
        random.seed(0)
        ids = store.ids()
        for _ in range(60):  # cache of 2 MB: ~7 of the 48 rows fit
            store.get(random.choice(ids))
        after = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert size > 18 * 2**20
    assert opened < 0.1 * size  # the index and one decoded row (feat_dim), not the file
    assert store.cache.bytes <= 2 * 2**20 and after < 2 * 2**20 + 0.05 * size



@needs_img_db
def test_img_db_soft_labels_follow_the_kept_boxes(img_db):
    """UNITER's img_db values carry the detector's soft labels (MRC-kl's target), cut with the boxes
    and kept fp16 like the features."""
    from bench.data.images import BoxPolicy

    full = open_image_store("uniter", img_db / "coco_val2014").get("coco_val2014_000000000003.npz")
    assert full.soft_labels.shape == (12, 1601) and full.soft_labels.dtype == torch.float16
    few = open_image_store("uniter", img_db / "coco_val2014", policy=BoxPolicy(0.2, 2, 5))
    assert few.get("coco_val2014_000000000003.npz").soft_labels.shape == (5, 1601)


# ---- what the host does per picture and per example (issue 27 item 3) -----------------------------


@pytest.mark.parametrize("width, height", [(100, 50), (640, 480), (333, 500), (1000, 200)])
def test_pixels_are_vilts_processor_bit_for_bit(tmp_path, width, height):
    """PIL's bicubic resize kept as uint8 and normalised by table on the device equals transformers'
    ViltImageProcessor output exactly (the normalisation moved, not the numbers)."""
    from PIL import Image

    try:
        from transformers import ViltImageProcessorPil as Processor
    except ImportError:
        from transformers import ViltImageProcessor as Processor
    rgb = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "pic.png")
    want = Processor(size={"shortest_edge": 384}, size_divisor=32, do_pad=True)(
        images=Image.fromarray(rgb), return_tensors="pt")["pixel_values"][0]
    store = open_image_store("pixels", tmp_path, shorter=384)
    got = store.get("pic")
    assert torch.equal(normalise_pixels(got.pixel_values[None])[0], want)
    assert store.size("pic") == tuple(want.shape[1:])


def _no_decoding(monkeypatch):
    def refuse(self, key):
        raise AssertionError(f"{key} decoded to count its tokens")
    from bench.data import images

    for cls in (images.UniterNpzStore, images.UniterLmdbStore, images.LxmertTsvStore, images.PixelStore):
        monkeypatch.setattr(cls, "_read", refuse)


@pytest.mark.parametrize("kind, sub", [("uniter", "features/uniter"), ("lxmert", "features/lxmert"), ("pixels", "images")])
def test_size_is_read_without_decoding(root, kind, sub, monkeypatch):
    """The token sampler costs every training example before the first step: a store tells an image's
    size (box count, resized picture) from its header, index or small arrays, never by decoding it."""
    opts = {"shorter": 64} if kind == "pixels" else {}
    want = {k: image_size(open_image_store(kind, root / sub, **opts).get(k)) for k in ("img1", "img2")}
    store = open_image_store(kind, root / sub, cache_mb=0, **opts)
    _no_decoding(monkeypatch)
    assert {k: store.size(k) for k in ("img1", "img2")} == want
    with pytest.raises(DataError, match="image nope has no"):
        store.size("nope")


@needs_img_db
def test_img_db_sizes_from_uniters_nbb_table(img_db, monkeypatch):
    """UNITER's nbb_th…json beside the LMDB gives the box counts (as its DetectFeatLmdb reads them)."""
    import json

    store = open_image_store("uniter", img_db / "coco_train2014")
    key = store.ids()[0]
    table = json.loads((img_db / "coco_train2014" / "nbb_th0.2_max100_min10.json").read_text())
    assert store.size(key) == table[key] == image_size(store.get(key))
    fresh = open_image_store("uniter", img_db / "coco_train2014")
    _no_decoding(monkeypatch)
    assert fresh.size(key) == table[key]


def test_resized_tree_reads_the_same_pictures(root, tmp_path, monkeypatch):
    """`ticketbench data resize`: every picture stored once at ViLT's size (uint8 .npy); the store reads
    the same tensors as from the originals, and refuses a tree resized for another size."""
    assert resize_pictures(root / "images", tmp_path / "r", shorter=64) == 2
    assert resize_pictures(root / "images", tmp_path / "r", shorter=64) == 0  # resumes: nothing left
    orig = open_image_store("pixels", root / "images", shorter=64)
    small = open_image_store("pixels", tmp_path / "r", shorter=64)
    assert small.resized and small.ids() == ["img1", "img2"]
    for k in ("img1", "img2"):
        assert torch.equal(small.get(k).pixel_values, orig.get(k).pixel_values)
        assert small.size(k) == orig.size(k)
    with pytest.raises(DataError, match="resized to a shorter side of 64"):
        open_image_store("pixels", tmp_path / "r", shorter=384)
    (tmp_path / "r" / "img1.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="img1.npy: not a readable resized picture"):
        open_image_store("pixels", tmp_path / "r", shorter=64, cache_mb=0).get("img1")
