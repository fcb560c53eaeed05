"""The task contract: every task module declares a TaskSpec and registers it in TASKS.

A task turns its real files into `Example`s; the model side (bench.backbones / bench.training)
turns Examples into tensors according to `spec.head`; the task scores predictions with its
official metric. Nothing here depends on a particular backbone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.core.registry import Registry
from bench.core.settings import TrainSettings

# Head kinds the model side implements (bench/backbones/heads.py):
#   classify  - one or more (text, image) encodings -> logits over the task's label space
#               (NLVR2 uses two images: the pooled outputs of both encodings are concatenated)
#   region    - one logit per image region; softmax over regions (RefCOCO+)
#   itm       - image-text matching score; trained with sampled + hard negatives (retrieval)
#   choice    - one score per candidate text, softmax over candidates (VCR Q->A and QA->R)
#   pretrain  - MLM / ITM / MRM pre-training heads over captions
HEAD_KINDS = ("classify", "region", "itm", "choice", "pretrain")


@dataclass
class Example:
    """One annotated example, backbone-agnostic.

    uid        unique id within the split (question_id, identifier, annot_id, ...), as a string
    image_ids  keys into the image store; NLVR2 has two, every other task one
    texts      the text(s) to encode with the image(s): 1 for classify/region/itm/pretrain;
               for VCR the 4 'question + answer_i' strings then the 4 'question + gold answer + rationale_i'
    target     task-specific supervision:
                 classify: dict label -> soft score (VQA 0/0.3/0.6/0.9/1.0; single-label tasks {label: 1.0})
                 region:   int index of the ground-truth region among the image's regions
                 itm:      None (positives are the (text, image) pair itself; negatives are sampled)
                 choice:   (answer_label, rationale_label)
    meta       anything the metric needs (VQA's 10 raw answers, RefCOCO+'s gt box, NLVR2's set id, ...)
    """

    uid: str
    image_ids: tuple[str, ...]
    texts: tuple[str, ...]
    target: Any = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its files, head, loss, metrics and defaults.

    files      split -> file names relative to the task's data directory (canonical names of the
               real dataset); overridable per config
    splits     (train, dev[, test]) split names used for fine-tuning and evaluation
    loader     (spec, data_dir, split) -> list[Example]; raises DataError on bad input
    evaluator  (examples, predictions) -> dict metric -> value in [0, 100]; `predictions` maps
               uid -> prediction (classify: label str; region: normalised x1y1x2y2 box;
               choice: (answer_idx, rationale_idx)); for itm, a dict with 'scores' [n_texts, n_images],
               'text_uids' and 'image_ids' (see retrieval.py)
    recipes    backbone family ('toy', 'minilm', 'uniter', 'lxmert', 'vilt') -> TrainSettings
    data_subdir       the task's folder under the data root (the release's own name)
    subdir_aliases    other accepted folder names (e.g. toyland's), tried after data_subdir
    """

    name: str
    title: str
    head: str
    loss: str
    metrics: tuple[str, ...]
    headline: str
    chance: float
    files: dict[str, tuple[str, ...]]
    splits: tuple[str, ...]
    loader: Callable[..., list[Example]]
    evaluator: Callable[..., dict[str, float]]
    recipes: dict[str, TrainSettings]
    data_subdir: str = ""
    num_images: int = 1
    subdir_aliases: tuple[str, ...] = ()

    def load(self, data_dir: str | Path, split: str) -> list[Example]:
        return self.loader(self, Path(data_dir), split)

    def evaluate(self, examples: list[Example], predictions: Any) -> dict[str, float]:
        return self.evaluator(examples, predictions)

    def unsupported(self, image_input: str) -> str | None:
        """Why a backbone reading `image_input` ('regions' | 'pixels') cannot do this task; None if it can."""
        if self.head == "region" and image_input != "regions":
            return f"it scores image regions and a {image_input} backbone has none"
        return None

    def recipe(self, family: str) -> TrainSettings:
        return self.recipes.get(family) or self.recipes["toy"]


TASKS: Registry[TaskSpec] = Registry("task")

# What each task is, declared as data (`tasks.yaml`); the task modules add their code.
DECLARATIONS = Path(__file__).with_name("tasks.yaml")


@functools.lru_cache(maxsize=1)
def declarations() -> dict:
    return yaml.safe_load(DECLARATIONS.read_text(encoding="utf-8"))


def declare(name: str, loader: Callable[..., list[Example]], evaluator: Callable[..., dict[str, float]]) -> TaskSpec:
    """Register task `name` from its declaration in `tasks.yaml` with its loader and evaluator."""
    d = dict(declarations()[name])
    recipes = d.pop("recipes")
    if "toy" not in recipes:
        raise ValueError(f"{DECLARATIONS}: task {name} needs a 'toy' recipe")
    spec = TaskSpec(
        name=name, loader=loader, evaluator=evaluator,
        recipes={family: TrainSettings(**kw) for family, kw in recipes.items()},
        metrics=tuple(d.pop("metrics")), splits=tuple(d.pop("splits")), chance=float(d.pop("chance")),
        files={split: tuple(names) for split, names in d.pop("files").items()},
        **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()},
    )
    return TASKS.register(name, spec)
