"""Task loaders on tiny files in the real formats, and their one-line errors on bad input."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
from fixtures.task_files import write_task_files

from bench.core.errors import DataError, TicketbenchError
from bench.data.images import open_image_store
from bench.tasks import TASKS, describe_tasks, label_space
from bench.tasks.refcoco_plus import resolve_region_targets

ALL = ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "mlm", "itm", "mrm")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_task_files(tmp_path_factory.mktemp("data"))


@pytest.fixture
def fresh(tmp_path):
    return write_task_files(tmp_path)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", ALL)
def test_every_task_loads_both_runner_splits(root, name):
    spec = TASKS.get(name)
    assert spec.data_subdir and "toy" in spec.recipes and spec.headline in spec.metrics
    for split in spec.splits[:2]:
        examples = spec.load(root, split)
        assert examples and all(len(ex.image_ids) == spec.num_images for ex in examples)
        assert len({ex.uid for ex in examples}) == len(examples)


def test_task_dir_itself_is_accepted(root):
    assert len(TASKS.get("gqa").load(root / "gqa", "train")) == 2


def test_vqa_targets_meta_and_label_space(root):
    spec = TASKS.get("vqa")
    ex = {e.uid: e for e in spec.load(root, "train2014")}
    # "two" x6 and "2" x2 normalise to the same answer: 8 annotators -> 1.0; "a circle" -> "circle"
    assert ex["1"].target == {"2": 1.0, "3": 0.3, "circle": 0.3}
    assert ex["3"].target == {"2": 0.9, "yes": 1.0}
    assert len(ex["1"].meta["answers"]) == 10 and ex["1"].meta["answers"][0] == "two"
    assert ex["1"].image_ids == ("1",) and ex["1"].texts == ("How many circles? 1",)
    # answers in >= 2 questions only, by frequency then name
    assert label_space(spec, list(ex.values())) == ["2", "yes"]


def test_fixed_label_spaces(root):
    assert label_space(TASKS.get("snli_ve"), []) == ["contradiction", "entailment", "neutral"]
    assert label_space(TASKS.get("nlvr2"), []) == ["False", "True"]
    gqa = TASKS.get("gqa")
    assert label_space(gqa, gqa.load(root, "train")) == ["red", "yes"]


def test_nlvr2_images_and_consistency_key(root):
    ex = TASKS.get("nlvr2").load(root, "dev")
    assert ex[0].image_ids == ("dev-10-0-img0", "dev-10-0-img1")
    assert ex[0].meta["consistency_key"] == ex[1].meta["consistency_key"] == "dev-10--0"
    assert ex[0].meta["set_id"] == "dev-10" and ex[0].target == {"True": 1.0}


def test_snli_ve_image_id_drops_extension(root):
    ex = TASKS.get("snli_ve").load(root, "train")
    assert [e.image_ids for e in ex] == [("img1",), ("img2",), ("img2",)]
    assert ex[2].target == {"contradiction": 1.0} and ex[0].uid == "train-p1"


def test_retrieval_one_example_per_caption(root):
    test = TASKS.get("retrieval").load(root, "test")
    assert len(test) == 10 and {e.image_ids[0] for e in test} == {"img1", "img2"}
    assert test[0].texts == ("caption 0 of img2",) and test[0].uid == "5"


def test_vcr_texts_and_references(root):
    (ex,) = TASKS.get("vcr").load(root, "train")
    assert len(ex.texts) == 8 and ex.target == (2, 1)
    # class and index as two words ('circle1' is one word, [UNK] to a word-level vocabulary)
    assert ex.texts[0] == "Why is circle 0 next to square 1? Because it is."
    assert ex.texts[2] == "Why is circle 0 next to square 1? circle 0 and square 1 touch."
    assert ex.texts[4 + 2] == "Why is circle 0 next to square 1? circle 0 and square 1 touch. square 1 is small."
    assert ex.image_ids == ("img1",) and ex.meta["boxes"][1][:4] == [60, 10, 80, 30]


def test_captions(root):
    ex = TASKS.get("mlm").load(root, "train")
    assert [(e.uid, e.image_ids, e.texts) for e in ex] == [("7", ("1",), ("A red circle.",)), ("8", ("1",), ("A square.",))]


def test_refcoco_boxes_and_region_targets(root, tmp_path):
    spec = TASKS.get("refcoco_plus")
    train = spec.load(root, "train")
    assert [e.texts[0] for e in train] == ["red circle", "the round one"]
    assert train[0].meta["gt_box"] == [0.0, 0.0, 0.48, 1.0] and train[0].target is None
    feats = tmp_path / "uniter"
    feats.mkdir()
    shutil.copy(root / "features" / "uniter" / "img1.npz", feats / "1.npz")
    store = open_image_store("uniter", feats)
    resolve_region_targets(train, store)
    assert [e.target for e in train] == [0, 0]  # left-half region
    (val,) = spec.loader(spec, root, "val", regions=store)
    assert val.target == 1 and val.meta["target_iou"] == pytest.approx(1.0)


def test_describe_tasks_lists_everything():
    text = describe_tasks()
    for name in ALL:
        assert name in text
    assert "vqa/v2_OpenEnded_mscoco_<split>_questions.json" in text and "r_mean" in text


# ----------------------------------------------------------------------------- bad input
def test_unknown_task_suggests():
    with pytest.raises(TicketbenchError) as e:
        TASKS.get("vqa2")
    assert "did you mean 'vqa'" in one_line(e)


def test_unknown_split(root):
    with pytest.raises(DataError) as e:
        TASKS.get("gqa").load(root, "dev")
    assert "unknown split 'dev'" in one_line(e)


def test_missing_file(fresh):
    (fresh / "snli_ve" / "snli_ve_dev.jsonl").unlink()
    with pytest.raises(DataError) as e:
        TASKS.get("snli_ve").load(fresh, "dev")
    assert "snli_ve_dev.jsonl: file not found" in one_line(e)


def test_malformed_jsonl_line_names_line(fresh):
    path = fresh / "nlvr2" / "dev.json"
    path.write_text(path.read_text() + '{"identifier": oops}\n')
    with pytest.raises(DataError) as e:
        TASKS.get("nlvr2").load(fresh, "dev")
    assert "dev.json:4: malformed JSON line" in one_line(e)


def test_malformed_json(fresh):
    (fresh / "gqa" / "train_balanced_questions.json").write_text('{"1": {')
    with pytest.raises(DataError) as e:
        TASKS.get("gqa").load(fresh, "train")
    assert "malformed JSON" in one_line(e)


def test_empty_split(fresh):
    (fresh / "snli_ve" / "snli_ve_dev.jsonl").write_text("\n")
    with pytest.raises(DataError) as e:
        TASKS.get("snli_ve").load(fresh, "dev")
    assert "split 'dev' has no examples" in one_line(e)


def test_missing_field_names_field_and_line(fresh):
    path = fresh / "snli_ve" / "snli_ve_dev.jsonl"
    path.write_text(path.read_text() + json.dumps({"Flikr30kID": "x.jpg", "gold_label": "neutral"}) + "\n")
    with pytest.raises(DataError) as e:
        TASKS.get("snli_ve").load(fresh, "dev")
    assert "snli_ve_dev.jsonl:4: missing field 'sentence2'" in one_line(e)


def test_vqa_wrong_answer_count(fresh):
    path = fresh / "vqa" / "v2_mscoco_val2014_annotations.json"
    obj = json.loads(path.read_text())
    obj["annotations"][0]["answers"] = obj["annotations"][0]["answers"][:9]
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError) as e:
        TASKS.get("vqa").load(fresh, "val2014")
    msg = one_line(e)
    assert "annotations[0]" in msg and "expected 10 answers, found 9" in msg


def test_vqa_question_without_annotation(fresh):
    path = fresh / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
    obj = json.loads(path.read_text())
    obj["questions"].append({"image_id": 1, "question_id": 99, "question": "?"})
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError) as e:
        TASKS.get("vqa").load(fresh, "val2014")
    assert "questions[1]: question_id 99 has no annotation" in one_line(e)


def test_refcoco_missing_ann_id(fresh):
    refs_path = fresh / "refcoco_plus" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[1]["ann_id"] = 555
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(DataError) as e:
        TASKS.get("refcoco_plus").load(fresh, "train")
    assert "ref 1: ann_id 555 not found in instances.json" in one_line(e)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_refcoco_malicious_pickle_refused(fresh, monkeypatch):
    monkeypatch.chdir(fresh)
    (fresh / "refcoco_plus" / "refs(unc).p").write_bytes(pickle.dumps([_Evil()]))
    with pytest.raises(DataError) as e:
        TASKS.get("refcoco_plus").load(fresh, "train")
    assert "refused to unpickle global" in one_line(e)
    assert not (fresh / "PWNED").exists()


def test_vcr_bad_reference_and_missing_metadata(fresh):
    path = fresh / "vcr" / "val.jsonl"
    row = json.loads(path.read_text())
    row["question"] = ["Is", [5], "?"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        TASKS.get("vcr").load(fresh, "val")
    assert "val.jsonl:1 question: object reference 5" in one_line(e)
    (fresh / "vcr" / "metadata" / "img1.json").unlink()
    with pytest.raises(DataError) as e:
        TASKS.get("vcr").load(fresh, "train")
    assert "metadata_fn" in one_line(e)


# ---- release variants (tests/fixtures/releases.py) --------------------------------------------


@pytest.fixture
def variants(tmp_path):
    from fixtures.releases import write_task_variants

    return write_task_variants(tmp_path)


def test_snli_ve_both_image_field_spellings(variants):
    ex = TASKS.get("snli_ve").load(variants, "train")
    # 'Flickr30K_ID' (the generator's current output, bare id) and 'Flikr30kID' ('<id>.jpg') name one image
    assert [e.image_ids for e in ex] == [("1000092795",), ("1000092795",)]


def test_snli_ve_without_image_field_names_both(variants):
    path = variants / "snli_ve" / "snli_ve_train.jsonl"
    path.write_text(json.dumps({"sentence2": "x", "gold_label": "neutral"}) + "\n")
    with pytest.raises(DataError) as e:
        TASKS.get("snli_ve").load(variants, "train")
    assert "snli_ve_train.jsonl:1: missing field 'Flickr30K_ID' or 'Flikr30kID'" in one_line(e)


def test_vcr_unlabeled_test_split_predicts_but_does_not_score(variants):
    spec = TASKS.get("vcr")
    (ex,) = spec.load(variants, "test")
    assert ex.target is None and ex.meta["unlabeled"] and len(ex.texts) == 8
    assert ex.texts[4] == "Why is person 0 here? A."  # no gold answer to condition the rationale on
    # metadata_fn is relative to vcr1images/ in the release
    assert ex.meta["boxes"] == [[1, 2, 30, 40, 0.99]]
    assert ex.image_ids == ("3001_FILM_00.00.01.000-00.00.02.000@0",)
    with pytest.raises(DataError) as e:
        spec.evaluate([ex], {ex.uid: (0, 0)})
    assert "has no answer_label/rationale_label" in one_line(e) and "evaluate on 'val'" in one_line(e)
    (val,) = spec.load(variants, "val")
    assert val.target == (0, 3) and spec.evaluate([val], {val.uid: (0, 3)})["q2ar"] == 100.0


def test_vcr_half_labeled_row_is_malformed(variants):
    path = variants / "vcr" / "val.jsonl"
    row = json.loads(path.read_text())
    del row["rationale_label"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        TASKS.get("vcr").load(variants, "val")
    assert "val.jsonl:1: missing field 'rationale_label'" in one_line(e)


def test_vcr_missing_metadata_under_vcr1images(variants):
    for f in (variants / "vcr" / "vcr1images").rglob("*.json"):
        f.unlink()
    with pytest.raises(DataError) as e:
        TASKS.get("vcr").load(variants, "test")
    assert "field 'metadata_fn': file lsmdc_3001_FILM/3001_FILM" in one_line(e) and "vcr1images" in one_line(e)


def test_refcoco_plus_refer_toolkit_folder(fresh):
    # the refer toolkit's folder name; toyland's refcoco_plus/ keeps working (test above)
    (fresh / "refcoco_plus").rename(fresh / "refcoco+")
    train = TASKS.get("refcoco_plus").load(fresh, "train")
    assert [e.texts[0] for e in train] == ["red circle", "the round one"]
