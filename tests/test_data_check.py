"""`data check` on a miniature release: a table of examples and images found per task and split."""

from __future__ import annotations

import dataclasses
import json

import pytest
from fixtures.releases import needs_img_db, write_img_db, write_task_variants
from fixtures.task_files import write_task_files

from bench.backbones import PRESETS
from bench.config import Config, WorldConfig
from bench.data.check import check_data, configured_tasks, format_check


@pytest.fixture
def release(tmp_path):
    write_task_files(tmp_path)  # VQA questions on COCO image 1, both splits
    write_task_variants(tmp_path)
    snli = tmp_path / "snli_ve"
    (snli / "snli_ve_dev.jsonl").write_text((snli / "snli_ve_train.jsonl").read_text())
    for split in ("train", "testdev"):  # GQA on Visual Genome image 1
        (tmp_path / "gqa" / f"{split}_balanced_questions.json").write_text(json.dumps(
            {"7": {"imageId": "1", "question": "What is it?", "answer": "cat"}}))
    write_img_db(tmp_path)
    return tmp_path


def config(root, **world) -> Config:
    cfg = Config()
    w = WorldConfig(source="real", data_root=str(root), features=str(root / "img_db"), **world)
    return dataclasses.replace(cfg, world=w, backbone=dataclasses.replace(cfg.backbone, preset="toy-uniter"))


@needs_img_db
def test_data_check_passes_on_the_release(release):
    rows = check_data(config(release), PRESETS.get("toy-uniter"), tasks=["vqa", "gqa", "snli_ve"])
    assert [(r.task, r.split, r.source) for r in rows] == [
        ("vqa", "train2014", "coco"), ("vqa", "val2014", "coco"), ("gqa", "train", "vg"), ("gqa", "testdev", "vg"),
        ("snli_ve", "train", "flickr30k"), ("snli_ve", "dev", "flickr30k")]
    assert all(r.ok for r in rows), format_check(rows)
    vqa = rows[0]
    assert (vqa.examples, vqa.images, vqa.found, vqa.feat_dim, vqa.boxes) == (3, 1, 1, 8, (12, 12))
    table = format_check(rows)
    assert table.splitlines()[0].split() == ["task", "split", "source", "examples", "images", "found", "missing",
                                             "feat", "dim", "boxes"]
    assert "FAIL" not in table


@needs_img_db
def test_data_check_names_the_first_missing_id_and_key(release):
    (release / "gqa" / "testdev_balanced_questions.json").write_text(json.dumps(
        {"8": {"imageId": "2", "question": "Q?", "answer": "a"}, "9": {"imageId": "1", "question": "Q?", "answer": "b"}}))
    rows = check_data(config(release), PRESETS.get("toy-uniter"), tasks=["gqa", "vcr"])
    bad = {(r.task, r.split): r for r in rows if not r.ok}
    assert set(bad) == {("gqa", "testdev"), ("vcr", "train"), ("vcr", "val")}
    gqa = bad["gqa", "testdev"]
    assert (gqa.found, gqa.missing) == (1, 1) and "vg_000000000002.npz in " in gqa.first_missing
    assert "image source 'vcr' not found" in bad["vcr", "train"].error  # no vcr_gt_* img_db in the miniature
    table = format_check(rows)
    assert "FAIL gqa testdev: 1 of 2 images missing; first: image 2 (source 'vg') not found" in table
    assert all(len(line.split("\n")) == 1 for line in table.splitlines())


def test_configured_tasks_include_imp_sources():
    assert configured_tasks(Config())[-1] == "itm"  # 'pretrain' reads the caption corpus


@needs_img_db
def test_data_check_refuses_features_of_another_dimension(release):
    cfg = config(release)
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, preset="uniter-base"))
    (row, _) = check_data(cfg, PRESETS.get("uniter-base"), tasks=["vqa"])
    assert not row.ok and row.error == "source 'coco' has 8-d features, expected 2048 (preset uniter-base)"
