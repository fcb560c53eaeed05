"""Where batches come from: the seeded sampler (index lists) and the DataLoader that prepares them.

The sampler is an endless, seeded stream of index lists (`batch_stream`): length-bucketed batches of
`batch_size` examples, or, with `batch_tokens`, of as many examples as fit a token budget. It runs in
the training process and draws from its own `random.Random(seed)`, so a resumed run re-creates it and
skips the batches it consumed (`skip`) without preparing them.

`prepared_batches` feeds the training loop and evaluation: a `torch.utils.data.DataLoader` whose
collate function is the loss's host half (`loss.prepare`, see bench/backbones/task_model.py), run in
`workers` worker processes (forked: the stores reopen their files per process; with 0 workers the
same function runs in the training process), pinned when the device is CUDA, copied with
`non_blocking`. Preparation draws no random numbers, and the loader yields batches in sampler order,
so the numbers do not depend on the worker count.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from bench.core.errors import ConfigError, TicketbenchError
from bench.core.settings import TrainSettings
from bench.tasks.base import Example

log = logging.getLogger(__name__)


def _length(ex: Example) -> int:
    return sum(len(t.split()) for t in ex.texts)


def _fixed_batches(examples: Sequence[Example], batch_size: int, seed: int, bucket_factor: int) -> Iterator[list[int]]:
    """Shuffle each epoch, sort chunks of `bucket_factor` batches by text length (less padding), then
    shuffle the batch order so lengths don't drift through an epoch; short batches are dropped."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        batches = []
        chunk = batch_size * bucket_factor
        for start in range(0, len(order), chunk):
            block = sorted(order[start:start + chunk], key=lambda i: _length(examples[i]))
            batches += [block[j:j + batch_size] for j in range(0, len(block), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            if len(b) == batch_size or len(examples) < batch_size:
                yield b


def _token_batches(examples: Sequence[Example], budget: int, seed: int, cost: Callable[[Example], int],
                   bucket_factor: int) -> Iterator[list[int]]:
    """Batches of at most `budget` tokens, counted as UNITER's token sampler does: the batch's size times
    its longest example (text + image tokens), which bounds the padded tensors and the summed tokens.
    Chunks of about `bucket_factor` batches are sorted by tokens, the batch order shuffled per epoch."""
    costs = [int(cost(ex)) for ex in examples]
    worst = max(range(len(costs)), key=costs.__getitem__)
    if costs[worst] > budget:
        raise ConfigError(f"batch_tokens: {budget} is less than example {examples[worst].uid}'s "
                          f"{costs[worst]} text + image tokens (raise batch_tokens to at least that)")
    rng = random.Random(seed)
    order = list(range(len(examples)))
    chunk = max(1, budget * len(costs) // max(sum(costs), 1)) * bucket_factor
    while True:
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), chunk):
            current: list[int] = []
            longest = 0
            for i in sorted(order[start:start + chunk], key=costs.__getitem__):
                if current and max(longest, costs[i]) * (len(current) + 1) > budget:
                    batches.append(current)
                    current, longest = [], 0
                current.append(i)
                longest = max(longest, costs[i])
            batches.append(current)
        rng.shuffle(batches)
        yield from batches


def batch_stream(examples: Sequence[Example], settings: TrainSettings, seed: int,
                 cost: Callable[[Example], int] | None = None, bucket_factor: int = 50) -> Iterator[list[int]]:
    """The sampler: an endless, seeded stream of index lists into `examples` (see the module docstring).
    `cost(example)` counts an example's text and image tokens; `settings.batch_tokens` needs it."""
    if not examples:
        raise ValueError("no training examples")
    if settings.batch_tokens is None:
        return _fixed_batches(examples, settings.batch_size, seed, bucket_factor)
    if cost is None:
        raise ConfigError("batch_tokens: this loss cannot count tokens (a TaskModel or PretrainModel "
                          "`batch_loss` can); leave batch_tokens unset to batch by batch_size")
    return _token_batches(examples, settings.batch_tokens, seed, cost, bucket_factor)


def bucketed_batches(
    examples: Sequence[Example], batch_size: int, seed: int, bucket_factor: int = 50
) -> Iterator[list[Example]]:
    """Endless stream of batches of `batch_size` examples (the sampler's, as Examples)."""
    if not examples:
        raise ValueError("no training examples")
    for b in _fixed_batches(examples, batch_size, seed, bucket_factor):
        yield [examples[i] for i in b]


def eval_index_batches(examples: Sequence[Example], batch_size: int) -> Iterator[list[int]]:
    """Deterministic evaluation batches, sorted by length (predictions are keyed by uid)."""
    order = sorted(range(len(examples)), key=lambda i: _length(examples[i]))
    for j in range(0, len(order), batch_size):
        yield order[j:j + batch_size]


def eval_batches(examples: Sequence[Example], batch_size: int) -> Iterator[list[Example]]:
    for b in eval_index_batches(examples, batch_size):
        yield [examples[i] for i in b]


# ---- the DataLoader --------------------------------------------------------------------------------

class _Failed:
    """A user error raised while preparing a batch, carried to the training process (a worker's
    exception would arrive wrapped in its traceback, no longer one line)."""

    def __init__(self, error: TicketbenchError):
        self.error = error


class _Prepare:
    """The loader's collate function: the loss's host half, or the Examples themselves."""

    def __init__(self, prepare: Callable | None):
        self.prepare = prepare

    def __call__(self, examples: list) -> Any:
        if self.prepare is None:
            return examples
        try:
            return self.prepare(examples)
        except TicketbenchError as e:
            return _Failed(e)


class _Batches(torch.utils.data.Sampler):
    """A batch sampler over an iterable of index lists (the loader iterates it once)."""

    def __init__(self, batches: Iterable[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def usable_workers(requested: int) -> tuple[int, str]:
    """The worker count a DataLoader can have here, and why it is fewer than asked ('' when not)."""
    if requested <= 0:
        return 0, ""
    if multiprocessing.current_process().daemon:
        return 0, "this is a daemonic process, which may not start child processes"
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0, "the platform cannot fork (the image stores are opened per process after a fork)"
    # No more workers than CPUs this process may run on: the paper configs ask 8-16 a GPU, which a small
    # machine (a CPU rehearsal, CI) could only time-slice. The numbers do not depend on the count.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(requested, max(cpus, 1)), ""


def prepared_batches(examples: Sequence[Example], batches: Iterable[list[int]], prepare: Callable | None,
                     device: torch.device | str = "cpu", workers: int = 0, seed: int = 0) -> Iterator[Any]:
    """The batches of `batches` (index lists), prepared by `prepare` (None: lists of Examples) in
    `workers` processes, pinned and moved to `device` without blocking."""
    device = torch.device(device)
    n, why = usable_workers(workers)
    if why:
        log.warning("loader_workers=%d: preparing batches in the training process instead: %s", workers, why)
    collate = _Prepare(prepare)
    pin = device.type == "cuda"
    if n == 0:
        # In the training process the loader would only call `collate` (and draw a worker seed, which
        # fake-tensor device tests cannot): the same steps, without it.
        it = (collate([examples[i] for i in rows]) for rows in batches)
        it = (b.pin_memory() if pin and hasattr(b, "pin_memory") else b for b in it)
    else:
        loader = DataLoader(
            examples, batch_sampler=_Batches(batches), collate_fn=collate, num_workers=n, pin_memory=pin,
            persistent_workers=True, multiprocessing_context="fork",
            # The workers' base seed: from the loader's own generator, never torch's global RNG (dropout
            # and the heads' negative sampling draw from that one, so it must not depend on the workers).
            generator=torch.Generator().manual_seed(seed),
        )
        it = iter(loader)
    try:
        for batch in it:
            if isinstance(batch, _Failed):
                raise batch.error
            yield batch.to(device, non_blocking=True) if hasattr(batch, "to") else batch
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # now, not when the loader is collected
        if shutdown is not None:
            shutdown()


def train_batches(loss_fn: Callable, examples: Sequence[Example], settings: TrainSettings,
                  device: torch.device | str = "cpu", workers: int = 0, skip: int = 0) -> Iterator[Any]:
    """The training loop's batches for `loss_fn`: prepared by its host half (`loss_fn.prepare`) when it
    has one, else lists of Examples; the sampler's first `skip` batches are skipped unprepared."""
    stream = batch_stream(examples, settings, settings.seed, getattr(loss_fn, "tokens", None))
    return prepared_batches(examples, islice(stream, skip, None), getattr(loss_fn, "prepare", None),
                            device, workers, settings.seed)
