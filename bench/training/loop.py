"""The training loop on `accelerate`: AdamW, linear warm-up then decay to 0 within each call (so each
IMP round gets its own full schedule), gradient clipping and accumulation, bf16 autocast on CUDA,
ticket masks enforced on the gradients, and divergence reported as a failed run."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from bench.core.errors import RunFailed
from bench.core.settings import TrainSettings
from bench.tasks.base import Example
from bench.training.adversarial import adversarial_loss_fn
from bench.training.batching import bucketed_batches


@dataclass
class TrainLog:
    history: list = field(default_factory=list)
    seconds: float = 0.0
    snapshot: dict | None = None  # prunable weights at `snapshot_step` (late rewinding)


def _param_groups(model: nn.Module, s: TrainSettings, head_prefixes: Sequence[str]) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorms; the head may get a larger lr."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = any(name.startswith(h) for h in head_prefixes)
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        groups.setdefault((is_head, no_decay), []).append(p)
    return [
        {"params": ps, "lr": s.lr * (s.head_lr_mult if head else 1.0),
         "weight_decay": 0.0 if nd else s.weight_decay}
        for (head, nd), ps in groups.items()
    ]


_ACCELERATORS: dict = {}


def accelerator_for(device: torch.device, bf16: bool):
    """One `accelerate.Accelerator` per (device, precision) in a process (its state is a singleton)."""
    from accelerate import Accelerator

    mixed = "bf16" if device.type == "cuda" and bf16 else "no"
    key = (device.type, mixed)
    if key not in _ACCELERATORS:
        _ACCELERATORS[key] = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed)
    return _ACCELERATORS[key]


def train(
    model: nn.Module,
    loss_fn: Callable[[list[Example]], torch.Tensor | dict],
    examples: Sequence[Example],
    settings: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    enforcer=None,
    head_prefixes: Sequence[str] = ("head.",),
    snapshot_step: int = 0,
    snapshot_fn: Callable[[], dict] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    log_every: int = 10,
) -> TrainLog:
    """Train `model` in place for `settings.steps` optimizer steps on batches of `examples`.

    `loss_fn(batch)` returns a scalar loss or a dict of named losses (summed). With an `enforcer`
    (tickets.MaskEnforcer) the gradients of pruned weights are zeroed before every step, so pruned
    weights and their AdamW state stay exactly zero. Raises RunFailed on a non-finite loss.
    """
    from transformers import get_linear_schedule_with_warmup

    device = torch.device(device)
    if settings.adv_steps:
        loss_fn = adversarial_loss_fn(model, loss_fn, settings.adv_steps, settings.adv_epsilon, settings.adv_step_size)
    torch.manual_seed(settings.seed)
    accelerator = accelerator_for(device, settings.bf16)
    model.to(accelerator.device).train()
    opt = torch.optim.AdamW(_param_groups(model, settings, head_prefixes), lr=settings.lr,
                            betas=tuple(settings.betas), foreach=True)  # CPU default is the slower per-tensor loop
    warm = int(round(settings.warmup * settings.steps))
    sched = get_linear_schedule_with_warmup(opt, warm, max(settings.steps, 1))
    params = [p for g in opt.param_groups for p in g["params"]]
    batches = bucketed_batches(examples, settings.batch_size, settings.seed)
    log = TrainLog()
    t0 = time.perf_counter()
    if snapshot_step == 0 and snapshot_fn is not None:
        log.snapshot = snapshot_fn()
    # Per-part sums over the logging window: with one sampled objective per batch (pre-training),
    # a single step's parts would name only one of them.
    window: dict[str, list[float]] = {}
    for step in range(1, settings.steps + 1):
        total = 0.0
        parts: dict[str, float] = {}
        for _ in range(settings.grad_accum):
            with accelerator.autocast():
                out = loss_fn(next(batches))
            if isinstance(out, dict):
                parts = {k: parts.get(k, 0.0) + float(v.detach()) for k, v in out.items()}
                loss = sum(out.values())
            else:
                loss = out
            loss = loss / settings.grad_accum
            if not torch.isfinite(loss):
                raise RunFailed(f"non-finite loss ({loss.item()}) at step {step}")
            accelerator.backward(loss)
            total += float(loss.detach())
        if enforcer is not None:
            enforcer.mask_grads()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step == snapshot_step and snapshot_fn is not None:
            log.snapshot = snapshot_fn()
        for k, v in parts.items():
            acc = window.setdefault(k, [0.0, 0])
            acc[0] += v / settings.grad_accum
            acc[1] += 1
        if step % log_every == 0 or step == settings.steps:
            entry = {"step": step, "loss": round(total, 6), "lr": sched.get_last_lr()[0]}
            entry.update({k: round(v / n, 6) for k, (v, n) in sorted(window.items())})
            log.history.append(entry)
            window = {}
        if on_step is not None:
            on_step(step, settings.steps, total)
    log.seconds = time.perf_counter() - t0
    if not math.isfinite(total):
        raise RunFailed("non-finite loss at the end of training")
    return log
