"""What every stage needs to know about one study: where its data, θ0 and tickets live, cached per
process so that many pairs in one worker load the world and the pre-trained weights once."""

from __future__ import annotations

import copy
import dataclasses
import functools
import platform
from pathlib import Path

import torch

from bench.backbones import PRESETS, load_backbone, resolve_device
from bench.config import Config
from bench.core import __version__
from bench.core.errors import DataError, RunFailed, TicketbenchError
from bench.core.integrity import verify_theta0
from bench.core.io import MAX_STORE_BYTES, read_json, short_hash
from bench.core.layout import Layout
from bench.core.provenance import git_commit
from bench.core.source import PRETRAIN
from bench.core.statcache import StatCache
from bench.core.validate import check_world_manifest
from bench.data.sources import ImageSources
from bench.tasks import TASKS, label_space
from bench.tasks.base import Example, TaskSpec, examples_digest
from bench.tasks.files import split_paths
from bench.tasks.files import task_dir as find_task_dir


def environment(device: torch.device) -> dict:
    import transformers  # heavy: only when a record is written

    env = {"ticketbench": __version__, "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version(),
           "device": str(device), "threads": torch.get_num_threads(), "commit": git_commit()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# The pre-training corpus: (task, split) whose captions θ0 and `:pretrain` searches train on; a text-only
# backbone's (the BERT study's) is the raw text corpus.
CORPUS = ("itm", "train")
TEXT_CORPUS = ("text_mlm", "train")


class Study:
    """Data and θ0 of one config and output directory (cheap to create; loads lazily, once per process)."""

    def __init__(self, cfg: Config, out: str | Path):
        self.cfg = cfg
        self.out = Path(out)
        self.layout = Layout(out)
        self.device = resolve_device(cfg.backbone.device)
        self._examples: dict[tuple[str, str], list[Example]] = {}
        self._labels: dict[str, list[str] | None] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._data_digests: dict[str, str] = {}
        self._digest_cache = StatCache(self.layout.digest_cache)

    # ---- data -------------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        if self.cfg.world.source == "toyland":
            return self.layout.world
        if not self.cfg.world.data_root:
            raise TicketbenchError("world.source is 'real' but world.data_root is empty")
        return Path(self.cfg.world.data_root)

    def task_dir(self, spec: TaskSpec) -> Path:
        return find_task_dir(spec, self.data_root)

    def examples(self, task: str, split: str) -> list[Example]:
        """The examples of a task split (loaded once per Study)."""
        key = (task, split)
        if key not in self._examples:
            self._examples[key] = self._load(task, split)
        return self._examples[key]

    def _load(self, task: str, split: str) -> list[Example]:
        spec = TASKS.get(task)
        d = self.task_dir(spec)
        if not d.exists():
            raise DataError(f"task {task}: data directory {d} not found (world.data_root={self.data_root})")
        why = spec.unsupported(PRESETS.get(self.cfg.backbone.preset).image_input)
        if why:  # the plan refuses such configs; this guards direct callers
            raise TicketbenchError(f"task {task}: backbone {self.cfg.backbone.preset} cannot do it: {why}")
        if spec.head == "region":
            # Region targets depend on the store's boxes (the region with the highest IoU with the gt box).
            examples = spec.loader(spec, d, split, regions=self.store_for(task))
        else:
            examples = spec.load(d, split)
        if not examples:
            raise DataError(f"task {task}: split '{split}' in {d} is empty")
        return examples

    def train_examples(self, task: str) -> list[Example]:
        return self.examples(task, TASKS.get(task).splits[0])

    def eval_examples(self, task: str) -> tuple[str, list[Example]]:
        split = TASKS.get(task).splits[1]
        ex = self.examples(task, split)
        limit = self.cfg.finetune.dev_limit
        return split, (ex[:limit] if limit else ex)

    def labels(self, task: str) -> list[str] | None:
        """The label space of a classify task, from its train split (None for other heads)."""
        if task not in self._labels:
            spec = TASKS.get(task)
            self._labels[task] = label_space(spec, self.train_examples(task)) if spec.head == "classify" else None
        return self._labels[task]

    @property
    def text_only(self) -> bool:
        return PRESETS.get(self.cfg.backbone.preset).image_input == "none"

    @property
    def corpus_split(self) -> tuple[str, str]:
        return TEXT_CORPUS if self.text_only else CORPUS

    def corpus(self) -> list[Example]:
        """The pre-training corpus (θ0's phases and `:pretrain` searches train on it): ITM's training captions
        (a text-only backbone: the text corpus's documents)."""
        return self.examples(*self.corpus_split)

    def split_digest(self, task: str, split: str) -> str:
        """`examples_digest` of a task split (taken once per Study, like the load)."""
        key = (task, split)
        if key not in self._digests:
            self._digests[key] = examples_digest(self.examples(task, split))
        return self._digests[key]

    def data_digest(self, objective: str) -> str:
        """The content identity of what work on `objective` (a task, or `pretrain`) trains and evaluates on:
        a task's train and evaluation splits and its label space, or the pre-training corpus. Run ids, search
        ids and θ0's key hash it, so changed examples are new ids and unchanged ones hit the cache.

        Image features and pixels are not hashed (whole stores are too large to read for an id): they enter
        as the world settings every key already hashes (toyland: version, seed, scale — which fix every
        pixel and feature; real data: the store paths and box policy), and through targets computed from
        them (RefCOCO+'s region index). A feature store replaced in place needs a new --out."""
        if objective not in self._data_digests:
            files = self._digest_files(objective)
            if files is None:  # a split's file is missing: reading it says so in one line
                self._data_digests[objective] = self._data_digest(objective)
            else:  # a re-run whose files did not change reads none of them (bench/core/statcache.py)
                self._data_digests[objective] = self._digest_cache.get_or_compute(
                    self._digest_depends(objective), files, lambda: self._data_digest(objective))
        return self._data_digests[objective]

    def _digest_splits(self, objective: str) -> list[tuple[str, str]]:
        if objective == PRETRAIN:
            return [self.corpus_split]
        return [(objective, split) for split in TASKS.get(objective).splits[:2]]

    def _digest_files(self, objective: str) -> list[Path] | None:
        """The files `data_digest(objective)` reads: its splits' files, and a region task's image store (its
        targets come from the boxes); None when one is missing."""
        try:
            files = [p for task, split in self._digest_splits(objective)
                     for p in split_paths(TASKS.get(task), self.data_root, split)]
        except DataError:
            return None
        tasks = {task for task, _ in self._digest_splits(objective)}
        if not self.text_only and any(TASKS.get(t).head == "region" for t in tasks):
            files.append(self.image_kind[1])
        return files

    def _digest_depends(self, objective: str) -> dict:
        """What a digest depends on besides its files: the loaders' versions and what selects the store."""
        return {"objective": objective, "ticketbench": __version__, "preset": self.cfg.backbone.preset,
                "tasks": {t: [TASKS.get(t).version, s] for t, s in self._digest_splits(objective)},
                "world": dataclasses.asdict(self.cfg.world)}

    def _data_digest(self, objective: str) -> str:
        if objective == PRETRAIN:
            return short_hash({"corpus": self.split_digest(*self.corpus_split)})
        train, evaluation = TASKS.get(objective).splits[:2]
        return short_hash({"train": self.split_digest(objective, train),
                           "eval": self.split_digest(objective, evaluation), "labels": self.labels(objective)})

    def check_digest(self, objective: str, planned: str) -> None:
        """A worker (another process, a Ray node with its own copy of the data) must read the data the
        planned id names: RunFailed if this copy's digest differs."""
        found = self.data_digest(objective)
        if found != planned:
            what = "the pre-training corpus" if objective == PRETRAIN else f"task {objective}"
            raise RunFailed(f"data of {what} differ from when the work was planned "
                            f"(digest {found}, planned {planned})")

    def chance(self, task: str, metric: str) -> float:
        """Chance level of a task's metric: measured on this world when its manifest has it
        (toyland computes a majority-per-question-type baseline), else the registry's nominal one."""
        manifest = self.data_root / "MANIFEST.json"
        if manifest.exists():
            value = (check_world_manifest(manifest, read_json(manifest, MAX_STORE_BYTES)).get("chance", {})
                     .get(task) or {}).get(metric)
            if isinstance(value, (int, float)):
                return float(value)
        return float(TASKS.get(task).chance)

    @functools.cached_property
    def image_kind(self) -> tuple[str, Path]:
        preset = PRESETS.get(self.cfg.backbone.preset)
        if preset.image_input == "pixels":
            return "pixels", self.data_root / "images"
        if self.cfg.world.features:
            p = Path(self.cfg.world.features)
            return ("lxmert" if p.suffix == ".tsv" else "uniter"), p
        if preset.family == "lxmert":
            return "lxmert", self.data_root / "features" / "lxmert" / "features.tsv"
        return "uniter", self.data_root / "features" / "uniter"

    @functools.cached_property
    def image_sources(self):
        """Image stores per image source (bench.data.sources): each task reads its own namespace."""
        preset = PRESETS.get(self.cfg.backbone.preset)
        # Pixels at the preset's own input size (toy-vilt: 64), not ViLT's 384: upscaling a 64-pixel
        # toyland image to 384 made every toy-vilt step ~36x longer for no information.
        return ImageSources(self.cfg.world, self.data_root, preset.image_input, preset.family,
                            shorter=preset.config.get("image_size", 384))

    def store_for(self, task: str):
        """The image store serving `task`'s image ids (None for a text-only backbone: it reads no images)."""
        if self.text_only:
            return None
        return self.image_sources.for_task(task)

    @property
    def store(self):
        """The pre-training corpus's image store (toyland: the world's one store)."""
        return self.store_for("pretrain")

    # ---- θ0 ---------------------------------------------------------------------------------
    def theta0(self, theta0_dir: str | Path):
        """A fresh copy of the pre-trained backbone (loaded once per process)."""
        return copy.deepcopy(_load_backbone_cached(str(theta0_dir)))


@functools.lru_cache(maxsize=4)
def cached_study(cfg: Config, out: str) -> Study:
    """One Study per (config, output dir) and process: the units of work a worker runs in turn (searches,
    pairs) load the world and θ0 once."""
    return Study(cfg, out)


@functools.lru_cache(maxsize=2)
def _load_backbone_cached(path: str):
    verify_theta0(path)  # a damaged θ0 fails here, once per process, before any training
    return load_backbone(path)
