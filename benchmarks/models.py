"""Tiny in-memory inputs for benchmarking TaskModels without a world: a region-feature store,
a task spec and examples (the contracts of bench/data/images.py and bench/tasks/base.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from bench.backbones import TaskModel, create_backbone
from bench.core.settings import TrainSettings
from bench.tasks.base import Example, TaskSpec

FEAT = 32
WORDS = ("a the red blue green cube sphere cone is left right of above below big small what color shape "
         "how many are there behind front").split()
LABELS = ["yes", "no", "red", "blue", "green", "cube", "sphere", "cone", "0", "1", "2", "3"]


@dataclass
class Regions:  # RegionFeatures of bench.data.images
    features: torch.Tensor
    boxes: torch.Tensor
    positions: torch.Tensor


class RegionStore:
    """`store.get(image_id) -> Regions` over `n` synthetic images of 6..12 regions (or `boxes` = (lo, hi)),
    fp32 features (or fp16, as UNITER's img_db stores them)."""

    def __init__(self, n: int, feat_dim: int = FEAT, seed: int = 0, boxes: tuple | None = None, fp16: bool = False):
        g = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        self.feat_dim = feat_dim
        self.images = {}
        for i in range(n):
            k = 6 + i % 7 if boxes is None else rng.randint(*boxes)
            xy = torch.rand(k, 2, generator=g) * 0.5
            box = torch.cat([xy, xy + 0.3], 1)
            w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
            pos = torch.cat([box, w[:, None], h[:, None], (w * h)[:, None]], 1)
            feats = torch.randn(k, feat_dim, generator=g)
            self.images[f"img{i}"] = Regions(feats.half() if fp16 else feats, box, pos)

    def get(self, image_id: str) -> Regions:
        return self.images[image_id]


def task_spec(head: str, loss: str = "soft_bce") -> TaskSpec:
    return TaskSpec(name=f"bench-{head}", title="", head=head, loss=loss, metrics=("acc",), headline="acc",
                    chance=0.0, files={}, splits=("train", "dev"), loader=lambda *a: [],
                    evaluator=lambda *a: {}, recipes={"toy": TrainSettings(steps=10, batch_size=16, lr=1e-4)})


def sentence(rng: random.Random, lo: int = 4, hi: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def vqa_examples(n: int, n_images: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [Example(f"q{i}", (f"img{i % n_images}",), (sentence(rng) + " ?",),
                    {rng.choice(LABELS): 1.0, rng.choice(LABELS): 0.3}) for i in range(n)]


def write_vocab(path) -> str:
    path.write_text("\n".join(WORDS) + "\n")
    return str(path)


def task_model(preset: str, head: str, vocab: str, seed: int = 0, feat_dim: int = FEAT) -> TaskModel:
    """A fresh TaskModel of `preset` (toy presets on `vocab`; minilm-uniter with its real weights)."""
    torch.manual_seed(seed)
    kw = {"vocab_path": vocab} if preset.startswith("toy") else {}
    bb = create_backbone(preset, feat_dim=feat_dim, **kw)
    return TaskModel(bb, task_spec(head), LABELS if head == "classify" else None)
