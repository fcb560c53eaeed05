"""SQuAD v1.1: extract the answer span of a question from its paragraph; EM / F1 of the official v1.1 script.

Two layouts, both read through Hugging Face `datasets`: the release's JSON (`train-v1.1.json`,
`dev-v1.1.json`: data[] {title, paragraphs[] {context, qas[] {id, question, answers[] {text,
answer_start}}}}) and the Hugging Face `squad` dataset's parquet files (`plain_text/{train,validation}-*.parquet`:
rows {id, title, context, question, answers {text[], answer_start[]}}). Examples: `texts` (question,
context), `target` the first gold answer {"start": character offset, "text"} (what the reference
fine-tuning code trains on), `meta["answers"]` every gold answer's text (the metric takes the maximum
over them). The document-stride windows and the n-best span decoding are the model side's
(bench/backbones/text_heads.py): they depend on the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.errors import DataError
from bench.tasks import text_metrics
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, read_local_rows, release_or_parquet
from bench.tasks.metrics import METRICS

HF_SPLITS = {"train": "train", "dev": "validation"}


def _answers(row: dict, where: str) -> tuple[list[str], list[int]]:
    """(texts, starts) of a row's answers, in either layout's shape."""
    answers = field(row, "answers", where, (dict, list))
    if isinstance(answers, dict):  # HF: {text: [...], answer_start: [...]}
        texts, starts = field(answers, "text", f"{where}: answers", list), field(answers, "answer_start",
                                                                                  f"{where}: answers", list)
    else:  # the release: [{text, answer_start}]
        texts = [field(a, "text", f"{where}: answers[{k}]") for k, a in enumerate(answers)]
        starts = [field(a, "answer_start", f"{where}: answers[{k}]") for k, a in enumerate(answers)]
    if not texts or len(texts) != len(starts):
        raise DataError(f"{where}: field 'answers': expected at least one answer with text and answer_start, "
                        f"found {len(texts)} texts and {len(starts)} starts")
    for k, (t, s) in enumerate(zip(texts, starts)):
        if not isinstance(t, str) or isinstance(s, bool) or not isinstance(s, int):
            raise DataError(f"{where}: answers[{k}]: expected text (string) and answer_start (integer), "
                            f"found {t!r:.30} and {s!r:.30}")
    return texts, starts


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """Examples from rows {id, question, context, answers, [title]} (the HF squad row shape)."""
    examples = []
    for where, row in records:
        qid = str(field(row, "id", where, (str, int)))
        where = f"{where} (question '{qid}')"
        context = field(row, "context", where, str)
        question = field(row, "question", where, str)
        texts, starts = _answers(row, where)
        if context[starts[0]:starts[0] + len(texts[0])] != texts[0]:
            raise DataError(f"{where}: answers[0]: answer_start {starts[0]} does not point at its text "
                            f"{texts[0]!r:.40} in the context (found {context[starts[0]:starts[0] + len(texts[0])]!r:.40})")
        examples.append(Example(uid=qid, image_ids=(), texts=(question, context),
                                target={"start": starts[0], "text": texts[0]},
                                meta={"answers": texts, "title": str(row.get("title", ""))}))
    return nonempty(examples, source, split)


def _json_records(path: Path) -> list[tuple[str, dict]]:
    """The release's nested articles flattened to one record per question."""
    articles = read_local_rows("json", [path], "SQuAD JSON (an object with a 'data' list of articles)", field="data")
    records = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(field(article, "paragraphs", f"{path}: data[{a}]", list)):
            at = f"{path}: data[{a}].paragraphs[{p}]"
            context = field(paragraph, "context", at, str)
            for q, qa in enumerate(field(paragraph, "qas", at, list)):
                if not isinstance(qa, dict):
                    raise DataError(f"{at}.qas[{q}]: expected an object, found {type(qa).__name__}")
                records.append((f"{at}.qas[{q}]", {**qa, "context": context, "title": article.get("title", "")}))
    return records


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """`<split>-v1.1.json`, else the HF layout's `<hf split>-*.parquet`."""
    kind, parquet = release_or_parquet(spec, data_dir, split, HF_SPLITS[split])
    if kind == "release":
        return from_records(_json_records(parquet[0]), split, str(parquet[0]))
    rows = read_local_rows("parquet", parquet, "parquet")
    return from_records([(f"{parquet[0]} row {i}", r) for i, r in enumerate(rows)], split, str(parquet[0]))


SPEC = declare("squad", loader=load, evaluator=METRICS.get("squad"))
assert text_metrics  # registers the metric SPEC names
