"""NLVR2: a statement about a pair of images, True/False; accuracy and consistency."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_jsonl_numbered
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, split_paths
from bench.tasks.metrics import METRICS

LABELS = ("False", "True")


def parse_identifier(identifier: str, where: str) -> tuple[tuple[str, str], str, str]:
    """`split-set-pair-sentence` -> ((img0 id, img1 id), set id, consistency key).

    The images are `<identifier minus -sentence>-img0/1`; the consistency key blanks the pair id,
    as the official script does, so it names one sentence of one image set.
    """
    parts = identifier.split("-")
    if len(parts) != 4 or not all(parts):
        raise DataError(f"{where}: field 'identifier': expected 'split-set-pair-sentence', found '{identifier}'")
    stem = "-".join(parts[:3])
    key = "-".join([parts[0], parts[1], "", parts[3]])
    return (f"{stem}-img0", f"{stem}-img1"), f"{parts[0]}-{parts[1]}", key


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """Examples from jsonl rows {identifier, sentence, label "True"/"False"}."""
    examples = []
    for where, r in records:
        identifier = field(r, "identifier", where, str)
        label = str(field(r, "label", where, (str, bool)))
        if label not in LABELS:
            raise DataError(f"{where}: field 'label': expected 'True' or 'False', found '{label}'")
        images, set_id, key = parse_identifier(identifier, where)
        examples.append(
            Example(
                uid=identifier,
                image_ids=images,
                texts=(field(r, "sentence", where, str),),
                target={label: 1.0},
                meta={"set_id": set_id, "consistency_key": key},
            )
        )
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read `<split>.json` (JSON lines, as distributed)."""
    (path,) = split_paths(spec, data_dir, split)
    return from_records([(f"{path}:{i}", r) for i, r in read_jsonl_numbered(path)], split, str(path))


SPEC = declare("nlvr2", loader=load, evaluator=METRICS.get("nlvr2"))
