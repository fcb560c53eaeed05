"""What a plan will cost, before anything runs: searches, runs, optimizer steps, tokens, FLOPs, GPU-hours,
and the wall-clock days on a given number of GPUs.

`estimate(plan, mfu=, peak_tflops=, regions=, world=, seeds=)` counts, per task and in total, the training
calls of every ticket search (a method that declares its schedule, IMP, or one fine-tuning per sparsity,
GMP and soft movement, trains once per ticket; other training methods once; training-free methods not at
all) and every fine-tuning run of the matrix, each with its effective `TrainSettings` from the plan, and
the evaluation of every run on its task's evaluation split, counted apart. `seeds` (a mapping (source,
sparsity, task, steps_factor) -> seeds, fractional allowed: an expected count under adaptive seeding)
replaces the plan's own seeds per cell; cells it leaves out do not run, and a search runs only when a cell
(or a search derived from it) needs its tickets.

FLOPs of one sequence (`FlopModel`): 2 × the matmul weights each token goes through (embedding tables do no
matmul and are left out; LXMERT's language layers see text tokens only, its vision layers image tokens only;
the pooler runs once a sequence) + 4 × hidden × query tokens × key tokens per attention layer; a trained
sequence costs 3 × its forward (backward ≈ 2 × forward), a forward-only one (evaluation, mined negatives) 1 ×.
A sequence is a text at its cap (the recipe's `text_len`, at most `finetune.max_text_len` and the preset's:
an upper bound) plus an image: `regions` region tokens (UNITER keeps 10–100 boxes above confidence 0.2,
assumed 50 unless --regions; LXMERT's features have 36) or ViLT's patches + [CLS] (`vilt_image_tokens`:
the shorter side resized to 384 and the longer to at most 640, in 32-pixel patches, so a 4:3 picture is
12 × 16 + 1 = 193 tokens and a batch pads every picture to its widest, 12 × 20 + 1 = 241 for a 5:3 one;
batches of 128–256 are counted at 241). A token-budget recipe (`batch_tokens`) trains exactly
batch_tokens × grad_accum tokens a step. Retrieval evaluation scores every text against every image:
n_texts × n_images forward passes. Pruned runs cost what dense runs cost: unstructured masks save no
matmul work.

Split sizes are the real releases' as declared in `bench/tasks/tasks.yaml` (`sizes:`). On toyland they are
counted from the world when it exists (`world=<out>/world`); without a world the evaluation is not estimated.
GPU-hours = FLOPs / (MFU × peak). The MFU is assumed (default 40 % of an H100 SXM's 989 dense bf16
TFLOP/s) until `ticketbench gpu-check --out OUT` has measured it per recipe and written `OUT/gpu-check.json`;
`ticketbench plan --out OUT` then uses and labels the measured values.

Wall-clock (`Estimate.schedule(gpus)`): the find stage runs its searches in parallel, at most one a GPU, each
an unbroken chain of training calls (IMP's rounds are sequential), placed longest first; the matrix starts
when every search has finished and spreads its runs over the GPUs (never shorter than its longest run).
`design_for_budget` picks, under a GPU-hour budget, which cells get how many seeds and says which of the
papers' claims that design can still test.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from bench.backbones import PRESETS
from bench.backbones.memory import (
    GIB,
    LXMERT_REGIONS,
    VILT_LONGER,
    VILT_SHORTER,
    gpu_precision,
    micro_batch_bytes,
    text_cap,
    vilt_image_tokens,
    widest_image_tokens,
)
from bench.backbones.presets import ARCHS
from bench.config import MFU, PEAK_TFLOPS
from bench.core.errors import ConfigError, DataError
from bench.core.io import MAX_STORE_BYTES, read_json
from bench.core.layout import Layout
from bench.core.settings import TrainSettings
from bench.core.source import DENSE, PRETRAIN
from bench.core.validate import check_world_manifest
from bench.plan import Plan
from bench.tasks import TASKS
from bench.tasks.base import PAPER_FAMILIES
from bench.tasks.files import task_dir
from tickets import get_method

REGIONS = 50  # assumed UNITER boxes an image at confidence > 0.2 (10–100 kept); --regions
PRETRAIN_ROW = "pretrain"
NO_TASK_ROW = "(no training)"
GPU_CHECK_FILE = "gpu-check.json"  # written by `ticketbench gpu-check --out OUT`: measured MFU per recipe


# ---- FLOPs of one sequence --------------------------------------------------------------------------

# Which tokens each matmul of an architecture sees, by module name: "text", "image", "all" (every token
# of the sequence) or "sequence" (once a sequence: the pooler). First match wins; a Linear or Conv that
# matches nothing is an error, so a new layer is never silently left out of the estimate.
TOKEN_KINDS = {
    "uniter": (("img_embeddings.", "image"), ("pooler.", "sequence"), ("encoder.layer.", "all")),
    "vilt": (("embeddings.patch_embeddings.", "image"), ("pooler.", "sequence"), ("encoder.layer.", "all")),
    "bert": (("pooler.", "sequence"), ("encoder.layer.", "text")),  # text only: the BERT study
    "lxmert": (("visn_fc.", "image"), ("r_layers.", "image"), ("visual_attention.", "all"), ("_self_att.", None),
               ("lang_", "text"), ("visn_", "image"), ("encoder.layer.", "text"), ("pooler.", "sequence")),
}


@dataclass(frozen=True)
class FlopModel:
    """Matmul weights per token kind and the attention layers of a backbone at full size."""

    preset: str
    hidden: int
    text_params: int  # matmul weights every text token goes through
    image_params: int  # ... every image token
    sequence_params: int  # ... once a sequence (the pooler)
    attention: tuple  # ((query kind, key kind, layers), ...) with kinds "text", "image", "all"

    @property
    def matmul_params(self) -> int:
        """Distinct matmul weights (a weight seen by every token is counted once)."""
        return self._distinct

    _distinct: int = 0

    def forward(self, text: float, image: float) -> float:
        """FLOPs of one sequence's forward with `text` and `image` tokens."""
        n = {"text": text, "image": image, "all": text + image}
        flops = 2.0 * (text * self.text_params + image * self.image_params + self.sequence_params)
        return flops + sum(4.0 * self.hidden * n[q] * n[k] * layers for q, k, layers in self.attention)


def _kind(arch: str, name: str) -> str | None:
    for pattern, kind in TOKEN_KINDS[arch]:
        if pattern in name:
            if kind is None:  # LXMERT's cross-layer self-attention: by the stream its name starts with
                return "text" if ".lang_self_att." in name else "image"
            return kind
    raise ConfigError(f"cost model: matmul '{name}' of a {arch} backbone has no token kind (bench/cost.py TOKEN_KINDS)")


@lru_cache(maxsize=None)
def flop_model(preset: str) -> FlopModel:
    """The preset built on the meta device (no memory, no weights): its matmul weights by token kind."""
    spec = PRESETS.get(preset)
    with torch.device("meta"):
        model = ARCHS[spec.arch](spec.name, spec.family, spec.config, None)
    per = {"text": 0, "image": 0, "all": 0, "sequence": 0}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            per[_kind(spec.arch, name)] += module.weight.numel()
    c = spec.config
    if spec.arch == "lxmert":
        x = c["x_layers"]
        attention = (("text", "text", c["l_layers"] + x), ("image", "image", c["r_layers"] + x),
                     ("text", "image", x), ("image", "text", x))
    else:
        attention = (("all", "all", c["num_layers"]),)
    return FlopModel(preset, c["hidden_size"], per["text"] + per["all"], per["image"] + per["all"], per["sequence"],
                     attention, _distinct=sum(per.values()))


@lru_cache(maxsize=8)
def _token_weights(preset: str) -> dict[str, int]:
    """{weight name: entries} of the preset's matmuls every token goes through (not the pooler's)."""
    spec = PRESETS.get(preset)
    with torch.device("meta"):
        model = ARCHS[spec.arch](spec.name, spec.family, spec.config, None)
    return {f"{name}.weight": m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and _kind(spec.arch, name) != "sequence"}


def kept_flops(preset: str, masks: Mapping) -> float:
    """A ticket's theoretical forward FLOPs per token as a fraction of dense's: the matmul weights a
    token goes through, each pruned weight's multiply-add skipped (what a sparse kernel could save at
    best; attention scores, norms and the pooler not counted). Masks on non-matmul weights save nothing."""
    weights = _token_weights(preset)
    pruned = sum(int((~m.bool()).sum()) for n, m in masks.items() if n in weights)
    return 1.0 - pruned / max(sum(weights.values()), 1)


def image_tokens(plan: Plan, regions: int | None) -> tuple[int, str]:
    """Tokens one image adds to a sequence, and how that number was chosen."""
    config = PRESETS.get(plan.config.backbone.preset).config
    if plan.image_input == "none":
        return 0, "none: a text-only backbone (the BERT study)"
    if plan.image_input == "pixels":
        patch = config["patch_size"]
        if config["image_size"] != VILT_SHORTER:  # a toy ViLT: square pictures of its own size
            side = config["image_size"] // patch
            return side * side + 1, f"patches: ({config['image_size']} / {patch})² + [CLS]"
        widest = vilt_image_tokens(VILT_SHORTER, VILT_LONGER, patch)
        return widest, (f"patches + [CLS], a batch padded to its widest picture: {VILT_SHORTER}×{VILT_LONGER} → "
                        f"{widest} (a 4:3 picture alone: {vilt_image_tokens(480, 640, patch)})")
    if regions is not None:
        if regions < 1:
            raise ConfigError(f"--regions: expected a positive number of regions an image, found {regions}")
        return regions, "regions, as given by --regions"
    if plan.family == "lxmert":
        return LXMERT_REGIONS, "regions: LXMERT's features have 36 fixed boxes"
    return REGIONS, "regions: assumed; UNITER keeps 10–100 boxes above confidence 0.2 (--regions)"


def _text_tokens(plan: Plan, cap: int | None) -> int:
    """A text's tokens at most: the recipe's cap (None: the preset's own, for captions), finetune.max_text_len
    and the position table, as `Backbone.set_max_text_len` cuts them."""
    preset = plan.config.backbone.preset
    return text_cap(preset, cap or PRESETS.get(preset).config["max_text_len"], plan.config.finetune.max_text_len)


def mined_sequences(spec, settings: TrainSettings, family: str) -> int:
    """Forward-only sequences a training example spends mining negatives: the margin loss mines
    `hard_negatives` candidates each way (0: UNITER's released sampled negatives, no mining); other heads
    as their task declares (`mined:`, the BCE of toy and minilm)."""
    if spec.head == "itm" and family in PAPER_FAMILIES:  # TaskModel's margin loss (the others' is BCE)
        return 2 * settings.hard_negatives
    return spec.mined


# ---- work and its cost ----------------------------------------------------------------------------

@dataclass
class Work:
    """One row of the estimate: a task's searches and runs (or the pre-training source's searches)."""

    searches: int = 0
    runs: float = 0  # fractional under expected (adaptive) seeds
    steps: float = 0  # optimizer steps, searches' training calls and runs together
    train_tokens: float = 0.0  # tokens through forward and backward
    forward_tokens: float = 0.0  # tokens through forward only (mining during training)
    eval_tokens: float | None = 0.0  # None: not estimated (sizes unknown)
    train_flops: float = 0.0  # forward + backward of trained sequences, forward of mined ones
    eval_flops: float | None = 0.0

    def add(self, other: "Work", times: float = 1.0) -> None:
        self.searches += other.searches
        self.runs += times * other.runs
        self.steps += times * other.steps
        self.train_tokens += times * other.train_tokens
        self.forward_tokens += times * other.forward_tokens
        self.train_flops += times * other.train_flops
        self.eval_tokens = None if self.eval_tokens is None or other.eval_tokens is None else (
            self.eval_tokens + times * other.eval_tokens)
        self.eval_flops = None if self.eval_flops is None or other.eval_flops is None else (
            self.eval_flops + times * other.eval_flops)


@dataclass
class Job:
    """A unit the scheduler places on one GPU: a search (its chain of training calls) or one run."""

    label: str
    row: str
    flops: float  # its GPU time is flops at its row's MFU


@dataclass
class Schedule:
    gpus: int
    find_hours: float  # wall hours of the find stage (its critical path)
    matrix_hours: float
    find_gpu_hours: float
    critical: str  # the search on the critical path

    @property
    def days(self) -> float:
        return (self.find_hours + self.matrix_hours) / 24.0

    def describe(self) -> str:
        util = self.find_gpu_hours / (self.find_hours * self.gpus) if self.find_hours else 1.0
        return (f"wall-clock on {self.gpus} GPU(s): {self.days:.2f} days = find {self.find_hours:,.1f} h (critical "
                f"path: {self.critical}; GPUs busy {util:.0%} of it) + matrix {self.matrix_hours:,.1f} h "
                "(counted from when every search has finished: an upper bound, since `run` starts a source's cells "
                "as soon as its tickets exist)")


@dataclass
class Estimate:
    preset: str
    params: int  # matmul weights (no embedding tables)
    image_tokens: int
    image_note: str
    mfu: float
    peak_tflops: float
    rows: dict = field(default_factory=dict)  # row name -> Work
    notes: list = field(default_factory=list)
    measured: dict = field(default_factory=dict)  # row name -> measured MFU (gpu-check)
    jobs: list = field(default_factory=list)  # (stage, Job, times): searches and runs for the schedule
    model: FlopModel | None = None

    def row_mfu(self, row: str) -> float:
        return self.measured.get(row, self.mfu)

    def train_flops(self, work: Work) -> float:
        return work.train_flops

    def eval_flops(self, work: Work) -> float:
        return work.eval_flops or 0.0

    def flops(self, work: Work) -> float:
        return self.train_flops(work) + self.eval_flops(work)

    def gpu_hours(self, flops: float, row: str | None = None) -> float:
        return flops / ((self.row_mfu(row) if row else self.mfu) * self.peak_tflops * 1e12) / 3600.0

    def row_hours(self, name: str, work: Work) -> tuple[float, float]:
        """(training, evaluation) GPU-hours of a row at its MFU."""
        return self.gpu_hours(self.train_flops(work), name), self.gpu_hours(self.eval_flops(work), name)

    @property
    def total(self) -> Work:
        out = Work()
        for w in self.rows.values():
            out.add(w)
        return out

    @property
    def total_hours(self) -> float:
        return sum(sum(self.row_hours(k, w)) for k, w in self.rows.items())

    def schedule(self, gpus: int) -> Schedule:
        """Wall-clock on `gpus` GPUs: searches in parallel (longest first, each on one GPU for its whole chain
        of rounds), then the matrix's runs spread over every GPU."""
        if gpus < 1:
            raise ConfigError(f"--gpus: expected a positive number of GPUs, found {gpus}")
        searches = sorted(((self.gpu_hours(j.flops, j.row), j.label) for stage, j, _ in self.jobs
                           if stage == "find"), reverse=True)
        loads = [(0.0, g) for g in range(gpus)]
        longest = searches[0] if searches else (0.0, "none")
        for hours, _ in searches:
            load, g = heapq.heappop(loads)
            heapq.heappush(loads, (load + hours, g))
        find = max(load for load, _ in loads)
        runs = [(self.gpu_hours(j.flops, j.row), times) for stage, j, times in self.jobs if stage == "matrix"]
        total = sum(h * t for h, t in runs)
        matrix = max(total / gpus, max((h for h, t in runs if t > 0), default=0.0))
        return Schedule(gpus, find, matrix, sum(h for h, _ in searches), f"{longest[1]} {longest[0]:,.1f} GPU-h")

    def describe(self, gpus: int | None = None) -> str:
        head = ("task", "searches", "runs", "opt. steps", "train tokens", "mined tokens", "eval tokens", "FLOPs",
                "MFU", "GPU-h train", "GPU-h eval", "GPU-h")
        body = []
        for name, w in list(self.rows.items()) + [("total", self.total)]:
            if name == "total":
                tr = sum(self.row_hours(k, v)[0] for k, v in self.rows.items())
                ev = sum(self.row_hours(k, v)[1] for k, v in self.rows.items())
                mfu = ""
            else:
                tr, ev = self.row_hours(name, w)
                mfu = f"{self.row_mfu(name):.0%}{'m' if name in self.measured else 'a'}"
            body.append((name, f"{w.searches:,}", _count(w.runs), _count(w.steps), _sci(w.train_tokens),
                         _sci(w.forward_tokens), "n/a" if w.eval_tokens is None else _sci(w.eval_tokens),
                         _sci(self.flops(w)), mfu, f"{tr:,.1f}", f"{ev:,.1f}", f"{tr + ev:,.1f}"))
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]

        def fmt(r):  # the task name left, the numbers right
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        measured = (f"; measured (m) by the store's first GPU runs or gpu-check: {', '.join(sorted(self.measured))}"
                    if self.measured else "")
        lines = [f"cost estimate (before anything runs): {self.preset}, {self.params / 1e6:.1f}M matmul parameters "
                 f"(embedding tables left out); {self.image_tokens} image tokens an image ({self.image_note})",
                 "FLOPs = 3 × forward of every trained sequence + 1 × forward of mined and evaluated ones; a forward = "
                 "2 × matmul weights × tokens through them + attention; retrieval evaluation: n_texts × n_images "
                 "forwards; texts at their cap",
                 f"GPU-hours at an MFU of {self.mfu:.0%} assumed (a) of {self.peak_tflops:g} TFLOP/s (--mfu, "
                 f"--peak-tflops; defaults {MFU:.0%} of {PEAK_TFLOPS:g}: H100 SXM, dense bf16){measured}",
                 fmt(head)] + [fmt(r) for r in body]
        total = self.total
        hours = self.total_hours
        lines.append(f"total: {total.searches} searches, {_count(total.runs)} runs, {_count(total.steps)} optimizer "
                     f"steps, {_sci(self.flops(total))} FLOPs, {f'{hours:,.0f}' if hours >= 10 else f'{hours:.2g}'} "
                     "GPU-hours")
        if gpus:
            lines.append(self.schedule(gpus).describe())
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _sci(x: float) -> str:
    return f"{x:.2e}" if x else "0"


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _training(settings: TrainSettings, seq: tuple[int, int], sequences: int, mined: int, model: FlopModel) -> Work:
    """One training call: its steps, tokens and FLOPs. `seq`: (text, image) tokens of one sequence."""
    per_sequence = sum(seq)
    per_example = per_sequence * sequences
    if settings.batch_tokens:
        tokens_per_step = float(settings.batch_tokens * settings.grad_accum)
        examples_per_step = tokens_per_step / per_example
    else:
        examples_per_step = float(settings.batch_size * settings.grad_accum)
        tokens_per_step = examples_per_step * per_example
    fwd = model.forward(*seq)
    trained = settings.steps * examples_per_step * sequences
    forwarded = settings.steps * examples_per_step * mined
    return Work(steps=settings.steps, train_tokens=settings.steps * tokens_per_step,
                forward_tokens=forwarded * per_sequence, train_flops=3.0 * fwd * trained + fwd * forwarded)


def _split_size(plan: Plan, task: str, world: Path | None) -> tuple[int, int | None] | None:
    """(examples, images for retrieval) of `task`'s evaluation split: declared for real data, counted
    in a toyland world that exists; None when unknown."""
    spec = TASKS.get(task)
    split = spec.splits[1]
    if plan.config.world.source == "real":
        return (spec.sizes[split], spec.sizes.get("images", {}).get(split)) if split in spec.sizes else None
    if world is None or not (world / "MANIFEST.json").is_file():
        return None
    if spec.head == "region":  # its loader needs the region store: the world's own count
        n = check_world_manifest(world / "MANIFEST.json", read_json(world / "MANIFEST.json", MAX_STORE_BYTES)
                                 ).get("counts", {}).get(task, {}).get(split)
        return (n, None) if n else None
    examples = spec.load(task_dir(spec, world), split)
    return len(examples), len({i for ex in examples for i in ex.image_ids})


def _evaluation(plan: Plan, task: str, seq: tuple[int, int], world: Path | None, model: FlopModel) -> Work:
    """Tokens and FLOPs of one evaluation of `task` on its evaluation split (None: sizes unknown)."""
    spec = TASKS.get(task)
    size = _split_size(plan, task, world)
    if size is None:
        return Work(eval_tokens=None, eval_flops=None)
    n, images = size
    limit = plan.config.finetune.dev_limit
    texts = min(n, limit) if limit else n
    if spec.head == "itm":  # every text against every image of the split
        sequences = float(texts * math.ceil(images * texts / n))
    else:
        sequences = float(texts * spec.sequences)
    return Work(eval_tokens=sequences * sum(seq), eval_flops=sequences * model.forward(*seq))


def cell_key(cell) -> tuple:
    """The key of a cell's seeds in a design: (source, sparsity, task, steps_factor)."""
    return (str(cell.source), round(float(cell.sparsity), 6), cell.task, cell.steps_factor)


def plan_seeds(plan: Plan) -> dict:
    """The plan's own design: how many seeds each (source, sparsity, task, steps_factor) gets."""
    out: dict = {}
    for c in plan.cells:
        out[cell_key(c)] = out.get(cell_key(c), 0) + 1
    return out


def measured_mfu(out: str | Path | None, preset: str) -> dict:
    """{task: MFU} that `ticketbench gpu-check --out OUT` measured for `preset` (empty when none)."""
    if out is None or not (Path(out) / GPU_CHECK_FILE).is_file():
        return {}
    path = Path(out) / GPU_CHECK_FILE
    data = read_json(path)
    rows = data.get("recipes", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected an object with a list 'recipes', found {type(data).__name__}")
    found = {}
    for r in rows:
        if r.get("preset") == preset and isinstance(r.get("mfu"), (int, float)) and not r.get("dry_run"):
            if not 0.0 < r["mfu"] <= 1.0:
                raise DataError(f"{path}: recipe {r.get('task')}: MFU must be in (0, 1], found {r['mfu']}")
            found[r["task"]] = float(r["mfu"])
    return found


def estimate(plan: Plan, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS, regions: int | None = None,
             world: str | Path | None = None, seeds: Mapping | None = None, measured: Mapping | None = None
             ) -> Estimate:
    """The cost of `plan` (see the module docstring for what is counted and how); `world`: a toyland
    world directory whose splits give the evaluation sizes; `seeds`: the design (`plan_seeds` by default);
    `measured`: {task: MFU} measured on a GPU (`measured_mfu`), used for those rows instead of `mfu`."""
    world = Path(world) if world is not None else None
    if not 0.0 < mfu <= 1.0:
        raise ConfigError(f"--mfu: expected a fraction in (0, 1], found {mfu}")
    if not peak_tflops > 0:
        raise ConfigError(f"--peak-tflops: expected a positive number, found {peak_tflops}")
    preset = plan.config.backbone.preset
    model = flop_model(preset)
    img, img_note = image_tokens(plan, regions)
    design = plan_seeds(plan) if seeds is None else {k: v for k, v in seeds.items() if v}
    est = Estimate(preset=preset, params=model.matmul_params, image_tokens=img, image_note=img_note, mfu=mfu,
                   peak_tflops=peak_tflops, measured=dict(measured or {}), model=model)
    rows = est.rows

    def seq(task: str) -> tuple[int, int]:
        spec = TASKS.get(task)  # the note of the recipe the runs use (every recipe has one)
        note = spec.recipe_notes[spec.recipe_key(plan.family, plan.config.backbone.preset)]
        return _text_tokens(plan, note.text_len), img

    # The searches some cell of the design needs (a derived search needs its base).
    needed = {k[0] for k in design}
    for search in reversed(plan.searches):
        if str(search.source) in needed and search.base is not None:
            needed.add(str(search.base))
    for search in plan.searches:
        if str(search.source) not in needed:
            continue
        objective = search.source.objective
        settings = plan.search_settings(search.source)
        name = NO_TASK_ROW if settings is None else (PRETRAIN_ROW if objective == PRETRAIN else objective)
        row = rows.setdefault(name, Work())
        row.searches += 1
        if settings is None:
            continue
        method = get_method(search.source.method)
        calls = len(search.sparsities) if method.yields or method.trains_per_sparsity else 1
        if objective == PRETRAIN:  # captions: one sequence, the preset's text cap
            one = _training(settings, (_text_tokens(plan, None), img), 1, 0, model)
        else:
            spec = TASKS.get(objective)
            one = _training(settings, seq(objective), spec.sequences, mined_sequences(spec, settings, plan.family), model)
        row.add(one, calls)
        est.jobs.append(("find", Job(f"{search.source} ({calls} call{'s' if calls > 1 else ''})", name,
                                     calls * one.train_flops), 1))

    for task in plan.config.matrix.tasks:
        keys = [k for k in design if k[2] == task]
        if not keys:
            continue
        spec = TASKS.get(task)
        evaluated = _evaluation(plan, task, seq(task), world, model)
        row = rows.setdefault(task, Work())
        for factor in sorted({k[3] for k in keys}):
            n = sum(design[k] for k in keys if k[3] == factor)
            settings = plan.finetune_settings(task, 0, factor)
            one = _training(settings, seq(task), spec.sequences, mined_sequences(spec, settings, plan.family), model)
            one.runs = 1
            one.eval_tokens, one.eval_flops = evaluated.eval_tokens, evaluated.eval_flops
            row.add(one, n)
            est.jobs.append(("matrix", Job(f"{task} run", task, one.train_flops + (one.eval_flops or 0.0)), n))

    # Tasks first (in the config's order), then the pre-training source, then training-free searches.
    order = list(plan.config.matrix.tasks) + [PRETRAIN_ROW, NO_TASK_ROW]
    est.rows = {k: rows[k] for k in sorted(rows, key=lambda k: order.index(k) if k in order else len(order))}
    if plan.config.world.source == "real":
        est.notes.append("split sizes: the real releases', declared in bench/tasks/tasks.yaml (sizes:)")
    elif world is not None and (world / "MANIFEST.json").is_file():
        est.notes.append(f"split sizes: counted in the toyland world {world}")
    else:
        est.notes.append("evaluation not estimated on toyland: its split sizes exist once the world does "
                         "(--out DIR with a world in DIR/world counts them)")
    if any(r.searches for r in rows.values()) and NO_TASK_ROW in rows:
        est.notes.append("training-free searches (random, pretrained magnitude, controls, score-based methods) "
                         "are counted as free")
    return est


# ---- a design that fits a budget ------------------------------------------------------------------

PRETRAIN_SPARSITIES = (0.6, 0.7)  # the pre-training ticket claims' sparsities (reports/claims.py)
RELAXED_RANGE = (0.5, 0.7)


@dataclass
class Design:
    """Which cells get how many seeds, what it costs, and which claims it can test."""

    name: str
    seeds: dict  # cell key -> seeds
    estimate: Estimate
    schedule: Schedule
    claims: list  # (claim, tasks it can use, or why not)
    left_out: list = field(default_factory=list)  # groups that did not fit

    def describe(self) -> str:
        e = self.estimate
        lines = [f"design: {self.name}: {e.total_hours:,.2f} GPU-hours, {_count(e.total.runs)} runs, "
                 f"{e.total.searches} searches", self.schedule.describe()]
        per_task: dict = {}  # (source, task, seeds) -> sparsities
        for (source, sparsity, task, factor), n in self.seeds.items():
            if n:
                key = (source + (f" ({factor}× steps)" if factor != 1 else ""), task, n)
                per_task.setdefault(key, []).append(sparsity)
        by: dict = {}  # (source, seeds, sparsities) -> tasks
        for (source, task, n), sps in per_task.items():
            by.setdefault((source, n, tuple(sorted(sps))), []).append(task)
        lines.append("cells (source: seeds at sparsities → tasks):")
        for (source, n, sps), tasks in sorted(by.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
            at = ", ".join(f"{s:.0%}" for s in sps)
            lines.append(f"  {source:<24} {_count(n)} seed(s) at {at} → {', '.join(tasks)}")
        lines.append("claims this design can test:")
        for claim, ok, why in self.claims:
            lines.append(f"  [{'yes' if ok else 'no '}] {claim}: {why}")
        if self.left_out:
            lines.append("left out (did not fit): " + "; ".join(self.left_out))
        return "\n".join(lines)


def testable_claims(plan: Plan, seeds: Mapping) -> list:
    """(claim, testable, tasks or why not) of the papers' claims under a design (reports/claims.py's rules:
    a task counts when dense has ≥ 2 seeds; relaxed tickets need ≥ 2 ticket seeds; a sparsity claim needs that
    sparsity; a retention claim needs random pruning beside it; A-vs-B claims need pairs at equal seeds)."""
    def n(source, s, task):
        return seeds.get((source, round(float(s), 6), task, 1), 0)

    tasks = [t for t in plan.config.matrix.tasks if n(str(DENSE), 0.0, t) >= 2]
    ladder = plan.ladder
    out = []

    def add(claim, ok_tasks, why_not):
        out.append((claim, bool(ok_tasks), f"on {', '.join(ok_tasks)}" if ok_tasks else why_not))

    strict = [t for t in tasks if any(n(f"imp:{t}", s, t) for s in ladder)]
    add("no IMP ticket strictly matches dense", strict, "needs own-task IMP cells and ≥ 2 dense seeds")
    lo, hi = RELAXED_RANGE
    relaxed = [t for t in tasks if any(n(f"imp:{t}", s, t) >= 2 for s in ladder if lo - 1e-9 <= s <= hi + 1e-9)
               and any(n(f"imp:{t}", s, t) >= 2 for s in ladder if s > hi + 1e-9)]
    add("relaxed tickets up to 50–70 % and not beyond", relaxed,
        "needs own-task IMP at ≥ 2 seeds in 50–70 % and above 70 %")
    for s in PRETRAIN_SPARSITIES:
        pre = [t for t in tasks if n("imp:pretrain", s, t) and n("random", s, t)]
        add(f"pre-training tickets at {s:.0%} keep the papers' share of dense", pre,
            f"needs imp:pretrain and random at {s:.0%}" + ("" if s in ladder else " (not on the ladder)"))
    vs = [t for t in tasks if any(min(n(f"imp:{t}", s, t), n("random", s, t)) for s in ladder)]
    add("IMP beats random pruning (paired)", vs, "needs own-task IMP and random at equal sparsities and seeds")
    return out


def _groups(plan: Plan, **kw) -> list:
    """Cell groups in the order a design adds them: what every claim needs first, the rest after; each
    group one task's cells of one kind at a seed count ((name, {key: seeds}))."""
    full = plan_seeds(plan)
    # Within a level the cheapest tasks first: a budget buys the most claims' tasks that way.
    rows = estimate(plan, seeds=full, **kw).rows
    run_cost = {t: rows[t].train_flops / max(rows[t].runs, 1) if t in rows else 0.0 for t in plan.config.matrix.tasks}
    tasks = sorted(plan.config.matrix.tasks, key=lambda t: run_cost[t])

    levels = [
        ("dense", lambda t, k: k[0] == str(DENSE) and k[3] == 1, lambda k: min(full[k], max(2, plan.config.matrix.seeds))),
        ("own-task IMP", lambda t, k: k[0] == f"imp:{t}", lambda k: 1),
        ("random", lambda t, k: k[0] == "random", lambda k: 1),
        ("imp:pretrain at 60/70 %", lambda t, k: k[0] == "imp:pretrain" and k[1] in PRETRAIN_SPARSITIES, lambda k: 1),
        ("own-task IMP, 2nd seed", lambda t, k: k[0] == f"imp:{t}", lambda k: min(full[k], 2)),
        ("random, 2nd seed", lambda t, k: k[0] == "random", lambda k: min(full[k], 2)),
        ("imp:pretrain", lambda t, k: k[0] == "imp:pretrain", lambda k: 1),
        ("every other cell, 1 seed", lambda t, k: True, lambda k: 1),
        ("every cell at the plan's seeds", lambda t, k: True, lambda k: full[k]),
    ]
    out = []
    for name, pred, count in levels:
        for t in tasks:
            ks = [k for k in full if k[2] == t and pred(t, k)]
            if ks:
                out.append((f"{name} on {t}", {k: count(k) for k in ks}))
    return out


def design_for_budget(plan: Plan, budget_hours: float, gpus: int, max_days: float | None = None, **kw) -> Design:
    """The largest design, adding `_groups` in order, whose estimate fits `budget_hours` GPU-hours (and
    `max_days` of wall-clock on `gpus` GPUs); a group that does not fit is skipped and the next tried.
    `kw` go to `estimate` (mfu, peak_tflops, regions, world, measured)."""
    if not budget_hours > 0:
        raise ConfigError(f"--budget: expected a positive number of GPU-hours, found {budget_hours}")
    seeds: dict = {}
    left = []
    for name, group in _groups(plan, **kw):
        trial = {**seeds, **{k: max(v, seeds.get(k, 0)) for k, v in group.items()}}
        if trial == seeds:
            continue
        est = estimate(plan, seeds=trial, **kw)
        sched = est.schedule(gpus)
        if est.total_hours <= budget_hours and (max_days is None or sched.days <= max_days):
            seeds = trial
        else:
            left.append(name)
    est = estimate(plan, seeds=seeds, **kw)
    limit = f"{budget_hours:g} GPU-hours" + (f" and {max_days:g} days" if max_days is not None else "")
    return Design(f"fits {limit}", seeds, est, est.schedule(gpus), testable_claims(plan, seeds),
                  _collapse(left))


def full_design(plan: Plan, gpus: int, **kw) -> Design:
    """The plan as configured: every cell at its seeds (the paper configs: 3)."""
    seeds = plan_seeds(plan)
    est = estimate(plan, seeds=seeds, **kw)
    return Design(f"every cell × {plan.config.matrix.seeds} seed(s), as configured", seeds, est, est.schedule(gpus),
                  testable_claims(plan, seeds))


def _collapse(names: list) -> list:
    """'random on vqa', 'random on gqa' → 'random on vqa, gqa'."""
    out: dict = {}
    for n in names:
        what, _, task = n.rpartition(" on ")
        out.setdefault(what, []).append(task)
    return [f"{k} on {', '.join(v)}" for k, v in out.items()]



# ---- the host's share of a step -------------------------------------------------------------------

HOST_RATIO_LIMIT = 0.5  # preparation must take at most half a step's GPU time, or the GPU waits


def step_flops(est: Estimate, plan: Plan, task: str) -> float:
    """Training FLOPs of one optimizer step of `task`'s recipe, as the estimate counts them."""
    settings = plan.finetune_settings(task, 0)
    spec = TASKS.get(task)
    note = spec.recipe_notes[spec.recipe_key(plan.family, plan.config.backbone.preset)]
    one = _training(settings, (_text_tokens(plan, note.text_len), est.image_tokens), spec.sequences,
                    mined_sequences(spec, settings, plan.family), est.model)
    return one.train_flops / settings.steps


def step_seconds(est: Estimate, plan: Plan, task: str) -> float:
    """Estimated GPU seconds of one optimizer step of `task`'s recipe (training FLOPs of a step at the row's MFU)."""
    return est.gpu_hours(step_flops(est, plan, task), task) * 3600.0


@dataclass(frozen=True)
class RunTiming:
    """What the first real fine-tuning runs on a GPU measured for a task (medians over its runs)."""

    mfu: float  # the estimate's training FLOPs of a step / (measured seconds a step × peak)
    host_wait: float  # share of training time spent waiting for the host's next batch
    runs: int


_MATCHED = ("batch_size", "batch_tokens", "grad_accum", "steps")  # a record's recipe must be the plan's on these


def run_timings(out: str | Path | None, plan: Plan, est: Estimate) -> dict:
    """{task: RunTiming} from the finished fine-tuning runs on a CUDA device in the store `out` whose backbone
    and recipe (batch, accumulation, steps; no `steps_factor`) are the plan's: the MFU they reached on their
    real steps and how long they waited for batches. Empty without such runs (the estimate stays assumed)."""
    if out is None or not Layout(out).runs.is_dir():
        return {}
    from statistics import median

    seen: dict[str, list] = {}
    for path in Layout(out).records():
        try:
            rec = read_json(path, MAX_STORE_BYTES)
        except DataError:
            continue  # a record being written, or damaged: `report` names it; a cost estimate does without it
        if not isinstance(rec, dict) or rec.get("status") != "done" or rec.get("steps_factor", 1) != 1:
            continue
        t, env, task = rec.get("timings") or {}, rec.get("env") or {}, rec.get("task")
        if (rec.get("backbone") != plan.config.backbone.preset or task not in plan.config.matrix.tasks
                or not str(env.get("device", "")).startswith("cuda") or not t.get("step_s")):
            continue
        want = plan.finetune_settings(task, 0)
        config = rec.get("config") or {}
        if any(k in config and config[k] != getattr(want, k) for k in _MATCHED):
            continue
        seen.setdefault(task, []).append((float(t["step_s"]), float(t.get("host_wait_s", 0.0)) / max(float(t.get("train_s") or 0.0), 1e-9)))
    out_: dict = {}
    for task, rows in seen.items():
        step = median(r[0] for r in rows)
        mfu = step_flops(est, plan, task) / (step * est.peak_tflops * 1e12)
        out_[task] = RunTiming(min(mfu, 1.0), median(r[1] for r in rows), len(rows))
    return out_


def host_ratio_model(plan: Plan, est: Estimate, timings: Mapping | None = None) -> str:
    """How the host-time ratio is formed, with this plan's estimated GPU time per step per task, the host seconds
    a step may take on one core, and (`timings`: `run_timings`) the host wait the plan's GPU runs measured."""
    workers = max(plan.config.finetune.loader_workers, 1)
    per = ", ".join(f"{t} {step_seconds(est, plan, t):.3g} s (host ≤ {HOST_RATIO_LIMIT * workers * step_seconds(est, plan, t):.3g} s)"
                    for t in plan.config.matrix.tasks)
    text = (f"host-time ratio = host seconds to prepare one step's batches (one core; benchmarks/test_bench_host_prep.py "
            f"measures it) / ({workers} loader worker(s) × estimated GPU seconds of that step); the GPU waits when "
            f"it exceeds 1, the suite asks ≤ {HOST_RATIO_LIMIT}. Estimated GPU seconds a step (and the host seconds "
            f"one core may take for it): {per}")
    if timings:
        text += ("\nmeasured on this store's GPU runs (share of training time waiting for batches; MFU reached): " +
                 ", ".join(f"{t} {m.host_wait:.0%} wait, MFU {m.mfu:.0%} ({m.runs} run(s))" for t, m in sorted(timings.items())))
    return text


def memory_lines(plan: Plan) -> str:
    """Each task's training micro-batch on a GPU by the activation model, and how the plan split it."""
    preset, ft = plan.config.backbone.preset, plan.config.finetune
    image = widest_image_tokens(preset, plan.config.world.max_bb)
    parts = []
    for task in plan.config.matrix.tasks:
        spec = TASKS.get(task)
        raw = spec.recipe(plan.family, preset).override(ft, seed=0)
        fitted = plan.finetune_settings(task, 0)
        note = spec.recipe_notes[spec.recipe_key(plan.family, preset)]
        size = micro_batch_bytes(preset, fitted, _text_tokens(plan, note.text_len), image, spec.sequences,
                                 gpu_precision(preset)) / GIB
        split = fitted.grad_accum // raw.grad_accum
        parts.append(f"{task} {size:.1f} GiB" + (f" (split in {split}, accumulation {fitted.grad_accum})" if split > 1 else ""))
    budget = f"budget finetune.memory_gib {ft.memory_gib:g}" if ft.memory_gib else "never split (memory_gib 0)"
    return (f"GPU memory of a training micro-batch ({gpu_precision(preset).name}; {image} image tokens at most; "
            f"{budget}): " + ", ".join(parts))
