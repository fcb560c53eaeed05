"""SNLI-VE: hypothesis vs image premise, entailment / neutral / contradiction, 3-way accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_jsonl_numbered
from bench.core.settings import TrainSettings
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, recipes, split_paths
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


SPEC = TASKS.register(
    "snli_ve",
    TaskSpec(
        name="snli_ve",
        title="SNLI-VE",
        head="classify",
        loss="cross_entropy",
        metrics=("accuracy",),
        headline="accuracy",
        chance=100.0 / 3,
        files={
            "train": ("snli_ve_train.jsonl",),
            "dev": ("snli_ve_dev.jsonl",),
            "test": ("snli_ve_test.jsonl",),
        },
        splits=("train", "dev", "test"),
        loader=load,
        evaluator=METRICS.get("accuracy"),
        recipes=recipes(
            toy=TrainSettings(steps=150, batch_size=32, lr=1e-3),
            minilm=TrainSettings(steps=600, batch_size=32, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
            # UNITER: 4000 steps, 400 warm-up, lr 8e-5.
            uniter=TrainSettings(steps=4000, batch_size=64, lr=8e-5, warmup=0.1),
            lxmert=TrainSettings(steps=16000, batch_size=32, lr=5e-5, warmup=0.1),
            vilt=TrainSettings(steps=5000, batch_size=128, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
        ),
        data_subdir="snli_ve",
    ),
)
