"""The training input path at UNITER-base feature size: batches prepared by the DataLoader (host half
of TaskModel, in worker processes, fp16 features kept until the device) vs today's inline collation in
the training loop (tokenise + collate + copy inside the forward, the batch widened to fp32 per image).

The store is synthetic and in memory (2048-d fp16 features, 36–100 boxes per image, as UNITER's
img_db), so only preparation is timed, never disk reads. This machine has no GPU: a training step's
device compute is emulated by a 12 ms sleep (the issue's measured UNITER-base step for 64 examples),
the time the loader's workers have to prepare the next batch.
"""

from __future__ import annotations

import time

import torch
from conftest import best_times, sized
from models import LABELS, RegionStore, task_model, vqa_examples, write_vocab
from torch.utils.data import DataLoader

from bench.backbones.base import RegionBatch
from bench.training.batching import prepared_batches

FEAT = 2048
STEP_S = 0.012


def inline_before(model, examples, store) -> tuple:
    """The anchor: what the forward did before the input path (commit 153fe36): tokenise, fetch,
    collate (each image widened to fp32, then copied into the padded batch), move, build targets."""
    images = [store.get(ex.image_ids[0]) for ex in examples]
    ids, mask = model.backbone.tokenize([ex.texts[0] for ex in examples])
    feats = [img.features.float() for img in images]
    poss = [img.positions.float() for img in images]
    n = max(f.shape[0] for f in feats)
    features = torch.zeros(len(feats), n, FEAT)
    positions = torch.zeros(len(feats), n, 7)
    rmask = torch.zeros(len(feats), n, dtype=torch.bool)
    for i, (f, p) in enumerate(zip(feats, poss)):
        features[i, : f.shape[0]] = f
        positions[i, : p.shape[0]] = p
        rmask[i, : f.shape[0]] = True
    target = torch.zeros(len(examples), len(LABELS))
    for i, ex in enumerate(examples):
        for lab, s in ex.target.items():
            target[i, model.label_index[lab]] = float(s)
    return ids, mask, RegionBatch(features, positions, rmask), target


def test_input_path_vs_inline_collation(benchmark, record_ratio, tmp_path):
    batch, n_batches, n_images = sized((64, 24, 256), (8, 2, 16))
    store = RegionStore(n_images, feat_dim=FEAT, boxes=(36, 100), fp16=True)
    model = task_model("toy-uniter", "classify", write_vocab(tmp_path / "vocab.txt"), feat_dim=FEAT)
    examples = vqa_examples(batch * n_batches, n_images)
    index = [list(range(k * batch, (k + 1) * batch)) for k in range(n_batches)]
    batcher = model.batcher(store)

    def inline(step: float):
        for rows in index:
            inline_before(model, [examples[i] for i in rows], store)
            time.sleep(step)

    def loader(workers: int, step: float):
        for _ in prepared_batches(examples, index, batcher, "cpu", workers):
            time.sleep(step)

    # The texts' token ids are cached after the first pass in every path: warm them once.
    inline(0.0)
    t = best_times({"inline": lambda: inline(0.0), "prepared": lambda: loader(0, 0.0),
                    "inline+step": lambda: inline(STEP_S), "loader0+step": lambda: loader(0, STEP_S),
                    "loader2+step": lambda: loader(2, STEP_S)},
                   rounds=sized(3, 1))
    benchmark.pedantic(lambda: loader(0, 0.0), rounds=1, iterations=1)
    n = batch * n_batches
    record_ratio(f"batch preparation, {batch} examples at 2048-d fp16, 36–100 boxes, in-process (examples/s)",
                 n / t["prepared"], n / t["inline"], ratio=t["inline"] / t["prepared"], unit="ex/s",
                 note="TaskBatcher (fp16 kept, one copy per image) vs the inline collation before (fp32 per image)")
    record_ratio(f"training input path with a {STEP_S * 1e3:.0f} ms device step: 0 loader workers vs inline "
                 "(examples/s)", n / t["loader0+step"], n / t["inline+step"],
                 ratio=t["inline+step"] / t["loader0+step"], unit="ex/s",
                 note="the default (finetune.loader_workers=0): preparation in the training process")
    record_ratio(f"training input path with a {STEP_S * 1e3:.0f} ms device step: DataLoader, 2 workers, vs inline "
                 "(examples/s)", n / t["loader2+step"], n / t["inline+step"],
                 ratio=t["inline+step"] / t["loader2+step"], unit="ex/s",
                 note="workers prepare the next batches while the step runs (sleep: no GPU here); 2 shared cores")
    # What crossing the process boundary costs here: a bare DataLoader whose workers return one zero
    # batch of the same size, against building it in-process (no preparation at all in either).
    shape = (batch, 100, FEAT)

    def bare(workers: int):
        for _ in DataLoader(range(n), batch_size=batch, num_workers=workers, collate_fn=lambda _: torch.zeros(
                shape, dtype=torch.float16), multiprocessing_context="fork" if workers else None):
            pass

    b = best_times({"in-process": lambda: bare(0), "2 workers": lambda: bare(2)}, rounds=sized(3, 1))
    record_ratio(f"moving a {batch}×100×2048 fp16 batch from a loader worker vs building it in-process (time ratio)",
                 b["2 workers"] / n_batches, b["in-process"] / n_batches, ratio=b["2 workers"] / b["in-process"],
                 note="bare DataLoader, zero batches: the inter-process transfer alone, per batch")
    assert torch.equal(inline_before(model, examples[:batch], store)[0], batcher(examples[:batch]).text.batch.input_ids)
