"""`ticketbench gpu-check`: one training step of every paper recipe at full size, against the plan's models.

For each paper config (uniter, lxmert, vilt) and each of its tasks, the recipe as `Plan.finetune_settings`
gives it (its micro-batch split to `finetune.memory_gib`) is run for one micro-batch at its full shape — the
recipe's rows (examples × sequences, or the token budget's), texts at their cap, the widest images — through
the full-size backbone with random weights (no checkpoint or data needed) and a one-logit head: bf16 autocast,
the memory-efficient attention kernel where the backbone calls scaled_dot_product_attention (UNITER), fused
AdamW, inputs built on the host in pinned memory and copied without blocking. One warm-up step, then timed
steps. It prints, per recipe, the peak memory against the memory model (bench/backbones/memory.py), the step
time against the cost model's (bench/cost.py, at the assumed MFU), the host time to build and pin the
inputs, and the measured MFU; it fails when the peak memory is off the model by more than `MEMORY_TOLERANCE`
or the measured MFU is below `MFU_FLOOR` × the assumed one (the plan's GPU-hours would be off by more than
that). `--out OUT` writes `OUT/gpu-check.json`; `ticketbench plan --out OUT` then uses the measured MFUs.

`--dry-run` (no GPU): the same recipes, inputs, forward, backward and AdamW step on the CPU in float32 with
one example a recipe (full-size models), its saved activations measured with autograd's saved-tensors hook
and checked against the memory model at CPU precision; no CUDA, so no kernel choice, pinned copies, GPU
memory or MFU (the written file says dry_run and `plan` ignores it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.backbones.base import PixelBatch, RegionBatch
from bench.backbones.memory import (
    CPU,
    GIB,
    activation_bytes,
    gpu_precision,
    micro_batch_bytes,
    text_cap,
    widest_image_tokens,
)
from bench.backbones.presets import ARCHS, PRESETS
from bench.config import MFU, PEAK_TFLOPS, load_config
from bench.core.errors import TicketbenchError
from bench.core.io import atomic_write_json
from bench.cost import GPU_CHECK_FILE, flop_model
from bench.plan import Plan, build_plan
from bench.tasks import TASKS

FAMILIES = ("uniter", "lxmert", "vilt")
MEMORY_TOLERANCE = 0.25  # |measured / modelled − 1| of the peak memory (GPU), or of saved activations (CPU)
MFU_FLOOR = 0.5  # the measured MFU must reach half the assumed one


@dataclass
class Result:
    family: str
    preset: str
    task: str
    rows: int  # sequences in the micro-batch
    text: int
    image: int
    model_gib: float
    peak_gib: float | None
    step_s: float | None
    model_step_s: float
    host_s: float
    mfu: float | None
    dry_run: bool
    problems: tuple = ()

    def line(self) -> str:
        peak = "—" if self.peak_gib is None else f"{self.peak_gib:.1f}"
        step = "—" if self.step_s is None else f"{self.step_s:.3f}"
        mfu = "—" if self.mfu is None else f"{self.mfu:.0%}"
        return (f"{self.family:<7} {self.task:<13} {self.rows:>5} × ({self.text}+{self.image})  "
                f"memory {peak:>6} / model {self.model_gib:6.1f} GiB  step {step:>7} / model {self.model_step_s:.3f} s  "
                f"host {self.host_s:.3f} s  MFU {mfu:>4}  {'OK' if not self.problems else 'MISMATCH: ' + '; '.join(self.problems)}")


def _rows(settings, text: int, image: int, sequences: int) -> int:
    """Sequences in one micro-batch of the recipe."""
    if settings.batch_tokens:
        return max(settings.batch_tokens // (text + image), 1)
    return settings.batch_size * sequences


def _inputs(preset: str, rows: int, text: int, image: int, pin: bool):
    """Random token ids and images of the micro-batch's shape, built on the host (pinned on request)."""
    spec = PRESETS.get(preset)
    c = spec.config
    ids = torch.randint(1, c["vocab_size"], (rows, text))
    mask = torch.ones(rows, text, dtype=torch.long)
    if spec.image_input == "pixels":
        patch = c["patch_size"]
        h, w = (384, ((image - 1) // 12) * patch) if c["image_size"] == 384 else (c["image_size"], c["image_size"])
        images = PixelBatch(torch.randn(rows, 3, h, w), torch.ones(rows, h, w, dtype=torch.long))
    else:
        pos = 7 if spec.arch == "uniter" else 4
        images = RegionBatch(torch.randn(rows, image, c["feat_dim"]).half(), torch.rand(rows, image, pos),
                             torch.ones(rows, image, dtype=torch.bool))
    if pin:
        ids, mask = ids.pin_memory(), mask.pin_memory()
        images = type(images)(*(t.pin_memory() for t in dataclasses.astuple(images)))
    return ids, mask, images


def _to(batch, device):
    ids, mask, images = batch
    moved = type(images)(*(t.to(device, non_blocking=True) for t in dataclasses.astuple(images)))
    if isinstance(moved, RegionBatch):
        moved = RegionBatch(moved.features.float(), moved.positions, moved.mask)
    return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True), moved


def _attention_kernel(preset: str, device: torch.device):
    """UNITER's scaled_dot_product_attention: the memory-efficient kernel (masked batches); others eager."""
    if device.type != "cuda" or PRESETS.get(preset).arch != "uniter":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])


def saved_activation_bytes(params: set, fn) -> int:
    """Bytes of the distinct storages autograd saves during `fn()`, storages in `params` (the model's
    parameters' data pointers) left out: the activation memory the memory model predicts."""
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def check_recipe(plan: Plan, backbone: nn.Module, head: nn.Module, task: str, device: torch.device,
                 dry_run: bool, steps: int = 2, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS) -> Result:
    """One recipe's micro-batch: forward, backward, AdamW step; measured against the plan's models."""
    family, preset = plan.family, plan.config.backbone.preset
    spec = TASKS.get(task)
    settings = plan.finetune_settings(task, 0)
    note = spec.recipe_notes[spec.recipe_key(family, preset)]
    text = text_cap(preset, note.text_len, plan.config.finetune.max_text_len)
    image = widest_image_tokens(preset, plan.config.world.max_bb)
    rows = 1 * spec.sequences if dry_run else _rows(settings, text, image, spec.sequences)
    model_gib = micro_batch_bytes(preset, settings, text, image, spec.sequences, gpu_precision(preset)) / GIB
    fwd = flop_model(preset).forward(text, image)
    flops = 3.0 * fwd * rows
    model_step_s = flops / (mfu * peak_tflops * 1e12)
    params = [p for m in (backbone, head) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5, **({"fused": True} if device.type == "cuda" else {"foreach": False}))
    t0 = time.perf_counter()
    batch = _inputs(preset, rows, text, image, pin=device.type == "cuda")
    host_s = time.perf_counter() - t0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step():
        ids, mask, images = _to(batch, device)
        with amp, _attention_kernel(preset, device):
            loss = head(backbone.encode_tokens(ids, mask, images).pooled).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    problems = []
    if dry_run:  # saved activations of one example, float32, against the model at CPU precision
        ids, mask, images = _to(batch, device)
        pids = {p.untyped_storage().data_ptr() for p in params}
        measured = saved_activation_bytes(pids, lambda: head(backbone.encode_tokens(ids, mask, images).pooled).float()
                                .pow(2).mean().backward())
        opt.step()
        opt.zero_grad(set_to_none=True)
        modelled = rows * activation_bytes(preset, text, image, CPU)
        if abs(modelled / measured - 1) > MEMORY_TOLERANCE:
            problems.append(f"saved activations {measured / 2**20:.0f} MiB vs model {modelled / 2**20:.0f} MiB")
        return Result(family, preset, task, rows, text, image, model_gib, None, None, model_step_s, host_s, None,
                      True, tuple(problems))
    step()  # warm-up: kernels chosen, optimizer state allocated
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize(device)
    step_s = start.elapsed_time(end) / 1000 / steps
    peak_gib = torch.cuda.max_memory_allocated(device) / GIB
    measured_mfu = flops / step_s / (peak_tflops * 1e12)
    if abs(peak_gib / model_gib - 1) > MEMORY_TOLERANCE:
        problems.append(f"peak memory {peak_gib:.1f} GiB vs model {model_gib:.1f} GiB")
    if measured_mfu < MFU_FLOOR * mfu:
        problems.append(f"MFU {measured_mfu:.0%} below {MFU_FLOOR:g} × the assumed {mfu:.0%}")
    return Result(family, preset, task, rows, text, image, model_gib, peak_gib, step_s, model_step_s, host_s,
                  measured_mfu, False, tuple(problems))


def gpu_check(families=FAMILIES, tasks=None, out: str | Path | None = None, dry_run: bool = False,
              mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS, echo=print) -> list[Result]:
    """Every paper recipe of `families` (or only `tasks`); raises TicketbenchError on a mismatch."""
    if dry_run:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise TicketbenchError("gpu-check: no CUDA device here (--dry-run runs everything but CUDA on the CPU)")
        device = torch.device("cuda")
    results = []
    echo(f"gpu-check on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU (dry run)'}; "
         f"models at an assumed MFU of {mfu:.0%} of {peak_tflops:g} TFLOP/s")
    for family in families:
        plan = build_plan(load_config(f"paper-{family}"))
        preset = PRESETS.get(plan.config.backbone.preset)
        torch.manual_seed(0)
        backbone = ARCHS[preset.arch](preset.name, preset.family, preset.config, None).to(device).train()
        head = nn.Linear(backbone.hidden_size, 1).to(device)
        for task in plan.config.matrix.tasks:
            if tasks and task not in tasks:
                continue
            r = check_recipe(plan, backbone, head, task, device, dry_run, mfu=mfu, peak_tflops=peak_tflops)
            echo(r.line())
            results.append(r)
        del backbone, head
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / GPU_CHECK_FILE, {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "peak_tflops": peak_tflops, "assumed_mfu": mfu,
            "recipes": [dataclasses.asdict(r) for r in results]})
    bad = [r for r in results if r.problems]
    if bad:
        raise TicketbenchError(f"gpu-check: {len(bad)} recipe(s) disagree with the plan's models: "
                               + "; ".join(f"{r.family} {r.task}: {', '.join(r.problems)}" for r in bad))
    return results
