"""The training loop: AdamW, linear warm-up then decay to 0 within each call (so each IMP round gets
its own full schedule), gradient clipping and accumulation, bf16 autocast and TF32 on CUDA (plain
`torch.autocast`, the device index honoured), ticket masks enforced on the gradients, and
divergence reported as a failed run."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from bench.core.device import place
from bench.core.errors import ConfigError, RunFailed
from bench.core.settings import TrainSettings
from bench.tasks.base import Example
from bench.training.adversarial import adversarial_loss_fn
from bench.training.batching import train_batches
from bench.training.checkpoint import Checkpoint
from bench.training.optim import BertAdam


@dataclass
class TrainLog:
    history: list = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0  # optimizer steps taken (fewer than settings.steps when a callback stopped training)
    trained: int = 0  # optimizer steps taken in this call (fewer than `steps` after resuming from a checkpoint)
    wait_seconds: float = 0.0  # of `seconds`, waiting for the next prepared batch (the host behind the device)


class Callback:
    """A hook into `train`: subclass and override what you need; `train` calls its `callbacks` in order.

    `begin()` before the first step (after a checkpoint's resume); `after_grads(step)` once the step's
    gradients are accumulated and masked, before clipping and the optimizer step (movement pruning reads
    them there) — a truthy return stops training after that step (its loss window is then logged and
    checked at once); `after_step(step, steps, loss)` once the step is taken, with the loss on logged
    steps and None between them."""

    def begin(self) -> None:
        pass

    def after_grads(self, step: int) -> bool | None:
        return None

    def after_step(self, step: int, steps: int, loss: float | None) -> None:
        pass


class OnStep(Callback):
    """`fn(step, steps, loss)` after every step (progress lines and bars)."""

    def __init__(self, fn: Callable[[int, int, float | None], None]):
        self.fn = fn

    def after_step(self, step: int, steps: int, loss: float | None) -> None:
        self.fn(step, steps, loss)


class OnGrads(Callback):
    """`fn()` after every step's masked gradients, before clipping; a truthy return stops training."""

    def __init__(self, fn: Callable[[], bool | None]):
        self.fn = fn

    def after_grads(self, step: int) -> bool | None:
        return self.fn()


class Snapshot(Callback):
    """`value`: what `fn()` returns at step `step` (0: before the first step) — late rewinding's θk."""

    def __init__(self, step: int, fn: Callable[[], dict]):
        self.step, self.fn, self.value = step, fn, None

    def begin(self) -> None:
        if self.step == 0:
            self.value = self.fn()

    def after_step(self, step: int, steps: int, loss: float | None) -> None:
        if step == self.step:
            self.value = self.fn()


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


def concrete_device(device: torch.device | str) -> torch.device:
    """A concrete device: 'cuda' gets the current CUDA device's index (so 'cuda:1' stays cuda:1)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def use_tf32(device: torch.device) -> None:
    """TF32 tensor cores for the fp32 matmuls and convolutions on CUDA (bf16 autocast covers the rest)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked, a no-op context elsewhere (torch.autocast directly: one
    accelerate Accelerator per process could not serve two precisions)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_adamw(groups: list[dict], settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel on CPU and CUDA (one vectorised pass per tensor), else the
    multi-tensor path. Measured on MiniLM's 10.6M prunable weights, 1 CPU thread: fused 10 ms,
    foreach 50 ms dense and 100 ms with a 70 % ticket (its `_foreach_sqrt` is ~2x slower on the zero
    moments of pruned weights), the default per-tensor loop slower still (BENCHMARKS.md, benchmark 3).
    A recipe with `optimizer: bertadam` gets LXMERT's BertAdam (bench/training/optim.py), which decays
    every parameter as LXMERT does."""
    if settings.optimizer == "bertadam":
        for g in groups:
            g["weight_decay"] = settings.weight_decay
        return BertAdam(groups, lr=settings.lr, betas=tuple(settings.betas))
    if settings.optimizer != "adamw":
        raise ConfigError(f"optimizer: expected adamw or bertadam, found {settings.optimizer!r}")
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=settings.lr, betas=tuple(settings.betas),
                             **({"fused": True} if fused else {"foreach": True}))


def _host(values: list[torch.Tensor]) -> list[float]:
    """Device scalars to Python floats: the loop's only host synchronisation, once per log window."""
    return torch.stack([v.float() for v in values]).tolist() if values else []


def train(
    model: nn.Module,
    loss_fn: Callable[[list[Example]], torch.Tensor | dict],
    examples: Sequence[Example],
    settings: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    enforcer=None,
    head_prefixes: Sequence[str] = ("head.",),
    callbacks: Sequence[Callback] = (),
    log_every: int = 10,
    checkpoint: Checkpoint | None = None,
    loader_workers: int = 0,
) -> TrainLog:
    """Train `model` in place for `settings.steps` optimizer steps on batches of `examples`.

    `loss_fn(batch)` returns a scalar loss or a dict of named losses (summed). A `loss_fn` with a host
    half (`prepare`, e.g. `TaskModel.batch_loss(store)`) gets batches prepared by a DataLoader in
    `loader_workers` processes (bench/training/batching.py); a plain callable gets lists of Examples.
    With an `enforcer`
    (tickets.MaskEnforcer) the gradients of pruned weights are zeroed before clipping and every
    step, so pruned weights and their AdamW state stay exactly zero. Losses stay on the device and
    are read once per log window (no per-step synchronisation); a non-finite loss raises RunFailed
    at the end of its window, naming its step. `callbacks` (`Callback`: `OnStep`, `OnGrads`,
    `Snapshot` or your own) are called before the first step, after each step's masked gradients
    (one may stop training) and after each step.
    `checkpoint` (bench.training.checkpoint.Checkpoint) resumes from its last save, if any, and saves
    every N minutes at the end of a log window.
    """
    from transformers import get_linear_schedule_with_warmup

    device = concrete_device(device)
    use_tf32(device)
    if settings.adv_steps:
        loss_fn = adversarial_loss_fn(model, loss_fn, settings.adv_steps, settings.adv_epsilon, settings.adv_step_size)
    torch.manual_seed(settings.seed)
    place(model, device).train()
    opt = make_adamw(_param_groups(model, settings, head_prefixes), settings, device)
    warm = int(round(settings.warmup * settings.steps))
    sched = get_linear_schedule_with_warmup(opt, warm, max(settings.steps, 1))
    params = [p for g in opt.param_groups for p in g["params"]]
    log = TrainLog()
    first = 1

    def make_batches(skip: int):
        return train_batches(loss_fn, examples, settings, device, loader_workers, skip=skip)

    if checkpoint is not None:
        if any(isinstance(c, Snapshot) for c in callbacks):
            raise ValueError("train: a checkpoint does not carry the late-rewinding snapshot; pass one or the other")
        batches, first = checkpoint.resume(model, opt, sched, make_batches, log.history, settings.steps)
    else:
        batches = make_batches(0)
    t0 = time.perf_counter()
    for c in callbacks:
        c.begin()
    # The window's per-step totals and per-part sums (with one sampled objective per batch, a single
    # step's parts would name only one objective), as device tensors until the window is logged.
    totals: list[torch.Tensor] = []
    window: dict[str, list] = {}
    for step in range(first, settings.steps + 1):
        total: torch.Tensor | float = 0.0
        parts: dict[str, torch.Tensor] = {}
        for _ in range(settings.grad_accum):
            tw = time.perf_counter()
            batch = next(batches)
            log.wait_seconds += time.perf_counter() - tw
            with autocast(device, settings.bf16):
                out = loss_fn(batch)
            if isinstance(out, dict):
                for k, v in out.items():
                    parts[k] = parts.get(k, 0.0) + v.detach().float()
                loss = sum(out.values())
            else:
                loss = out
            loss = loss / settings.grad_accum
            loss.backward()
            total = total + loss.detach().float()
        totals.append(total)
        for k, v in parts.items():
            acc = window.setdefault(k, [0.0, 0])
            acc[0] = acc[0] + v / settings.grad_accum
            acc[1] += 1
        if enforcer is not None:
            enforcer.mask_grads()
        stop = any([bool(c.after_grads(step)) for c in callbacks])  # a list: every callback sees every step
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        logged = None
        if step % log_every == 0 or step == settings.steps or stop:
            names = sorted(window)
            values = _host(totals + [window[k][0] for k in names])
            for i, v in enumerate(values[:len(totals)]):
                if not math.isfinite(v):
                    raise RunFailed(f"non-finite loss ({v}) at step {step - len(totals) + 1 + i}")
            logged = values[len(totals) - 1]
            entry = {"step": step, "loss": round(logged, 6), "lr": sched.get_last_lr()[0]}
            entry.update({k: round(v / window[k][1], 6) for k, v in zip(names, values[len(totals):])})
            log.history.append(entry)
            totals, window = [], {}
            if checkpoint is not None and not stop:  # between windows: nothing of a window is pending
                checkpoint.maybe_save(step, settings.steps, model, opt, sched, log.history)
        for c in callbacks:
            c.after_step(step, settings.steps, logged)
        log.steps = step
        log.trained += 1
        if stop:
            break
    log.seconds = time.perf_counter() - t0
    return log
