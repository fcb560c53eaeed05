"""Flickr30k image-text retrieval (Karpathy split JSON): one Example per caption; IR/TR recall."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.settings import TrainSettings
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, read_json_field, recipes, split_paths
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


SPEC = TASKS.register(
    "retrieval",
    TaskSpec(
        name="retrieval",
        title="Flickr30k retrieval",
        head="itm",
        loss="itm_hard_negatives",
        metrics=("ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10", "r_mean"),
        headline="r_mean",
        # Chance of r_mean for a 1,000-image test gallery with 5 captions an image
        # (IR R@k = k/1000; TR R@k = 1 - (1 - k/1000)^5): ~ 1.6.
        chance=1.6,
        files={split: ("dataset_flickr30k.json",) for split in ("train", "val", "test")},
        splits=("train", "test", "val"),
        loader=load,
        evaluator=METRICS.get("retrieval"),
        recipes=recipes(
            toy=TrainSettings(steps=100, batch_size=16, lr=1e-3),
            minilm=TrainSettings(steps=800, batch_size=32, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
            # UNITER: 20000 steps, 2000 warm-up, lr 5e-5, margin 0.2.
            uniter=TrainSettings(steps=20000, batch_size=32, lr=5e-5, warmup=0.1),
            lxmert=TrainSettings(steps=18000, batch_size=32, lr=5e-5, warmup=0.1),
            # ViLT: 10 epochs of batch 256 over 145k captions, lr 1e-4.
            vilt=TrainSettings(steps=5664, batch_size=256, lr=1e-4, warmup=0.1, head_lr_mult=10.0),
        ),
        data_subdir="flickr30k",
    ),
)
