"""The task contract: every task module declares a TaskSpec and registers it in TASKS.

A task turns its real files into `Example`s; the model side (bench.backbones / bench.training)
turns Examples into tensors according to `spec.head`; the task scores predictions with its
official metric. Nothing here depends on a particular backbone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import yaml

from bench.core.errors import ConfigError, DataError
from bench.core.registry import Registry, suggest
from bench.core.settings import TrainSettings
from bench.core.validate import check_value, field_check

# Head kinds the model side implements (bench/backbones/heads.py):
#   classify  - one or more (text, image) encodings -> logits over the task's label space
#               (NLVR2 uses two images: the pooled outputs of both encodings are concatenated)
#   region    - one logit per image region; softmax over regions (RefCOCO+)
#   itm       - image-text matching score; trained with sampled + hard negatives (retrieval)
#   choice    - one score per candidate text, softmax over candidates (VCR Q->A and QA->R)
#   pretrain  - MLM / ITM / MRM pre-training heads over captions (or MLM over a raw text corpus)
#   regress   - one real number from the pooled text encoding (STS-B's similarity)
#   span      - start and end of the answer span in a context (SQuAD)
HEAD_KINDS = ("classify", "region", "itm", "choice", "pretrain", "regress", "span")


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
                 regress:  float (STS-B's similarity score)
                 span:     {"start": character offset of the answer in the context, "text": the answer}
               text tasks (GLUE, SQuAD, a text corpus) have no image: image_ids is ()
    meta       anything the metric needs (VQA's 10 raw answers, RefCOCO+'s gt box, NLVR2's set id, ...)
    """

    uid: str
    image_ids: tuple[str, ...]
    texts: tuple[str, ...]
    target: Any = None
    meta: dict = field(default_factory=dict)


def _plain(value: Any) -> Any:
    # numpy arrays and scalars (boxes, IoUs) as their values; anything else would hash by its repr, which
    # can hold a memory address and differ between processes.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not plain data")


def examples_digest(examples: Iterable[Example]) -> str:
    """Content digest of examples in order: uid, image ids, texts, target and meta (the metrics read meta:
    VQA's 10 answers, RefCOCO+'s box). From what was loaded, not files, paths or mtimes: a fixed loader
    or annotation changes it, a copied or touched file does not. Linear in the examples."""
    h = hashlib.sha256()
    for ex in examples:
        try:
            row = json.dumps([ex.uid, ex.image_ids, ex.texts, ex.target, ex.meta], sort_keys=True,
                             separators=(",", ":"), ensure_ascii=False, default=_plain)
        except (TypeError, ValueError) as e:
            raise DataError(f"example {ex.uid!r}: cannot take its content digest: {e}") from None
        h.update(row.encode("utf-8", "surrogatepass") + b"\n")  # JSON escapes newlines: rows cannot run together
    return h.hexdigest()[:16]


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
    recipes    backbone family ('toy', 'minilm', 'uniter', 'lxmert', 'vilt') or preset ('toy-vilt') -> TrainSettings
    recipe_notes      family (or preset) -> RecipeNote (where the recipe's numbers come from, its text cap)
    data_subdir       the task's folder under the data root (the release's own name)
    subdir_aliases    other accepted folder names (e.g. toyland's), tried after data_subdir
    sizes      examples per split of the real release (`sizes["images"]`: retrieval's images per
               split; `sizes["source"]`: where the counts come from) — for the cost estimate
    sequences  (text, image) sequences the model encodes per example (NLVR2 2, VCR 8)
    mined      forward-only sequences per training example spent mining negatives (retrieval)
    version    of the loader and metric together: bumped when a change to either changes a number
               (it enters run ids and records)
    labels     a classification task's fixed label list (GLUE; in the Hugging Face dataset's id order);
               empty: the label space is built from the training answers (`bench.tasks.label_space`)
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
    recipe_notes: dict[str, "RecipeNote"] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    sequences: int = 1
    mined: int = 0
    version: int = 1
    labels: tuple[str, ...] = ()

    def load(self, data_dir: str | Path, split: str) -> list[Example]:
        return self.loader(self, Path(data_dir), split)

    def evaluate(self, examples: list[Example], predictions: Any) -> dict[str, float]:
        return self.evaluator(examples, predictions)

    def unsupported(self, image_input: str) -> str | None:
        """Why a backbone reading `image_input` ('regions' | 'pixels' | 'none': text only) cannot do this task;
        None if it can."""
        if self.head == "region" and image_input != "regions":
            return f"it scores image regions and a {image_input} backbone has none"
        if image_input == "none" and self.num_images > 0:
            return "it reads images and a text-only backbone has none"
        if image_input != "none" and self.num_images == 0:
            return f"it is a text task (the BERT study) and a {image_input} backbone encodes text with an image"
        return None

    def recipe_key(self, family: str, preset: str | None = None) -> str:
        """Which recipe a backbone fine-tunes with: its preset's own (a toy backbone that needs a
        different budget, measured), else its family's, else the toy one."""
        return next(k for k in (preset, family, "toy") if k in self.recipes)

    def recipe(self, family: str, preset: str | None = None) -> TrainSettings:
        return self.recipes[self.recipe_key(family, preset)]


@dataclass(frozen=True)
class RecipeNote:
    """What a recipe says beside its TrainSettings: where its numbers come from, and its text cap."""

    source: str = ""
    text_len: Optional[int] = None


# Tasks of other packages register on first lookup through the `ticketbench.tasks` entry-point group
# (an entry point naming the module that calls `declare(..., declaration=...)`).
TASKS: Registry[TaskSpec] = Registry("task", entry_point_group="ticketbench.tasks")

# What each task is, declared as data (`tasks.yaml`); the task modules add their code.
DECLARATIONS = Path(__file__).with_name("tasks.yaml")


@functools.lru_cache(maxsize=1)
def declarations() -> dict:
    return yaml.safe_load(DECLARATIONS.read_text(encoding="utf-8"))


def declare(name: str, *, loader: Callable[..., list[Example]], evaluator: Callable[..., dict[str, float]],
            declaration: dict | None = None) -> TaskSpec:
    """Register task `name` with its loader and evaluator, declared in `tasks.yaml` — or, for a task of
    another package, by `declaration`: the same fields as a mapping (title, head, loss, metrics, headline,
    chance, files, splits, recipes with a `toy` one, ...), checked alike."""
    if declaration is None:
        declaration = declarations()[name]
    if not isinstance(declaration, dict):
        raise ConfigError(f"task '{name}': declaration: expected a mapping of fields, found {type(declaration).__name__}")
    d = dict(declaration)
    recipes, notes = parse_recipes(name, d.pop("recipes"))
    check_sizes(name, d)
    spec = TaskSpec(
        name=name, loader=loader, evaluator=evaluator, recipes=recipes, recipe_notes=notes,
        metrics=tuple(d.pop("metrics")), splits=tuple(d.pop("splits")), chance=float(d.pop("chance")),
        files={split: tuple(names) for split, names in d.pop("files").items()},
        **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()},
    )
    return TASKS.register(name, spec)


# Recipe keys beside TrainSettings' fields; the paper families must say where their numbers come from.
NOTE_FIELDS = tuple(f.name for f in dataclasses.fields(RecipeNote))
PAPER_FAMILIES = ("uniter", "lxmert", "vilt")


def parse_recipes(task: str, raw: Any) -> tuple[dict[str, TrainSettings], dict[str, RecipeNote]]:
    """A task's `recipes:` declaration -> (family -> TrainSettings, family -> RecipeNote); a bad
    field or value is one ConfigError naming the file, task, family and field."""
    where = f"{DECLARATIONS.name}: task '{task}'"
    if not isinstance(raw, dict) or "toy" not in raw:
        raise ConfigError(f"{where}: recipes: expected a mapping of backbone family -> settings with a 'toy' recipe")
    settings_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    known = sorted(settings_fields) + list(NOTE_FIELDS)
    recipes, notes = {}, {}
    for family, kw in raw.items():
        at = f"{where}, recipe '{family}'"
        if not isinstance(kw, dict):
            raise ConfigError(f"{at}: expected a mapping of settings, found {kw!r}")
        for key, value in kw.items():
            if key not in settings_fields and key not in NOTE_FIELDS:
                raise ConfigError(f"{at}: unknown field '{key}'{suggest(str(key), known)}; expected a TrainSettings "
                                  f"field or one of {', '.join(NOTE_FIELDS)}")
            check = field_check(TrainSettings, key)
            if check is not None:
                check_value(f"finetune.{key}", tuple(value) if isinstance(value, list) else value, check, at)
        source = kw.get("source", "")
        if not isinstance(source, str) or (family in PAPER_FAMILIES and not source.strip()):
            raise ConfigError(f"{at}: source: expected a string naming the paper or released config of its numbers")
        text_len = kw.get("text_len")
        if text_len is not None and (isinstance(text_len, bool) or not isinstance(text_len, int) or text_len < 1):
            raise ConfigError(f"{at}: text_len: expected a positive integer, found {text_len!r}")
        settings = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items() if k in settings_fields}
        recipes[family] = TrainSettings(**settings)
        notes[family] = RecipeNote(source=" ".join(source.split()), text_len=text_len)
    return recipes, notes


def describe_recipes(family: str | None = None, task: str | None = None) -> str:
    """The recipe table (`ticketbench recipes`): one row per task and backbone family, with the
    source of its numbers. Batches are per optimizer step on one device (micro-batch × accumulation)."""
    specs = [TASKS.get(name) for name in declarations() if name in TASKS]
    if task is not None:
        names = [s.name for s in specs]
        if task not in names:
            raise ConfigError(f"--task: unknown task '{task}'{suggest(task, names)}; known: {', '.join(names)}")
        specs = [s for s in specs if s.name == task]
    families = list(dict.fromkeys(f for s in specs for f in s.recipes))
    if family is not None:
        if family not in families:
            raise ConfigError(f"--family: unknown backbone family '{family}'{suggest(family, families)}; known: "
                              f"{', '.join(families)}")
        families = [family]
    head = ("task", "family", "steps", "batch", "accum", "effective batch", "lr", "head lr ×", "warm-up",
            "weight decay", "betas", "clip", "text", "loss", "source")
    rows = []
    for spec in specs:
        for fam in families:
            if fam not in spec.recipes:
                continue
            s, note = spec.recipes[fam], spec.recipe_notes.get(fam, RecipeNote())
            unit, per = ("tok", s.batch_tokens) if s.batch_tokens else ("ex", s.batch_size)
            rows.append((spec.name, fam, f"{s.steps:,}", f"{per:,} {unit}", str(s.grad_accum),
                         f"{per * s.grad_accum:,} {unit}", f"{s.lr:g}", f"{s.head_lr_mult:g}", f"{s.warmup:.0%}",
                         f"{s.weight_decay:g}", "/".join(f"{b:g}" for b in s.betas), f"{s.grad_clip:g}" if s.grad_clip else "off",
                         str(note.text_len) if note.text_len else "-", spec.loss,
                         note.source or "-"))
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in [head] + rows)


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def check_sizes(task: str, d: dict) -> None:
    """A task declaration's `sizes` (split -> examples, `images` per split, `source`), `sequences`,
    `mined` and `version`: one ConfigError naming the file, task and field."""
    where = f"{DECLARATIONS.name}: task '{task}'"
    for key in ("sequences", "mined", "version"):
        if key in d and not (_positive(d[key]) or (key == "mined" and d[key] == 0)):
            raise ConfigError(f"{where}: {key}: expected a positive integer, found {d[key]!r}")
    sizes = d.get("sizes", {})
    if not isinstance(sizes, dict):
        raise ConfigError(f"{where}: sizes: expected a mapping of split -> examples, found {sizes!r}")
    splits = set(d.get("splits", ()))
    for split, n in sizes.items():
        if split == "source":
            if not isinstance(n, str) or not n.strip():
                raise ConfigError(f"{where}: sizes.source: expected where the counts come from, found {n!r}")
            continue
        values = n.items() if split == "images" and isinstance(n, dict) else [(split, n)]
        for s, v in values:
            if s not in splits:
                raise ConfigError(f"{where}: sizes: unknown split '{s}'{suggest(str(s), sorted(splits))}")
            if not _positive(v):
                raise ConfigError(f"{where}: sizes.{split}: expected a positive count of examples, found {v!r}")
    if sizes and "source" not in sizes:
        raise ConfigError(f"{where}: sizes: give the counts' source (sizes.source)")
