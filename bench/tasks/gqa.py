"""GQA: balanced questions (a dict question id -> question), one answer each, exact-match accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_json
from bench.core.settings import TrainSettings
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, recipes, split_paths
from bench.tasks.metrics import METRICS


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """Examples from {question_id, imageId, question, answer, [fullAnswer, types]} records."""
    examples = []
    for where, r in records:
        answer = field(r, "answer", where, str)
        examples.append(
            Example(
                uid=str(field(r, "question_id", where, (str, int))),
                image_ids=(str(field(r, "imageId", where, (str, int))),),
                texts=(field(r, "question", where, str),),
                target={answer: 1.0},
                meta={"answer": answer, "fullAnswer": r.get("fullAnswer", ""), "types": r.get("types", {})},
            )
        )
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read `<split>_balanced_questions.json`: {question id: {imageId, question, answer, ...}}."""
    (path,) = split_paths(spec, data_dir, split)
    questions = read_json(path)
    if not isinstance(questions, dict):
        raise DataError(f"{path}: expected a JSON object mapping question id -> question, found {type(questions).__name__}")
    records = [(f"{path}: question '{qid}'", {**q, "question_id": qid} if isinstance(q, dict) else q)
               for qid, q in questions.items()]
    return from_records(records, split, str(path))


SPEC = TASKS.register(
    "gqa",
    TaskSpec(
        name="gqa",
        title="GQA",
        head="classify",
        loss="cross_entropy",
        metrics=("accuracy",),
        headline="accuracy",
        # Chance: the commonest answer ("no") is ~ 18% of balanced testdev.
        chance=18.0,
        files={
            "train": ("train_balanced_questions.json",),
            "val": ("val_balanced_questions.json",),
            "testdev": ("testdev_balanced_questions.json",),
        },
        splits=("train", "testdev", "val"),
        loader=load,
        evaluator=METRICS.get("accuracy"),
        recipes=recipes(
            toy=TrainSettings(steps=150, batch_size=32, lr=1e-3),
            minilm=TrainSettings(steps=600, batch_size=32, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
            uniter=TrainSettings(steps=6000, batch_size=64, lr=8e-5, warmup=0.1, head_lr_mult=10.0),
            # LXMERT: 4 epochs of batch 32 over the ~943k balanced train questions, lr 1e-5.
            lxmert=TrainSettings(steps=117875, batch_size=32, lr=1e-5, warmup=0.1),
            vilt=TrainSettings(steps=14700, batch_size=256, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
        ),
        data_subdir="gqa",
    ),
)
