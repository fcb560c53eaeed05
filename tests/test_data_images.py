"""Region-feature stores (UNITER npz, LXMERT TSV, optional LMDB) and the ViLT pixel store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.task_files import FEAT_DIM, REGION_BOXES, H, W, region_features, write_features

from bench.core.errors import DataError
from bench.data.images import PixelInput, RegionFeatures, open_image_store


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
    # grey 200 normalised with mean = std = 0.5
    assert p.pixel_values.mean().item() == pytest.approx((200 / 255 - 0.5) / 0.5, abs=1e-2)
    assert store.ids() == ["img1", "img2"] and store.feat_dim == 3


def test_lmdb_store(root, tmp_path):
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"img1", (root / "features" / "uniter" / "img1.npz").read_bytes())
    env.close()
    store = open_image_store("uniter", tmp_path / "db")
    assert store.ids() == ["img1"] and store.get("img1").positions.shape == (3, 7)
