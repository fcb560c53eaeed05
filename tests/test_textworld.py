"""The text world: deterministic, in the released layouts every text loader reads, with honest chance levels."""

from __future__ import annotations

from bench.data.textworld import generate_text_world
from bench.tasks import TASKS

TEXT_TASKS = ("mnli", "qqp", "stsb", "wnli", "qnli", "mrpc", "rte", "sst2", "cola", "squad", "text_mlm")



def test_every_text_task_loads_from_the_world(tmp_path):
    manifest = generate_text_world(tmp_path, seed=3, scale="smoke")
    for name in TEXT_TASKS:
        spec = TASKS.get(name)
        for split in spec.splits:
            examples = spec.load(tmp_path, split)
            assert len(examples) == manifest["counts"]['corpus' if name == 'text_mlm' else name][split]
    assert (tmp_path / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")  # MRPC's byte-order mark
    assert not (tmp_path / "CoLA" / "train.tsv").read_text().startswith("index")  # CoLA: no header
    assert set(manifest["chance"]) == set(TEXT_TASKS) - {"text_mlm"}
    assert 30 < manifest["chance"]["mnli"]["accuracy"] < 45 and manifest["chance"]["cola"] == {"matthews": 0.0}


def test_the_world_is_deterministic(tmp_path):
    generate_text_world(tmp_path / "a", seed=1, scale="smoke")
    generate_text_world(tmp_path / "b", seed=1, scale="smoke")
    generate_text_world(tmp_path / "c", seed=2, scale="smoke")
    a, b, c = ((tmp_path / x / "MNLI" / "train.tsv").read_text() for x in "abc")
    assert a == b != c
