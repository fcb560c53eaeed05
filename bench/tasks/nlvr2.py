"""NLVR2: a statement about a pair of images, True/False; accuracy and consistency."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_jsonl_numbered
from bench.core.settings import TrainSettings
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, recipes, split_paths
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


SPEC = TASKS.register(
    "nlvr2",
    TaskSpec(
        name="nlvr2",
        title="NLVR2",
        head="classify",
        loss="cross_entropy",
        metrics=("accuracy", "consistency"),
        headline="accuracy",
        chance=50.0,
        files={"train": ("train.json",), "dev": ("dev.json",), "test1": ("test1.json",)},
        splits=("train", "dev", "test1"),
        loader=load,
        evaluator=METRICS.get("nlvr2"),
        recipes=recipes(
            toy=TrainSettings(steps=150, batch_size=32, lr=1e-3),
            minilm=TrainSettings(steps=600, batch_size=32, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
            # UNITER: 8000 steps, 800 warm-up, lr 3e-5.
            uniter=TrainSettings(steps=8000, batch_size=32, lr=3e-5, warmup=0.1),
            # LXMERT: 4 epochs of batch 32 over 86,373 train statements, lr 5e-5.
            lxmert=TrainSettings(steps=10797, batch_size=32, lr=5e-5, warmup=0.1),
            # ViLT: 10 epochs of batch 128, lr 1e-4.
            vilt=TrainSettings(steps=6748, batch_size=128, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
        ),
        data_subdir="nlvr2",
        num_images=2,
    ),
)
