"""What a plan will cost, before anything runs: searches, runs, optimizer steps, tokens, FLOPs, GPU-hours.

`estimate(plan, mfu=, peak_tflops=, regions=)` counts, per task and in total, the training calls of every
ticket search (a method that declares its schedule, IMP, or one fine-tuning per sparsity, GMP and soft
movement, trains once per ticket; other training methods once; training-free methods not at all) and every fine-tuning run of the matrix, each with its effective
`TrainSettings` from the plan, and the evaluation of every run on its task's evaluation split.

FLOPs ≈ 6 × parameters × tokens trained + 2 × parameters × tokens run forward only (evaluation, and the
negatives retrieval mines without gradients). A token is a text token or an image token of one encoded
sequence: texts are counted at their cap (the recipe's `text_len`, at most `finetune.max_text_len` and
the preset's), so the estimate is an upper one for text; an image is `regions` region tokens (UNITER
keeps 10–100 boxes above confidence 0.2; LXMERT's features have 36) or ViLT's patches + its [CLS]
((384 / 32)² + 1 = 145). A token-budget recipe (`batch_tokens`) trains exactly batch_tokens × grad_accum
tokens a step. Retrieval evaluation scores every text against every image: n_texts × n_images forward
passes (single-stream models encode each pair; LXMERT is scored the same way here). Pruned runs cost what
dense runs cost: unstructured masks save no matmul work. All parameters count (embedding lookups too),
which overstates two-stream LXMERT, whose language and region layers each see one modality.

Split sizes are the real releases' as declared in `bench/tasks/tasks.yaml` (`sizes:`). On toyland they are
counted from the world when it exists (`world=<out>/world`: each evaluation split read by its task's loader,
RefCOCO+'s from the world's MANIFEST.json, whose regions the loader would need); without a world the
evaluation is not estimated.
GPU-hours = FLOPs / (MFU × peak), at a stated MFU and peak (default 40 % of an H100 SXM's 989 dense bf16
TFLOP/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.backbones import PRESETS
from bench.backbones.presets import count_parameters
from bench.config import MFU, PEAK_TFLOPS
from bench.core.errors import ConfigError
from bench.core.io import read_json
from bench.core.settings import TrainSettings
from bench.core.source import PRETRAIN
from bench.plan import Plan
from bench.tasks import TASKS
from bench.tasks.files import task_dir
from tickets import get_method

REGIONS = 50  # typical UNITER boxes per image at confidence > 0.2 (10–100 kept)
LXMERT_REGIONS = 36  # LXMERT's released features: 36 fixed boxes an image
PRETRAIN_ROW = "pretrain"
NO_TASK_ROW = "(no training)"


@dataclass
class Work:
    """One row of the estimate: a task's searches and runs (or the pre-training source's searches)."""

    searches: int = 0
    runs: int = 0
    steps: int = 0  # optimizer steps, searches' training calls and runs together
    train_tokens: float = 0.0  # tokens through forward and backward
    forward_tokens: float = 0.0  # tokens through forward only (mining during training)
    eval_tokens: float | None = 0.0  # None: not estimated (sizes unknown)

    def add(self, other: "Work") -> None:
        self.searches += other.searches
        self.runs += other.runs
        self.steps += other.steps
        self.train_tokens += other.train_tokens
        self.forward_tokens += other.forward_tokens
        self.eval_tokens = None if self.eval_tokens is None or other.eval_tokens is None else (
            self.eval_tokens + other.eval_tokens)


@dataclass
class Estimate:
    preset: str
    params: int
    image_tokens: int
    image_note: str
    mfu: float
    peak_tflops: float
    rows: dict = field(default_factory=dict)  # row name -> Work
    notes: list = field(default_factory=list)

    def train_flops(self, work: Work) -> float:
        return 6.0 * self.params * work.train_tokens + 2.0 * self.params * work.forward_tokens

    def eval_flops(self, work: Work) -> float:
        return 2.0 * self.params * (work.eval_tokens or 0.0)

    def flops(self, work: Work) -> float:
        return self.train_flops(work) + self.eval_flops(work)

    def gpu_hours(self, flops: float) -> float:
        return flops / (self.mfu * self.peak_tflops * 1e12) / 3600.0

    @property
    def total(self) -> Work:
        out = Work()
        for w in self.rows.values():
            out.add(w)
        return out

    def describe(self) -> str:
        head = ("task", "searches", "runs", "opt. steps", "train tokens", "mined tokens", "eval tokens", "FLOPs",
                "GPU-h train", "GPU-h eval", "GPU-h")
        body = []
        for name, w in list(self.rows.items()) + [("total", self.total)]:
            tf, ef = self.train_flops(w), self.eval_flops(w)
            body.append((name, f"{w.searches:,}", f"{w.runs:,}", f"{w.steps:,}", _sci(w.train_tokens),
                         _sci(w.forward_tokens), "n/a" if w.eval_tokens is None else _sci(w.eval_tokens), _sci(tf + ef),
                         f"{self.gpu_hours(tf):,.1f}", f"{self.gpu_hours(ef):,.1f}", f"{self.gpu_hours(tf + ef):,.1f}"))
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]

        def fmt(r):  # the task name left, the numbers right
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        lines = [f"cost estimate (before anything runs): {self.preset}, {self.params / 1e6:.1f}M parameters; "
                 f"{self.image_tokens} image tokens an image ({self.image_note})",
                 "FLOPs ≈ 6 × parameters × tokens trained + 2 × parameters × tokens forward only (evaluation, "
                 "mined negatives); retrieval evaluation: n_texts × n_images forwards; texts at their cap",
                 f"GPU-hours at {self.mfu:.0%} MFU of {self.peak_tflops:g} TFLOP/s (--mfu, --peak-tflops; "
                 f"defaults {MFU:.0%} of {PEAK_TFLOPS:g}: H100 SXM, dense bf16)",
                 fmt(head)] + [fmt(r) for r in body]
        total = self.total
        hours = self.gpu_hours(self.flops(total))
        lines.append(f"total: {total.searches} searches, {total.runs:,} runs, {total.steps:,} optimizer steps, "
                     f"{_sci(self.flops(total))} FLOPs, {f'{hours:,.0f}' if hours >= 10 else f'{hours:.2g}'} GPU-hours")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _sci(x: float) -> str:
    return f"{x:.2e}" if x else "0"


def image_tokens(plan: Plan, regions: int | None) -> tuple[int, str]:
    """Tokens one image adds to a sequence, and how that number was chosen."""
    config = PRESETS.get(plan.config.backbone.preset).config
    if plan.image_input == "pixels":
        side = config["image_size"] // config["patch_size"]
        return side * side + 1, f"patches: ({config['image_size']} / {config['patch_size']})² + [CLS]"
    if regions is not None:
        if regions < 1:
            raise ConfigError(f"--regions: expected a positive number of regions an image, found {regions}")
        return regions, "regions, as given by --regions"
    if plan.family == "lxmert":
        return LXMERT_REGIONS, "regions: LXMERT's features have 36 fixed boxes; --regions"
    return REGIONS, "regions: a typical count, UNITER keeps 10–100 boxes above confidence 0.2; --regions"


def _text_tokens(plan: Plan, cap: int | None) -> int:
    preset_cap = PRESETS.get(plan.config.backbone.preset).config["max_text_len"]
    return min(c for c in (cap, plan.config.finetune.max_text_len, preset_cap) if c)


def _training(settings: TrainSettings, seq_tokens: int, sequences: int, mined: int) -> Work:
    """One training call: its steps and tokens."""
    per_example = seq_tokens * sequences
    if settings.batch_tokens:
        tokens_per_step = float(settings.batch_tokens * settings.grad_accum)
        examples_per_step = tokens_per_step / per_example
    else:
        examples_per_step = float(settings.batch_size * settings.grad_accum)
        tokens_per_step = examples_per_step * per_example
    return Work(steps=settings.steps, train_tokens=settings.steps * tokens_per_step,
                forward_tokens=settings.steps * examples_per_step * mined * seq_tokens)


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
        n = read_json(world / "MANIFEST.json")["counts"].get(task, {}).get(split)
        return (n, None) if n else None
    examples = spec.load(task_dir(spec, world), split)
    return len(examples), len({i for ex in examples for i in ex.image_ids})


def _evaluation(plan: Plan, task: str, seq_tokens: int, world: Path | None) -> float | None:
    """Tokens of one evaluation of `task` on its evaluation split (None: sizes unknown)."""
    spec = TASKS.get(task)
    size = _split_size(plan, task, world)
    if size is None:
        return None
    n, images = size
    limit = plan.config.finetune.dev_limit
    if spec.head == "itm":  # every text against every image of the split
        texts = min(n, limit) if limit else n
        images = math.ceil(images * texts / n)
        return float(texts * images * seq_tokens)
    return float((min(n, limit) if limit else n) * spec.sequences * seq_tokens)


def estimate(plan: Plan, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS, regions: int | None = None,
             world: str | Path | None = None) -> Estimate:
    """The cost of `plan` (see the module docstring for what is counted and how); `world`: a toyland
    world directory whose splits give the evaluation sizes."""
    world = Path(world) if world is not None else None
    if not 0.0 < mfu <= 1.0:
        raise ConfigError(f"--mfu: expected a fraction in (0, 1], found {mfu}")
    if not peak_tflops > 0:
        raise ConfigError(f"--peak-tflops: expected a positive number, found {peak_tflops}")
    preset = plan.config.backbone.preset
    img, img_note = image_tokens(plan, regions)
    est = Estimate(preset=preset, params=count_parameters(preset), image_tokens=img, image_note=img_note,
                   mfu=mfu, peak_tflops=peak_tflops)
    rows = est.rows

    def seq_tokens(task: str) -> int:
        spec = TASKS.get(task)  # the note of the recipe the runs use (every recipe has one)
        note = spec.recipe_notes[spec.recipe_key(plan.family, plan.config.backbone.preset)]
        return _text_tokens(plan, note.text_len) + img

    for search in plan.searches:
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
            one = _training(settings, _text_tokens(plan, None) + img, 1, 0)
        else:
            spec = TASKS.get(objective)
            one = _training(settings, seq_tokens(objective), spec.sequences, spec.mined)
        row.steps += calls * one.steps
        row.train_tokens += calls * one.train_tokens
        row.forward_tokens += calls * one.forward_tokens

    for task in plan.config.matrix.tasks:
        n_runs = sum(1 for c in plan.cells if c.task == task)
        if not n_runs:
            continue
        # In recipe-length runs: the dense convergence reference trains steps_factor × the recipe.
        trained = sum(c.steps_factor for c in plan.cells if c.task == task)
        spec = TASKS.get(task)
        one = _training(plan.finetune_settings(task, 0), seq_tokens(task), spec.sequences, spec.mined)
        evaluated = _evaluation(plan, task, seq_tokens(task), world)
        row = rows.setdefault(task, Work())
        row.runs += n_runs
        row.steps += trained * one.steps
        row.train_tokens += trained * one.train_tokens
        row.forward_tokens += trained * one.forward_tokens
        row.eval_tokens = None if evaluated is None or row.eval_tokens is None else row.eval_tokens + n_runs * evaluated

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
