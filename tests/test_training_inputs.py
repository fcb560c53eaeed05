"""The input path: batches prepared apart from the forward, the DataLoader (workers, daemonic and Ray
processes), token-budget batches, and retrieval scoring on a bank collated once."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch
from test_backbones_heads import RegionStore, backbone, spec
from test_backbones_models import WORDS

from bench.backbones import PretrainModel, TaskModel
from bench.config import load_config
from bench.core.errors import ConfigError, DataError
from bench.core.settings import TrainSettings
from bench.plan import build_plan
from bench.tasks.base import Example
from bench.training import train
from bench.training.batching import batch_stream, prepared_batches, usable_workers

LABELS = ["yes", "no", "red", "blue"]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))


def _examples(n: int = 48, images: int = 6) -> list[Example]:
    rng = random.Random(0)
    return [Example(str(i), (f"img{i % images}",), (_sentence(rng),), {rng.choice(LABELS): 1.0, "no": 0.3})
            for i in range(n)]


def _vocab(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(WORDS) + "\n")
    return p


def _losses(vocab, head: str, workers: int, steps: int = 6, **settings) -> list[float]:
    torch.manual_seed(0)
    store = RegionStore(6)
    model = TaskModel(backbone("toy-uniter", vocab), spec(head, "soft_bce"), LABELS if head == "classify" else None)
    s = TrainSettings(**{"steps": steps, "batch_size": 8, "lr": 1e-3, **settings})
    log = train(model, model.batch_loss(store), _examples(), s, log_every=1, loader_workers=workers)
    return [h["loss"] for h in log.history]


def test_same_losses_with_0_and_2_workers(tmp_path):
    vocab = _vocab(tmp_path)
    for head in ("classify", "itm"):  # itm: negatives drawn in the forward, mined on the prepared tensors
        assert _losses(vocab, head, 0) == _losses(vocab, head, 2)


def test_prepared_path_equals_the_composition(tmp_path):
    """TaskModel.loss(examples, store) is forward_loss(batcher(store)(examples)): one code path; the
    batcher pickles (no weights), its batches carry host tensors only."""
    vocab = _vocab(tmp_path)
    store = RegionStore(6)
    m = TaskModel(backbone("toy-uniter", vocab), spec("classify", "soft_bce"), LABELS)
    m.eval()
    exs = _examples(8)
    batcher = pickle.loads(pickle.dumps(m.batcher(store)))
    batch = batcher(exs)
    assert batch.text.batch.input_ids.device.type == "cpu" and batch.target.shape == (8, len(LABELS))
    with torch.no_grad():
        assert torch.equal(m.loss(exs, store), m.forward_loss(batch))
    pm = PretrainModel(backbone("toy-uniter", vocab))
    pickle.dumps(pm.batcher(store))


def _in_daemon(vocab, queue):
    queue.put(_losses(vocab, "classify", 2, steps=3))


def test_daemonic_process_falls_back_to_no_workers(tmp_path):
    vocab = _vocab(tmp_path)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_in_daemon, args=(vocab, queue), daemon=True)
    p.start()
    got = queue.get(timeout=300)
    p.join()
    assert got == _losses(vocab, "classify", 0, steps=3)
    n, why = usable_workers(2)
    assert n == 2 and not why  # here (not daemonic) workers are allowed


def _in_pool_worker(vocab):
    return multiprocessing.current_process().daemon, _losses(vocab, "classify", 2, steps=3)


def test_workers_inside_the_local_executors_worker_process(tmp_path):
    """The local executor's workers (spawned, not daemonic) start DataLoader workers themselves."""
    vocab = _vocab(tmp_path)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        daemon, got = pool.submit(_in_pool_worker, vocab).result(timeout=300)
    assert not daemon
    assert got == _losses(vocab, "classify", 0, steps=3)


@pytest.mark.ray
def test_workers_inside_a_ray_task(tmp_path):
    ray = pytest.importorskip("ray")
    vocab = _vocab(tmp_path)
    here = Path(__file__).parent  # Ray's workers import this module by name
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        daemon, got = ray.get(ray.remote(_in_pool_worker).remote(vocab), timeout=300)
    finally:
        ray.shutdown()
    assert not daemon  # Ray's workers may fork: the DataLoader gets its 2 workers there
    assert got == _losses(vocab, "classify", 0, steps=3)


def test_daemonic_fallback_is_logged(caplog, monkeypatch):
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    caplog.set_level(logging.WARNING, logger="bench.training.batching")
    batches = prepared_batches(_examples(8), [[0, 1], [2, 3]], None, workers=2)
    assert [len(b) for b in batches] == [2, 2]
    assert "daemonic" in caplog.text and "loader_workers=2" in caplog.text


def test_a_bad_example_in_a_worker_is_the_one_line_error(tmp_path):
    vocab = _vocab(tmp_path)
    store = RegionStore(6)
    m = TaskModel(backbone("toy-uniter", vocab), spec("region"))
    exs = [Example(str(i), (f"img{i % 6}",), ("a red cube",), 99) for i in range(8)]
    with pytest.raises(DataError, match="target region index") as e:
        train(m, m.batch_loss(store), exs, TrainSettings(steps=1, batch_size=4), loader_workers=2)
    assert "\n" not in str(e.value)


def test_token_budget_batches(tmp_path):
    vocab = _vocab(tmp_path)
    store = RegionStore(6)
    m = TaskModel(backbone("toy-uniter", vocab), spec("classify", "soft_bce"), LABELS)
    loss = m.batch_loss(store)
    exs = _examples(60)
    cost = [loss.tokens(ex) for ex in exs]
    # text tokens ([CLS] words [SEP]) + the image's regions (3..6 in RegionStore)
    assert cost[0] == len(exs[0].texts[0].split()) + 2 + len(store.images[exs[0].image_ids[0]].features)
    s = TrainSettings(batch_size=4, batch_tokens=60, seed=3)
    stream = batch_stream(exs, s, s.seed, loss.tokens)
    epoch, seen = [], 0
    while seen < len(exs):  # one epoch: every example once
        b = next(stream)
        epoch.append(b)
        seen += len(b)
    assert sorted(i for b in epoch for i in b) == list(range(len(exs)))
    for b in epoch:
        assert len(b) * max(cost[i] for i in b) <= 60 and sum(cost[i] for i in b) <= 60
    assert max(len(b) for b in epoch) > 4  # the budget, not batch_size, sets the size
    again = batch_stream(exs, s, s.seed, loss.tokens)
    assert [next(again) for _ in epoch] == epoch  # seeded
    other = batch_stream(exs, TrainSettings(batch_tokens=60, seed=4), 4, loss.tokens)
    assert [next(other) for _ in epoch] != epoch
    # sorted within chunks: less padding than random batches of the same sizes
    assert sum(len(b) * max(cost[i] for i in b) for b in epoch) <= sum(cost) * 1.5
    with pytest.raises(ConfigError, match="batch_tokens: 10 is less than example"):
        next(batch_stream(exs, TrainSettings(batch_tokens=10), 0, loss.tokens))
    with pytest.raises(ConfigError, match="cannot count tokens"):
        batch_stream(exs, s, 0, None)
    # the loop trains on them, the same with workers
    a = _losses(vocab, "classify", 0, steps=4, batch_tokens=80)
    assert a == _losses(vocab, "classify", 2, steps=4, batch_tokens=80)


def test_retrieval_scores_equal_the_pair_by_pair_path(tmp_path):
    vocab = _vocab(tmp_path)
    store = RegionStore(7)
    rng = random.Random(1)
    texts = [_sentence(rng) for _ in range(5)]
    ids = list(store.images)
    for preset in ("toy-uniter", "toy-lxmert"):
        m = TaskModel(backbone(preset, vocab), spec("itm"))
        scores = m.score(texts, ids, store, batch_size=8)
        m.eval()
        with torch.no_grad():
            want = torch.stack([m.head(m.backbone.encode([t] * len(ids), [store.get(i) for i in ids]).pooled)
                                for t in texts])
        assert scores.shape == (5, 7)
        assert torch.allclose(scores, want, atol=1e-4)


def test_loader_workers_is_an_execution_field():
    base = build_plan(load_config("smoke"))
    assert build_plan(load_config("smoke", ["finetune.loader_workers=2"])).hash == base.hash
    with pytest.raises(ConfigError, match="loader_workers"):
        load_config("smoke", ["finetune.loader_workers=-1"])
