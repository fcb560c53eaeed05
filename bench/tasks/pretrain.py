"""Pre-training objectives (MLM, ITM, MRM, MRC, TAG) over a COCO-captions-layout corpus; ticket sources."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.core.settings import TrainSettings
from bench.core.source import OBJECTIVES
from bench.tasks.base import TASKS, Example, TaskSpec
from bench.tasks.files import field, nonempty, read_json_field, recipes, split_paths
from bench.tasks.metrics import METRICS


def from_records(records: Iterable[tuple[str, dict]], split: str, source: str) -> list[Example]:
    """One Example per caption annotation {image_id, caption, [id]}."""
    examples = []
    for i, (where, ann) in enumerate(records):
        image_id = str(field(ann, "image_id", where, (int, str)))
        uid = str(ann["id"]) if "id" in ann else str(i)
        examples.append(Example(uid=uid, image_ids=(image_id,), texts=(field(ann, "caption", where, str),)))
    return nonempty(examples, source, split)


def load(spec: TaskSpec, data_dir: Path, split: str) -> list[Example]:
    """Read `captions_<split>.json` (or the release's `captions_<split>2014.json`) → `annotations[]
    {image_id, caption}`."""
    (path,) = split_paths(spec, data_dir, split)
    anns = read_json_field(path, "annotations")
    return from_records([(f"{path}: annotations[{i}]", a) for i, a in enumerate(anns)], split, str(path))


_TITLES = {"mlm": "masked language modelling", "itm": "image-text matching",
           "mrm": "masked region feature regression", "mrc": "masked region classification (KL to soft labels)",
           "tag": "image tagging (the caption's words from the image alone)"}
# Chance: MLM guesses over a ~30k vocabulary (~0); ITM with 50% negatives; MRM classifies a masked
# region among the image's regions (~10 in toyland); MRC over the detector's 1,601 classes (~0); TAG
# over the vocabulary (~0).
_CHANCE = {"mlm": 0.0, "itm": 50.0, "mrm": 10.0, "mrc": 0.0, "tag": 0.0}

for _name in OBJECTIVES:
    TASKS.register(
        _name,
        TaskSpec(
            name=_name,
            title=f"pre-training: {_TITLES[_name]}",
            head="pretrain",
            loss=_name,
            metrics=("accuracy",),
            headline="accuracy",
            chance=_CHANCE[_name],
            # COCO's release names them captions_{train,val}2014.json (annotations_trainval2014.zip).
            files={"train": ("captions_train.json|captions_train2014.json",),
                   "val": ("captions_val.json|captions_val2014.json",)},
            splits=("train", "val"),
            loader=load,
            evaluator=METRICS.get("pretrain"),
            recipes=recipes(
                toy=TrainSettings(steps=600, batch_size=32, lr=1e-3),
                minilm=TrainSettings(steps=2000, batch_size=32, lr=1e-4),
                # UNITER in-domain pre-training: 200k steps.
                uniter=TrainSettings(steps=200000, batch_size=128, lr=5e-5, warmup=0.05),
                lxmert=TrainSettings(steps=200000, batch_size=256, lr=1e-4, warmup=0.05),
                vilt=TrainSettings(steps=100000, batch_size=256, lr=1e-4, warmup=0.1),
            ),
            data_subdir="captions",
        ),
    )
