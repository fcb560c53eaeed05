"""SNLI-VE: hypothesis vs image premise, entailment / neutral / contradiction, 3-way accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_jsonl_numbered
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, split_paths
from bench.tasks.metrics import METRICS

LABELS = ("contradiction", "entailment", "neutral")


# The image field as the releases spell it: the SNLI-VE generator's current output writes
# 'Flickr30K_ID' (a bare id); older releases and IGLUE's XVNLI write 'Flikr30kID' ('<id>.jpg').
IMAGE_FIELDS = ("Flickr30K_ID", "Flikr30kID")


def image_id(flickr_id: str) -> str:
    """The image id: the Flickr30k id without a .jpg extension."""
    return flickr_id[:-4] if flickr_id.lower().endswith(".jpg") else flickr_id


def _flickr_id(r: dict, where: str) -> str:
    for key in IMAGE_FIELDS:
        if isinstance(r, dict) and key in r:
            return str(field(r, key, where, (str, int)))
    found = ", ".join(sorted(map(str, r))[:10]) if isinstance(r, dict) else type(r).__name__
    raise DataError(f"{where}: missing field 'Flickr30K_ID' or 'Flikr30kID' (found fields: {found})")


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """Examples from jsonl rows {Flickr30K_ID | Flikr30kID, sentence2, gold_label, [pairID, sentence1]}."""
    examples = []
    for i, (where, r) in enumerate(records):
        label = field(r, "gold_label", where, str)
        if label not in LABELS:
            raise DataError(f"{where}: field 'gold_label': expected one of {', '.join(LABELS)}, found '{label}'")
        flickr = _flickr_id(r, where)
        examples.append(
            Example(
                uid=str(r.get("pairID", i)),
                image_ids=(image_id(flickr),),
                texts=(field(r, "sentence2", where, str),),
                target={label: 1.0},
                meta={"premise": r.get("sentence1", "")},
            )
        )
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read `snli_ve_<split>.jsonl`."""
    (path,) = split_paths(spec, data_dir, split)
    return from_records([(f"{path}:{i}", r) for i, r in read_jsonl_numbered(path)], split, str(path))


SPEC = declare("snli_ve", loader=load, evaluator=METRICS.get("accuracy"))
