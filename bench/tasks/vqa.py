"""VQA v2: questions + annotations JSON, soft targets from 10 human answers, official soft accuracy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from bench.core.errors import DataError
from bench.core.settings import TrainSettings
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, read_json_field, recipes, split_paths
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
        by_qid[field(ann, "question_id", f"{a_path}: annotations[{j}]")] = (j, ann)
    records = []
    for i, q in enumerate(questions):
        where = f"{q_path}: questions[{i}]"
        qid = field(q, "question_id", where)
        if qid not in by_qid:
            raise DataError(f"{where}: question_id {qid} has no annotation in {a_path.name}")
        j, ann = by_qid[qid]
        records.append((f"{a_path}: annotations[{j}]", {**ann, **q}))
    return from_records(records, split, str(q_path))


SPEC = TASKS.register(
    "vqa",
    TaskSpec(
        name="vqa",
        title="VQA v2",
        head="classify",
        loss="soft_bce",
        metrics=("vqa_score",),
        headline="vqa_score",
        # Chance: answering the commonest answer ("yes") scores ~ 24% on real VQA v2; a uniform
        # guess over 3,129 answers scores ~ 0.
        chance=24.0,
        files={
            "train2014": ("v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json"),
            "val2014": ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"),
        },
        splits=("train2014", "val2014"),
        loader=load,
        evaluator=METRICS.get("vqa"),
        recipes=recipes(
            toy=TrainSettings(steps=450, batch_size=16, lr=1e-3),  # soft BCE learns more slowly than CE (docs/ARCHITECTURE.md, "The toy recipe")
            minilm=TrainSettings(steps=600, batch_size=32, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
            # UNITER: 6000 steps, 600 warm-up, lr 8e-5, head x10; batches were ~5k tokens (~64 examples).
            uniter=TrainSettings(steps=6000, batch_size=64, lr=8e-5, warmup=0.1, head_lr_mult=10.0),
            # LXMERT: 4 epochs of batch 32 over the 443,757 train2014 questions, lr 5e-5.
            lxmert=TrainSettings(steps=55470, batch_size=32, lr=5e-5, warmup=0.1),
            # ViLT: 10 epochs of batch 256, lr 1e-4, head x10, 10% warm-up.
            vilt=TrainSettings(steps=17334, batch_size=256, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
        ),
        data_subdir="vqa",
    ),
)
