"""VCR: multiple-choice answer (Q->A) then rationale (QA->R) over images with tagged objects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

from bench.core.errors import DataError
from bench.core.io import read_json, read_jsonl_numbered
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, split_paths, task_dir
from bench.tasks.metrics import METRICS

NUM_CHOICES = 4
LABEL_FIELDS = ("answer_label", "rationale_label")
# VCR tokens split punctuation and clitics off their word; glue them back for readable text.
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[?.,!;:](?:\s|$)|'s\b|n't\b)")


def render_tokens(tokens: list, objects: list[str], where: str) -> str:
    """Join VCR tokens; an object reference (a list of box indices) becomes '<class> <index>' per
    box, e.g. [1, 3] -> 'circle 1 and square 3'.

    Class and index are separate words: glued ('circle1') they are one word that a word-level
    vocabulary (toyland's) maps to [UNK], which erased every reference (measured: all of toyland's
    VCR questions). WordPiece keeps both pieces either way ('circle', '##1' / 'circle', '1')."""
    words = []
    for tok in tokens:
        if isinstance(tok, list):
            names = []
            for idx in tok:
                if not isinstance(idx, int) or not 0 <= idx < len(objects):
                    raise DataError(f"{where}: object reference {idx!r}: expected an index below {len(objects)} (objects)")
                names.append(f"{objects[idx]} {idx}")
            words.append(" and ".join(names))
        else:
            words.append(str(tok))
    return _SPACE_BEFORE_PUNCT.sub("", " ".join(words)).strip()


def _choices(r: dict, key: str, where: str) -> list:
    choices = field(r, key, where, list)
    if len(choices) != NUM_CHOICES:
        raise DataError(f"{where}: field '{key}': expected {NUM_CHOICES} choices, found {len(choices)}")
    return choices


def _label(r: dict, key: str, where: str) -> int:
    label = field(r, key, where, int)
    if not 0 <= label < NUM_CHOICES:
        raise DataError(f"{where}: field '{key}': expected 0-{NUM_CHOICES - 1}, found {label}")
    return label


def _labels(r: dict, where: str) -> tuple[int, int] | None:
    """(answer_label, rationale_label), or None for a row of the unlabeled release (test.jsonl has
    neither field); a row with only one of them is malformed."""
    has = [k in r for k in LABEL_FIELDS]
    if not any(has):
        return None
    return _label(r, "answer_label", where), _label(r, "rationale_label", where)


def from_records(
    records: Iterable[tuple[str, dict]], split: str, source: str, metadata_dirs: Sequence[Path] = ()
) -> list[Example]:
    """Examples from jsonl rows; texts = 4 x 'question answer_i' then 4 x 'question gold-answer
    rationale_i'; target = (answer_label, rationale_label).

    Rows without labels (the released test.jsonl) give target None and meta['unlabeled']: they can be
    predicted, not scored; their rationale texts carry no answer (the gold one is unknown; the
    leaderboard's 4 x 4 QA->R protocol is not implemented). With `metadata_dirs`, each row's
    `metadata_fn` is read from the first that has it and its boxes kept in meta['boxes']."""
    examples = []
    boxes_cache: dict[str, list] = {}
    for where, r in records:
        objects = [str(o) for o in field(r, "objects", where, list)]
        question = render_tokens(field(r, "question", where, list), objects, f"{where} question")
        answers = [render_tokens(a, objects, f"{where} answer_choices[{i}]")
                   for i, a in enumerate(_choices(r, "answer_choices", where))]
        rationales = [render_tokens(a, objects, f"{where} rationale_choices[{i}]")
                      for i, a in enumerate(_choices(r, "rationale_choices", where))]
        labels = _labels(r, where)
        meta: dict = {"objects": objects}
        if metadata_dirs:
            fn = field(r, "metadata_fn", where, str)
            if fn not in boxes_cache:
                boxes_cache[fn] = _read_boxes(metadata_dirs, fn, where)
            meta["boxes"] = boxes_cache[fn]
        if labels is None:
            meta["unlabeled"] = True
            texts = [f"{question} {a}" for a in answers] + [f"{question} {x}" for x in rationales]
        else:
            texts = [f"{question} {a}" for a in answers] + [f"{question} {answers[labels[0]]} {x}" for x in rationales]
        examples.append(
            Example(
                uid=str(field(r, "annot_id", where, (str, int))),
                image_ids=(Path(field(r, "img_fn", where, str)).stem,),
                texts=tuple(texts),
                target=labels,
                meta=meta,
            )
        )
    return nonempty(examples, source, split)


def _read_boxes(metadata_dirs: Sequence[Path], fn: str, where: str) -> list:
    # The release's metadata_fn is relative to vcr1images/ ('<movie>/<frame>.json'); toyland writes it
    # relative to vcr/metadata/. The first folder holding the file wins.
    for d in metadata_dirs:
        path = d / fn
        if path.is_file():
            return field(read_json(path), "boxes", str(path), list)
    raise DataError(f"{where}: field 'metadata_fn': file {fn} not found under {' or '.join(map(str, metadata_dirs))}")


def metadata_dirs(root: Path) -> list[Path]:
    """Folders holding the rows' metadata_fn files: vcr1images/ (the release) or metadata/ (toyland),
    then the task folder itself; none when neither exists (boxes are only shown, never trained on)."""
    dirs = [d for d in (root / "vcr1images", root / "metadata") if d.is_dir()]
    return [*dirs, root] if dirs else []


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read `<split>.jsonl` and the boxes of each row's `metadata_fn` (see `metadata_dirs`)."""
    (path,) = split_paths(spec, data_dir, split)
    rows = [(f"{path}:{i}", r) for i, r in read_jsonl_numbered(path)]
    return from_records(rows, split, str(path), metadata_dirs=metadata_dirs(task_dir(spec, data_dir)))


def evaluate(examples: list[Example], predictions) -> dict[str, float]:
    """Q->A, QA->R, Q->AR; the unlabeled test split cannot be scored (one-line reason)."""
    unlabeled = next((ex for ex in examples if ex.target is None), None)
    if unlabeled is not None:
        raise DataError(f"VCR example {unlabeled.uid} has no answer_label/rationale_label (the released test.jsonl "
                        "is unlabeled): it can be predicted, not scored; evaluate on 'val'")
    return METRICS.get("vcr")(examples, predictions)


SPEC = declare("vcr", loader=load, evaluator=evaluate)
