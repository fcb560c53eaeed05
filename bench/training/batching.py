"""Length-bucketed, seeded batches of examples."""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from bench.tasks.base import Example


def _length(ex: Example) -> int:
    return sum(len(t.split()) for t in ex.texts)


def bucketed_batches(
    examples: Sequence[Example], batch_size: int, seed: int, bucket_factor: int = 50
) -> Iterator[list[Example]]:
    """Endless stream of batches: shuffle each epoch, sort chunks of `bucket_factor` batches by text
    length (less padding), then shuffle the batch order so lengths don't drift through an epoch."""
    if not examples:
        raise ValueError("no training examples")
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
                yield [examples[i] for i in b]


def eval_batches(examples: Sequence[Example], batch_size: int) -> Iterator[list[Example]]:
    """Deterministic evaluation batches, sorted by length (predictions are keyed by uid)."""
    order = sorted(range(len(examples)), key=lambda i: _length(examples[i]))
    for j in range(0, len(order), batch_size):
        yield [examples[i] for i in order[j:j + batch_size]]
