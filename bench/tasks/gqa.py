"""GQA: balanced questions (a dict question id -> question), one answer each, exact-match accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.core.io import read_json
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, split_paths
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


SPEC = declare("gqa", loader=load, evaluator=METRICS.get("accuracy"))
