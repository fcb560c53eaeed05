"""Adversarial training's cost: an adversarial fine-tuning step (K ascent steps, FreeLB / VILLA) against
a standard step of the same model, measured in the same run. Expected about K + 1 times: each ascent
step is one more forward and backward pass."""

from __future__ import annotations

import pytest
from conftest import best_times
from models import RegionStore, task_model, vqa_examples, write_vocab

from bench.training import TrainSettings, train

K = 2


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("bench") / "vocab.txt")


def test_adversarial_step_vs_standard_step(benchmark, record_ratio, vocab):
    store = RegionStore(64)
    examples = vqa_examples(256, 64)
    steps = 6

    def run(adv_steps: int) -> float:
        model = task_model("toy-uniter", "classify", vocab)
        settings = TrainSettings(steps=steps, batch_size=16, lr=1e-4, warmup=0.0, bf16=False, adv_steps=adv_steps)
        return train(model, lambda b: model.loss(b, store), examples, settings).seconds / steps

    t = best_times({"standard": lambda: run(0), "adversarial": lambda: run(K)}, rounds=3)
    benchmark.pedantic(lambda: run(K), rounds=1, iterations=1)
    ratio = t["adversarial"] / t["standard"]
    record_ratio(f"toy-uniter adversarial step (K={K}) vs standard step (time ratio)", t["adversarial"],
                 t["standard"], ratio=ratio, goal=f"≈ {K + 1}× (K + 1 passes)", met=ratio <= K + 1.5,
                 note="train() wall time per step, whole loop")
