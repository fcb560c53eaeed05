"""Masked language modelling on a raw text corpus: the BERT study's pre-training ticket source (Chen et al.'s MLM).

The corpus is plain UTF-8 text, one document per blank-line-separated block (WikiText's and BERT's
pre-training text layout): `corpus/train.txt`, `corpus/dev.txt`. Read through Hugging Face
`datasets`' text builder line by line; a block ends at a line holding only whitespace. A document's
lines are joined with a space. Examples: `texts` (the document,), no image, no target; the model side
cuts documents into sequences of the backbone's length and masks 15% of their tokens.
"""

from __future__ import annotations

from pathlib import Path

from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import nonempty, read_local_rows, split_paths
from bench.tasks.metrics import METRICS


def documents(lines: list[str]) -> list[str]:
    """Blank-line-separated blocks of `lines`, each joined with single spaces."""
    docs, block = [], []
    for line in lines + [""]:
        if line.strip():
            block.append(line.strip())
        elif block:
            docs.append(" ".join(block))
            block = []
    return docs


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    (path,) = split_paths(spec, data_dir, split)
    rows = read_local_rows("text", [path], "UTF-8 text", sample_by="line", keep_linebreaks=False, encoding="utf-8")
    docs = documents([r["text"] for r in rows])
    return nonempty([Example(uid=str(i), image_ids=(), texts=(d,)) for i, d in enumerate(docs)], str(path), split)


SPEC = declare("text_mlm", loader=load, evaluator=METRICS.get("pretrain"))
