"""Image sources: every task reads its own id namespace from the authors' release layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fixtures.releases import feats, write_img_db, write_lxmert, write_pictures

from bench.config import WorldConfig
from bench.core.errors import ConfigError, DataError
from bench.data.sources import ImageSources, infer_template, render_key


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    return {"uniter": write_img_db(root), "lxmert": write_lxmert(root), "pixels": write_pictures(root), "root": root}


def img_db(release):
    if release["uniter"] is None:
        pytest.skip("UNITER's img_db needs lmdb and msgpack (pip install 'ticketbench[test]')")
    return release["uniter"]


def sources(release, kind: str, **world) -> ImageSources:
    if kind == "uniter":
        img_db(release)
    w = WorldConfig(source="real", data_root=str(release["root"]), features=str(release[kind]), **world)
    image_input, family = {"uniter": ("regions", "uniter"), "lxmert": ("regions", "lxmert"),
                           "pixels": ("pixels", "vilt")}[kind]
    return ImageSources(w, release["root"], image_input, family, shorter=64)


@pytest.mark.parametrize("kind", ["uniter", "lxmert"])
def test_coco_and_vg_ids_do_not_collide(release, kind):
    s = sources(release, kind)
    vqa, gqa = s.for_task("vqa"), s.for_task("gqa")
    assert vqa is not gqa and vqa.name == "coco" and gqa.name == "vg"
    n = 12 if kind == "uniter" else 36
    # the same bare integer names different pictures in COCO and Visual Genome
    np.testing.assert_allclose(vqa.get("1").features.float().numpy(), feats("coco", "1", n), atol=1e-2)
    np.testing.assert_allclose(gqa.get("1").features.float().numpy(), feats("vg", "1", n), atol=1e-2)
    assert not np.allclose(vqa.get("1").features.float().numpy(), gqa.get("1").features.float().numpy())
    # VQA's val2014 images are found in the second part (coco_val2014 / val2014_obj36.tsv)
    np.testing.assert_allclose(vqa.get("3").features.float().numpy(), feats("coco", "3", n), atol=1e-2)
    # tasks of one source share one store (and its cache)
    assert s.for_task("mlm") is vqa and s.for_task("nlvr2") is not vqa


def test_uniter_keys_per_source(release):
    s = sources(release, "uniter")
    assert s.for_task("nlvr2").get("dev-850-0-img1").features.shape == (12, 8)
    assert s.for_task("snli_ve").get("1000092795") is not None
    # RefCOCO+ reads UNITER's gt-box img_db (feat_numbb100: all 14 boxes), not COCO's detections
    assert s.for_task("refcoco_plus").get("1").features.shape[0] == 14
    assert sorted(s.for_task("vqa").ids()) == ["1", "2", "3"]


def test_missing_id_names_the_keys_looked_for(release):
    with pytest.raises(DataError) as e:
        sources(release, "uniter").for_task("vqa").get("7")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("image 7 (source 'coco') not found")
    assert "coco_train2014_000000000007.npz in " in msg and "coco_val2014_000000000007.npz in " in msg


def test_source_without_release_names_the_key_to_set(release):
    # LXMERT released no Flickr30k features
    with pytest.raises(DataError) as e:
        sources(release, "lxmert").for_task("snli_ve")
    assert "image source 'flickr30k' not found" in str(e.value) and "world.images: flickr30k=PATH" in str(e.value)
    with pytest.raises(ConfigError, match="set world.task_images: foo=SOURCE"):
        sources(release, "uniter").for_task("foo")


def test_configured_sources_and_task_overrides(release, tmp_path):
    # a user's own npz folder with bare ids, given as its own source, and GQA pointed at it
    np.savez(tmp_path / "1.npz", features=np.zeros((2, 5), np.float32), norm_bb=np.zeros((2, 7), np.float32))
    s = sources(release, "uniter", images=(f"mine={tmp_path}", f"coco={img_db(release) / 'coco_val2014'}"),
                task_images=("gqa=mine",))
    assert s.for_task("gqa").get("1").features.shape == (2, 5)
    coco = s.for_task("vqa")  # only the configured part: val2014
    assert "3" in coco and "1" not in coco
    with pytest.raises(ConfigError, match=r"world.images: expected SOURCE=PATH\[\|TEMPLATE\], found 'oops'"):
        sources(release, "uniter", images=("oops",))


def test_explicit_key_template(release):
    db = img_db(release) / "coco_train2014"
    s = sources(release, "uniter", images=(f"coco={db}|coco_train2014_{{id:012d}}",))  # the img_db key without .npz is found too
    assert "2" in s.for_task("vqa")


def test_pixels_in_the_datasets_own_trees(release):
    s = sources(release, "pixels")
    assert "1" in s.for_task("vqa") and "1" in s.for_task("gqa")
    coco, gqa = s.for_task("vqa").get("1"), s.for_task("gqa").get("1")
    # grey 40 (COCO_train2014_000000000001.jpg) vs grey 200 (GQA images/1.jpg)
    assert coco.pixel_values.float().mean().item() < gqa.pixel_values.float().mean().item()
    assert "train-1-0-img0" in s.for_task("nlvr2") and "dev-850-0-img0" in s.for_task("nlvr2")
    assert "3001_FILM_00.00.01.000-00.00.02.000@0" in s.for_task("vcr")
    assert "1000092795" in s.for_task("retrieval")


def test_templates():
    assert render_key("coco_train2014_{id:012d}", "262148") == "coco_train2014_000000262148"
    assert render_key("coco_train2014_{id:012d}", "n161313") is None  # a GQA-only id is never a COCO key
    assert render_key("nlvr2_{id}", "dev-850-0-img0") == "nlvr2_dev-850-0-img0"
    from pathlib import Path

    assert infer_template(Path("/x/val2014_obj36.tsv"), "lxmert") == "COCO_val2014_{id:012d}"
    assert infer_template(Path("/x/test2015_obj36.tsv"), "lxmert") == "COCO_test2015_{id:012d}"
    assert infer_template(Path("/x/re_coco_det"), "uniter") == "{id}"


def test_toyland_reads_one_flat_store(tmp_path):
    from fixtures.task_files import write_features

    write_features(tmp_path)
    s = ImageSources(WorldConfig(), tmp_path, "regions", "toy")
    assert s.for_task("vqa") is s.for_task("gqa") and s.for_task("vqa").ids() == ["img1", "img2"]
    lx = ImageSources(WorldConfig(), tmp_path, "regions", "lxmert")
    assert lx.for_task("nlvr2").kind == "lxmert"


def test_study_store_per_task(release, tmp_path):
    from bench.config import Config
    from bench.runner.study import Study

    w = WorldConfig(source="real", data_root=str(release["root"]), features=str(release["lxmert"]))
    cfg = Config()
    cfg = dataclasses.replace(cfg, world=w, backbone=dataclasses.replace(cfg.backbone, preset="toy-lxmert"))
    study = Study(cfg, tmp_path)
    assert study.store_for("vqa").name == "coco" and study.store_for("gqa").name == "vg"
    assert study.store is study.store_for("itm")


def test_parts_of_different_dimension_are_refused(release, tmp_path):
    np.savez(tmp_path / "1.npz", features=np.zeros((2, 5), np.float32), norm_bb=np.zeros((2, 7), np.float32))
    s = sources(release, "uniter", images=(f"coco={img_db(release) / 'coco_train2014'}", f"coco={tmp_path}"))
    with pytest.raises(DataError) as e:
        s.for_task("vqa")
    assert "image source 'coco': parts have different feature dimensions" in str(e.value)
    assert f"{tmp_path}: 5" in str(e.value) and "\n" not in str(e.value)


def _child_read(store, image_id, q):
    q.put(store.get(image_id).features.float().sum().item())


@pytest.mark.parametrize("kind", ["uniter", "lxmert"])
def test_stores_opened_before_fork_read_in_the_child(release, kind):
    import multiprocessing as mp

    store = sources(release, kind, cache_mb=0).for_task("gqa")  # no cache: the child must read the file
    expected = store.get("1").features.float().sum().item()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(store, "2354786" if kind == "lxmert" else "1", q))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    if kind == "uniter":
        assert got == pytest.approx(expected)
    else:
        assert got == pytest.approx(store.get("2354786").features.float().sum().item())


def test_gqa_only_id_is_never_a_padded_key(release):
    with pytest.raises(DataError) as e:
        sources(release, "uniter").for_task("gqa").get("n161313")
    assert "nothing in " in str(e.value) and "needs an integer id" in str(e.value)
