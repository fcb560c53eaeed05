"""GLUE, SQuAD v1.1 and text-corpus loaders on tiny files in the released layouts (and the HF parquet
layout), read through `datasets`; bad files give one-line errors naming file, row and field."""

from __future__ import annotations

import json

import pytest
from fixtures.text_files import (
    GLUE_TSV,
    TSV_COLUMNS,
    TSV_LABEL,
    write_corpus,
    write_glue_parquet,
    write_glue_tsv,
    write_squad,
)

from bench.core.errors import DataError
from bench.tasks import TASKS, label_space
from bench.tasks.glue import LAYOUTS

GLUE = tuple(LAYOUTS)


@pytest.fixture(scope="module")
def tsv_root(tmp_path_factory):
    return write_glue_tsv(tmp_path_factory.mktemp("glue_data"))


@pytest.fixture(scope="module")
def hf_root(tmp_path_factory):
    return write_glue_parquet(tmp_path_factory.mktemp("glue_hf"), {t: TASKS.get(t).labels for t in GLUE})


def expected(task):
    rows = GLUE_TSV[task][2]
    texts = [tuple(r[c] for c in TSV_COLUMNS[task]) for r in rows]
    labels = [r[TSV_LABEL[task]] for r in rows]
    return texts, labels


def test_the_nine_glue_tasks_and_squad_are_registered_as_the_issue_names_them():
    assert set(GLUE) == {"mnli", "qqp", "stsb", "wnli", "qnli", "mrpc", "rte", "sst2", "cola"}
    assert TASKS.get("squad").head == "span" and TASKS.get("stsb").head == "regress"
    assert TASKS.get("text_mlm").head == "pretrain"
    assert TASKS.get("mnli").splits == ("train", "dev_matched", "dev_mismatched")
    for name in (*GLUE, "squad", "text_mlm"):
        spec = TASKS.get(name)
        assert spec.num_images == 0 and "bert" in spec.recipes and spec.recipe_notes["bert"].source


@pytest.mark.parametrize("task", GLUE)
def test_glue_tsv_and_parquet_layouts_give_the_same_examples(tsv_root, hf_root, task):
    spec = TASKS.get(task)
    texts, labels = expected(task)
    for split in spec.splits:
        a, b = spec.load(tsv_root, split), spec.load(hf_root, split)
        assert [ex.texts for ex in a] == texts  # quotes kept verbatim (QUOTE_NONE), "null" is text
        assert [(ex.uid, ex.texts, ex.target) for ex in a] == [(ex.uid, ex.texts, ex.target) for ex in b]
        assert all(ex.image_ids == () for ex in a)
        if spec.labels:
            assert [max(ex.target, key=ex.target.get) for ex in a] == labels
            assert label_space(spec, a) == list(spec.labels)
        else:
            assert [ex.target for ex in a] == [float(v) for v in labels]


def test_glue_headline_metrics(tsv_root):
    cola = TASKS.get("cola")
    exs = cola.load(tsv_root, "dev")
    assert cola.evaluate(exs, {ex.uid: max(ex.target, key=ex.target.get) for ex in exs}) == {"matthews": 100.0}
    mrpc = TASKS.get("mrpc")
    exs = mrpc.load(tsv_root, "dev")
    assert mrpc.evaluate(exs, {ex.uid: "1" for ex in exs}) == {"accuracy": pytest.approx(200 / 3), "f1": 80.0}


def test_glue_bad_rows_are_one_line_errors(tmp_path):
    root = write_glue_tsv(tmp_path)
    path = root / "RTE" / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:3: field 'label': expected one of entailment, not_entailment, "
                                        r"found 'maybe'") as err:
        TASKS.get("rte").load(root, "dev")
    assert "\n" not in str(err.value)
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\textra\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:2: expected 4 tab-separated fields \(index, sentence1, "
                                        r"sentence2, label\), found 5"):
        TASKS.get("rte").load(root, "dev")
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tentailment\textra\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:3: expected 4 tab-separated fields .*found 5"):
        TASKS.get("rte").load(root, "dev")
    (root / "CoLA" / "dev.tsv").write_text("gj04\t1\t\tfine.\ngj04\t1\n")  # header-less: line 2 is row 2
    with pytest.raises(DataError, match=r"CoLA/dev.tsv:2: expected 4 tab-separated fields \(source, label, "
                                        r"original_label, sentence\), found 2"):
        TASKS.get("cola").load(root, "dev")
    (root / "CoLA" / "dev.tsv").write_bytes(b"gj04\t1\t\t\xff\n")
    with pytest.raises(DataError, match=r"CoLA/dev.tsv: cannot read it as a GLUE TSV in UTF-8 \(UnicodeDecodeError"):
        TASKS.get("cola").load(root, "dev")
    path.write_text("index\tsentence\tlabel\n0\ta\tentailment\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:2: missing field 'sentence1'"):
        TASKS.get("rte").load(root, "dev")
    (root / "STS-B" / "dev.tsv").write_text("\t".join(GLUE_TSV["stsb"][1]) + "\n" + "\t".join(["x"] * 9 + ["high"]) + "\n")
    with pytest.raises(DataError, match=r"STS-B/dev.tsv:2: field 'score': expected a similarity score"):
        TASKS.get("stsb").load(root, "dev")
    (root / "CoLA" / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"CoLA/dev.tsv: file not found, nor the Hugging Face layout.s validation-\*.parquet"):
        TASKS.get("cola").load(root, "dev")


def test_glue_parquet_test_split_labels_are_refused(tmp_path):
    import pandas as pd

    (tmp_path / "rte").mkdir()
    pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "label": [-1], "idx": [0]}).to_parquet(
        tmp_path / "rte" / "validation-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"row 0: field 'label': expected a label id 0..1, found -1"):
        TASKS.get("rte").load(tmp_path, "dev")


def test_squad_json_and_parquet(tmp_path):
    root = write_squad(tmp_path)
    spec = TASKS.get("squad")
    for split in spec.splits:
        a = spec.load(root, split)
        assert [ex.uid for ex in a] == ["56be4db0acb8001400a502ec", "56be4db0acb8001400a502ed", "56ddde6b9a695914005b9628"]
        assert a[0].texts[0] == "Which team won Super Bowl 50?" and a[0].texts[1].startswith("Super Bowl 50")
        assert a[0].target == {"start": 49, "text": "Denver Broncos"}
        assert a[0].meta["answers"] == ["Denver Broncos", "The Denver Broncos"]
    (root / "squad" / "dev-v1.1.json").unlink()
    b = spec.load(root, "dev")  # the HF layout under plain_text/
    assert [(ex.uid, ex.texts, ex.target, ex.meta) for ex in b] == [(ex.uid, ex.texts, ex.target, ex.meta) for ex in a]
    preds = {ex.uid: ex.meta["answers"][-1] for ex in b}
    assert spec.evaluate(b, preds) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_bad_answer_offset_names_question_and_field(tmp_path):
    from fixtures.text_files import SQUAD_ARTICLES

    bad = json.loads(json.dumps(SQUAD_ARTICLES))
    bad[1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    root = write_squad(tmp_path, bad)
    with pytest.raises(DataError, match=r"dev-v1.1.json: data\[1\].paragraphs\[0\].qas\[0\] \(question "
                                        r"'56ddde6b9a695914005b9628'\): answers\[0\]: answer_start 3 does not point") as e:
        TASKS.get("squad").load(root, "dev")
    assert "\n" not in str(e.value)
    (root / "squad" / "train-v1.1.json").write_text('{"version": "1.1"}')
    with pytest.raises(DataError, match=r"train-v1.1.json: cannot read it as SQuAD JSON"):
        TASKS.get("squad").load(root, "train")


def test_corpus_documents_are_blank_line_separated_blocks(tmp_path):
    exs = TASKS.get("text_mlm").load(write_corpus(tmp_path), "train")
    assert [ex.texts for ex in exs] == [("The first document. It has two lines.",), ("The second document.",), ("Third.",)]
