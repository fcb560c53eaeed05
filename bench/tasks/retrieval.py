"""Flickr30k image-text retrieval (Karpathy split JSON): one Example per caption; IR/TR recall."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, read_json_field, split_paths
from bench.tasks.metrics import METRICS


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """One Example per caption of every image record {filename, split, sentences[{raw, [sentid]}]}
    whose split is `split`; the image id is the filename without extension."""
    examples = []
    for where, img in records:
        if field(img, "split", where, str) != split:
            continue
        image_id = Path(field(img, "filename", where, str)).stem
        for k, sent in enumerate(field(img, "sentences", where, list)):
            here = f"{where} sentences[{k}]"
            examples.append(
                Example(
                    uid=str(sent["sentid"]) if isinstance(sent, dict) and "sentid" in sent else f"{image_id}#{k}",
                    image_ids=(image_id,),
                    texts=(field(sent, "raw", here, str),),
                    target=None,
                    meta={"caption_index": k},
                )
            )
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read the `split` images of `dataset_flickr30k.json`."""
    (path,) = split_paths(spec, data_dir, split)
    images = read_json_field(path, "images")
    return from_records([(f"{path}: images[{i}]", img) for i, img in enumerate(images)], split, str(path))


SPEC = declare("retrieval", loader=load, evaluator=METRICS.get("retrieval"))
