"""VQA v2: questions + annotations JSON, soft targets from 10 human answers, official soft accuracy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from bench.core.errors import DataError
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, read_json_field, split_paths
from bench.tasks.metrics import METRICS
from bench.tasks.vqa_normalize import normalize_answer

NUM_ANSWERS = 10
# Training-target score by annotator count (0 annotators: the answer is not in the target).
_SOFT_SCORE = {1: 0.3, 2: 0.6, 3: 0.9}


def soft_target(answers: Sequence[str]) -> dict[str, float]:
    """{normalised answer: 0.3 / 0.6 / 0.9 / 1.0 for 1 / 2 / 3 / >=4 annotators}."""
    counts = Counter(normalize_answer(a) for a in answers)
    return {a: _SOFT_SCORE.get(c, 1.0) for a, c in counts.items()}


def _answer_text(answer, where: str) -> str:
    if isinstance(answer, str):
        return answer
    return field(answer, "answer", where, str)


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """Examples from merged question+annotation records.

    Record: {question_id, image_id, question, answers: 10 x ({answer, ...} | str),
    [answer_type, question_type, multiple_choice_answer]}; each paired with its location string.
    """
    examples = []
    for where, r in records:
        qid = field(r, "question_id", where, (int, str))
        answers = field(r, "answers", where, list)
        if len(answers) != NUM_ANSWERS:
            raise DataError(f"{where} (question_id {qid}): field 'answers': expected {NUM_ANSWERS} answers, found {len(answers)}")
        raw = [_answer_text(a, f"{where} answers[{i}]") for i, a in enumerate(answers)]
        examples.append(
            Example(
                uid=str(qid),
                image_ids=(str(field(r, "image_id", where, (int, str))),),
                texts=(field(r, "question", where, str),),
                target=soft_target(raw),
                meta={
                    "answers": raw,
                    "question_id": qid,
                    "answer_type": r.get("answer_type", ""),
                    "question_type": r.get("question_type", ""),
                },
            )
        )
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Join the questions file with the annotations file by question_id.

    A question without an annotation, or an annotation with other than 10 answers, is a DataError.
    """
    q_path, a_path = split_paths(spec, data_dir, split)
    questions = read_json_field(q_path, "questions")
    annotations = read_json_field(a_path, "annotations")
    by_qid = {}
    for j, ann in enumerate(annotations):
        by_qid[field(ann, "question_id", f"{a_path}: annotations[{j}]", (int, str))] = (j, ann)
    records = []
    for i, q in enumerate(questions):
        where = f"{q_path}: questions[{i}]"
        qid = field(q, "question_id", where, (int, str))
        if qid not in by_qid:
            raise DataError(f"{where}: question_id {qid} has no annotation in {a_path.name}")
        j, ann = by_qid[qid]
        records.append((f"{a_path}: annotations[{j}]", {**ann, **q}))
    return from_records(records, split, str(q_path))


SPEC = declare("vqa", loader=load, evaluator=METRICS.get("vqa"))
