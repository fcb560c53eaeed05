"""The nine GLUE tasks of the BERT study (Chen et al. 2020): MNLI, QQP, STS-B, WNLI, QNLI, MRPC, RTE,
SST-2, CoLA — read in the two layouts users have on disk, both through Hugging Face `datasets`:

* the TSVs as GLUE distributes them (`glue_data/<Task>/{train,dev}.tsv`, MNLI's `dev_matched.tsv` and
  `dev_mismatched.tsv`), read with `quoting=csv.QUOTE_NONE` as GLUE's readers do: a sentence's quote
  characters are text (MRPC and SST-2 have unbalanced ones). CoLA's train / dev files have no header
  (source, label, original label, sentence); every other file names its columns in a header line;
  MRPC's starts with a UTF-8 byte-order mark, which is not part of the first column's name;
* the Hugging Face `glue` dataset's parquet files (`<config>/<split>-00000-of-00001.parquet`, splits
  `train`, `validation`, MNLI's `validation_matched` / `validation_mismatched`; integer labels in the
  order of the task's `labels` declaration).

The TSV of a split wins when both are present. Examples: `texts` the one or two sentences, no image;
`target` {label: 1.0} (labels as the TSVs spell them: MNLI's words, "0" / "1" elsewhere) or STS-B's
float similarity score in [0, 5]; `uid` the row's position in its file (HF's `idx`). Test splits have
no labels and are not read. Bad rows are one DataError naming the file, line and field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.tasks import text_metrics
from bench.tasks.base import TASKS, Example, TaskSpec, declare
from bench.tasks.files import nonempty, read_local_rows, release_or_parquet
from bench.tasks.metrics import METRICS


@dataclass(frozen=True)
class GlueLayout:
    """Where a task's texts and label are in each layout. `columns`: the names of a header-less TSV's columns."""

    tsv_texts: tuple[str, ...]
    tsv_label: str
    hf_texts: tuple[str, ...]
    columns: tuple[str, ...] = ()


LAYOUTS = {
    "cola": GlueLayout(("sentence",), "label", ("sentence",),
                       columns=("source", "label", "original_label", "sentence")),
    "sst2": GlueLayout(("sentence",), "label", ("sentence",)),
    "mrpc": GlueLayout(("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2")),
    "stsb": GlueLayout(("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
    "qqp": GlueLayout(("question1", "question2"), "is_duplicate", ("question1", "question2")),
    "mnli": GlueLayout(("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis")),
    "qnli": GlueLayout(("question", "sentence"), "label", ("question", "sentence")),
    "rte": GlueLayout(("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
    "wnli": GlueLayout(("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
}
# The GLUE TSV's split name -> the Hugging Face glue dataset's.
HF_SPLITS = {"train": "train", "dev": "validation", "dev_matched": "validation_matched",
             "dev_mismatched": "validation_mismatched"}
EVALUATORS = {"cola": "glue_matthews", "mrpc": "glue_accuracy_f1", "qqp": "glue_accuracy_f1",
              "stsb": "glue_correlation"}


def _target(spec: TaskSpec, value, where: str, field_name: str):
    """{label: 1.0} of a classification task, or STS-B's float score."""
    if not spec.labels:
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: field '{field_name}': expected a similarity score (a number), "
                            f"found {value!r:.40}") from None
        if score != score:  # NaN
            raise DataError(f"{where}: field '{field_name}': expected a similarity score (a number), found NaN")
        return score
    label = str(value)
    if label not in spec.labels:
        raise DataError(f"{where}: field '{field_name}': expected one of {', '.join(spec.labels)}, found {label!r:.40}")
    return {label: 1.0}


def from_records(spec: TaskSpec, records: Iterable[tuple[str, dict]], texts: tuple[str, ...], label: str,
                 split: str, source: str, hf: bool = False) -> list[Example]:
    """Examples from rows {text columns..., label column}; `hf`: integer labels index `spec.labels`."""
    examples = []
    for i, (where, row) in enumerate(records):
        values = []
        for name in (*texts, label):
            if name not in row:
                raise DataError(f"{where}: missing field '{name}' (found fields: {', '.join(sorted(map(str, row))[:10])})")
            if row[name] is None:
                raise DataError(f"{where}: field '{name}' is empty (a row with too few tab-separated fields?)")
            values.append(row[name])
        value = values[-1]
        if hf and spec.labels:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(spec.labels):
                raise DataError(f"{where}: field '{label}': expected a label id 0..{len(spec.labels) - 1}, "
                                f"found {value!r:.40} (test splits have no labels)")
            value = spec.labels[value]
        for name, text in zip(texts, values):
            if not isinstance(text, str):
                raise DataError(f"{where}: field '{name}': expected text, found {type(text).__name__}")
        uid = str(row.get("idx", i)) if hf else str(i)
        examples.append(Example(uid=uid, image_ids=(), texts=tuple(values[:-1]), target=_target(spec, value, where, label)))
    return nonempty(examples, source, split)


def read_tsv(path: Path, columns: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """Rows of a GLUE TSV as strings (QUOTE_NONE, nothing read as missing), and the file line of row 0.
    `columns` names a header-less file's columns (CoLA); otherwise the header line does."""
    import datasets

    try:  # -sig: MRPC's byte-order mark is no part of the first column's name
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as a GLUE TSV in UTF-8 ({type(e).__name__}: {e})") from None
    first_line = 1
    if not columns:
        columns, first_line = tuple(lines[0].split("\t")) if lines else (), 2
    # Every row must have the columns' count of fields: pandas reads a short row's missing fields as
    # empty text, and a first row with extra fields as an index column (shifting every field).
    for n, line in enumerate(lines[first_line - 1:], first_line):
        if line and line.count("\t") + 1 != len(columns):
            raise DataError(f"{path}:{n}: expected {len(columns)} tab-separated fields ({', '.join(columns)}), "
                            f"found {line.count(chr(9)) + 1}")
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    rows = read_local_rows("csv", [path], "a GLUE TSV", delimiter="\t", quoting=csv.QUOTE_NONE, header=None,
                           column_names=list(columns), skiprows=first_line - 1, keep_default_na=False,
                           na_filter=False, features=features, encoding="utf-8")
    return rows, first_line


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """The split's TSV (`<Task>/<split>.tsv`), else its HF parquet files (`<config>/<hf split>-*.parquet`)."""
    layout = LAYOUTS[spec.name]
    kind, paths = release_or_parquet(spec, data_dir, split, HF_SPLITS[split])
    if kind == "release":
        rows, first = read_tsv(paths[0], layout.columns)
        records = ((f"{paths[0]}:{first + i}", r) for i, r in enumerate(rows))
        return from_records(spec, records, layout.tsv_texts, layout.tsv_label, split, str(paths[0]))
    parquet = paths
    rows = read_local_rows("parquet", parquet, "parquet")
    records = ((f"{parquet[0]} row {i}", r) for i, r in enumerate(rows))
    return from_records(spec, records, layout.hf_texts, "label", split, str(parquet[0]), hf=True)


def hf_reader(name: str):
    """The `bench.data.hf` record reader of task `name`: rows in the HF glue layout."""
    def read(records, split: str, source: str) -> list[Example]:
        return from_records(TASKS.get(name), records, LAYOUTS[name].hf_texts, "label", split, source, hf=True)
    return read


SPECS = {name: declare(name, loader=load, evaluator=METRICS.get(EVALUATORS.get(name, "glue_accuracy")))
         for name in LAYOUTS}
assert text_metrics  # registers the GLUE metrics the evaluators name
