"""Evaluation on a task's eval split with its official metric."""

from __future__ import annotations

import time

import torch

from bench.tasks.base import Example, TaskSpec
from bench.training.batching import eval_index_batches, prepared_batches
from bench.training.loop import autocast, use_tf32


@torch.no_grad()
def evaluate_task(model, spec: TaskSpec, examples: list[Example], store, batch_size: int = 64, bf16: bool = True,
                  workers: int = 0):
    """Predict every example and score with the task's official metric.

    Returns (metrics, predictions, seconds). Retrieval (head 'itm') scores every text against every
    image of the split in batches (`TaskModel.score`: the image bank collated once, on the device); other
    heads predict batch by batch, the batches prepared by a DataLoader in `workers` processes. On CUDA the forward
    passes run under bf16 autocast (`bf16`, as training) with TF32 for what stays in fp32.
    """
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    use_tf32(device)
    model.eval()
    try:
        with autocast(device, bf16):
            if spec.head == "itm":
                image_ids = sorted({ex.image_ids[0] for ex in examples})
                texts = [ex.texts[0] for ex in examples]
                scores = model.score(texts, image_ids, store, batch_size=batch_size)
                predictions = {"scores": scores.float().cpu(), "text_uids": [ex.uid for ex in examples],
                               "image_ids": image_ids}
            else:
                predictions = {}
                batches = prepared_batches(examples, eval_index_batches(examples, batch_size),
                                           model.batcher(store, targets=False), device, workers)
                for batch in batches:
                    predictions.update(model.predict_batch(batch))
            metrics = spec.evaluate(examples, predictions)
    finally:
        model.train()
    return metrics, predictions, time.perf_counter() - t0
