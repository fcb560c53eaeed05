"""The host half's collation: uninitialised batch tensors with only the padding zeroed, allocated in shared
memory inside DataLoader workers (issue 27 item 3: the GPU never waits for the host)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from bench.backbones.base import collate_pixels, collate_regions
from bench.data.images import PixelInput, RegionFeatures


def _regions(n: int, seed: int) -> RegionFeatures:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(n, 4, generator=g)
    return RegionFeatures(torch.randn(n, 8, generator=g).half(), boxes, torch.rand(n, 7, generator=g))


def _pixels(h: int, w: int, seed: int) -> PixelInput:
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return PixelInput(v, torch.ones(1, 1, dtype=torch.bool).expand(h, w))


def _reference_pixels(images):
    """The collation as it was: zeros, then each row copied (float32 and long kept for the float path)."""
    h, w = max(i.pixel_values.shape[1] for i in images), max(i.pixel_values.shape[2] for i in images)
    vals = torch.zeros(len(images), 3, h, w, dtype=images[0].pixel_values.dtype)
    mask = torch.zeros(len(images), h, w, dtype=torch.bool)
    for i, img in enumerate(images):
        vals[i, :, : img.pixel_values.shape[1], : img.pixel_values.shape[2]] = img.pixel_values
        mask[i, : img.pixel_values.shape[1], : img.pixel_values.shape[2]] = True
    return vals, mask


def test_padding_is_zero_and_rows_exact():
    images = [_pixels(64, 96, 0), _pixels(32, 128, 1), _pixels(64, 128, 2)]
    got = collate_pixels(images, "vilt")
    vals, mask = _reference_pixels(images)
    assert got.pixel_values.dtype == torch.uint8 and got.pixel_mask.dtype == torch.bool
    assert torch.equal(got.pixel_values, vals) and torch.equal(got.pixel_mask, mask)
    floats = [PixelInput(i.pixel_values.float(), i.pixel_mask.long()) for i in images]
    f = collate_pixels(floats, "vilt")
    assert f.pixel_values.dtype == torch.float32 and torch.equal(f.pixel_values, vals.float())
    assert torch.equal(f.pixel_mask, mask.long())
    regions = [_regions(3, 0), _regions(5, 1), _regions(1, 2)]
    r = collate_regions(regions, 8, 7, "uniter", dtype=None)
    assert r.features.dtype == torch.float16 and r.features.shape == (3, 5, 8)
    for i, img in enumerate(regions):
        n = img.features.shape[0]
        assert torch.equal(r.features[i, :n], img.features) and not r.features[i, n:].any()
        assert torch.equal(r.positions[i, :n], img.positions) and not r.positions[i, n:].any()
        assert r.mask[i, :n].all() and not r.mask[i, n:].any()


def _collate(batch):
    out = collate_pixels([_pixels(32 + 32 * (i % 2), 64, i) for i in batch], "vilt")
    return out.pixel_values, out.pixel_mask, out.pixel_values.is_shared()


def test_worker_batches_are_built_in_shared_memory():
    """In a worker the batch is allocated in shared memory (nothing copied to send it), as default_collate does."""
    loader = DataLoader(range(4), batch_size=2, collate_fn=_collate, num_workers=1,
                        multiprocessing_context="fork")
    for k, (vals, mask, shared) in enumerate(loader):
        assert shared
        want, want_mask = _reference_pixels([_pixels(32 + 32 * (i % 2), 64, i) for i in (2 * k, 2 * k + 1)])
        assert torch.equal(vals, want) and torch.equal(mask, want_mask)


def test_loader_workers_and_threads_are_execution_only():
    """The paper configs' loader workers (and any thread count) change no plan hash, search id or run id."""
    from bench.config import load_config
    from bench.plan import build_plan
    from bench.runner.finetune import pair_identity
    from bench.runner.pairs import PairSpec
    from bench.tasks import TASKS

    def keys(*overrides):
        plan = build_plan(load_config("smoke", list(overrides)))
        task = plan.config.matrix.tasks[0]
        spec = TASKS.get(task)
        pair = PairSpec(plan.config.backbone.preset, "dense", "dense", "", 0.0, task, 0, None, None, "t" * 16,
                        spec.splits[1], data_hash="d" * 16,
                        config=pair_identity(plan, plan.finetune_settings(task, 0), "pretrain/x"),
                        task_version=spec.version)
        return plan.hash, plan.search_id(plan.searches[0], "t" * 16, "d" * 16), pair.run_id

    assert keys() == keys("finetune.loader_workers=12", "matrix.threads=4")
    assert keys() != keys("finetune.lr=1e-3")  # the comparison can see a change


def test_loader_workers_are_capped_at_the_usable_cpus():
    """A paper config's 12-16 loader workers a GPU become the CPUs a small machine has (CI, a CPU rehearsal)."""
    import os

    from bench.training.batching import usable_workers

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_workers(10_000) == (cpus, "") and usable_workers(1) == (1, "")
