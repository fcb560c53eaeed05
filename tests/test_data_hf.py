"""Tasks read through Hugging Face `datasets` from local files give the same Examples."""

from __future__ import annotations

import json

import pytest
from fixtures.task_files import write_task_files

from bench.core.errors import DataError
from bench.data.hf import load_examples_hf
from bench.tasks import TASKS


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_task_files(tmp_path_factory.mktemp("data"))


def test_snli_ve_jsonl_matches_file_loader(root, tmp_path):
    spec = TASKS.get("snli_ve")
    via_hf = load_examples_hf(spec, root / "snli_ve" / "snli_ve_dev.jsonl", "dev", cache_dir=str(tmp_path))
    assert via_hf == spec.load(root, "dev")


def test_vqa_merged_rows_and_parquet(root, tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [{"question_id": 4, "image_id": 1, "question": "How many?", "answers": ["Two."] * 4 + ["three"] * 6}]
    pd.DataFrame(rows).to_parquet(tmp_path / "vqa.parquet")
    (ex,) = load_examples_hf("vqa", tmp_path / "vqa.parquet", "val2014", cache_dir=str(tmp_path / "c"))
    assert ex.uid == "4" and ex.target == {"2": 1.0, "3": 1.0} and len(ex.meta["answers"]) == 10


def test_karpathy_json_with_field(root, tmp_path):
    test = load_examples_hf("retrieval", root / "flickr30k" / "dataset_flickr30k.json", "test", field="images",
                            cache_dir=str(tmp_path))
    assert [e.texts for e in test] == [e.texts for e in TASKS.get("retrieval").load(root, "test")]


def test_bad_rows_and_missing_file(tmp_path):
    (tmp_path / "n.jsonl").write_text(json.dumps({"identifier": "dev-1-0-0", "sentence": "s", "label": "maybe"}) + "\n")
    with pytest.raises(DataError, match=r"n.jsonl row 0: field 'label': expected 'True' or 'False'"):
        load_examples_hf("nlvr2", tmp_path / "n.jsonl", "dev", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match="file not found"):
        load_examples_hf("nlvr2", tmp_path / "missing.jsonl", "dev")
