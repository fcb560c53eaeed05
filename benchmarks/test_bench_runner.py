"""The integrated pipeline on the smoke config: end-to-end stage times, runner throughput on one
pair vs a plain Hugging Face Trainer, and matrix scaling with 1 vs 2 local workers.

End to end runs the whole smoke config (BENCH_E2E_CONFIG=toyland: the default config, ~15 min on
2 cores). The other two share one pipeline run restricted to a few tasks and sources. Quick mode
(conftest.py) runs the same code with a handful of steps, one task and one seed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import best_times, quick, sized
from torch import nn
from torch.nn.utils import prune

from bench.config import load_config
from bench.core.io import read_json

ROOT = Path(__file__).resolve().parents[1]
MATRIX_TASKS = ["gqa", "nlvr2", "snli_ve"]
MATRIX_SOURCES = ["pretrained_magnitude", "random", "dense"]
# Quick mode: the smallest pipeline that still runs every stage (a few steps, tasks of the subset only).
TINY = ["pretrain.steps=4", "finetune.steps=2", "find.steps=2", "finetune.dev_limit=16"]


def overrides() -> list[str]:
    return TINY if quick() else []


def tasks() -> list[str]:
    return sized(MATRIX_TASKS, MATRIX_TASKS[:1])


def pipeline(out, config: str, **subset):
    """(cfg, out, wall seconds) of one run of every stage of `config` (optionally a subset: tasks,
    sources as lists, i.e. `matrix.tasks` / `matrix.sources`)."""
    # Imported here, not skipped when missing: a benchmark that cannot import the pipeline has rotted.
    from bench.pipeline import run_pipeline
    from bench.plan import build_plan

    if quick() and not subset:
        subset = {"tasks": tasks(), "sources": ["imp:" + tasks()[0], "dense"]}
    cfg = load_config(config, overrides() + [f"matrix.{k}={','.join(v)}" for k, v in subset.items()])
    t0 = time.perf_counter()
    run_pipeline(build_plan(cfg), str(out), quiet=True)
    return cfg, out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke pipeline on MATRIX_TASKS × MATRIX_SOURCES: world, θ0, tickets and a first matrix."""
    return pipeline(tmp_path_factory.mktemp("smoke"), "smoke", tasks=tasks(), sources=MATRIX_SOURCES)


def test_end_to_end_by_stage(benchmark, record_ratio, tmp_path):
    cfg, out, wall = pipeline(tmp_path / "e2e", os.environ.get("BENCH_E2E_CONFIG", "smoke"))
    timings = read_json(out / "timings.json")
    stages = {s: timings[s] for s in ("world", "pretrain", "find", "matrix", "report") if s in timings}
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the run itself is the fixture (timed above)
    assert set(stages) == {"world", "pretrain", "find", "matrix", "report"}
    total = timings["last_total_s"]
    for s, sec in stages.items():
        record_ratio(f"end to end ({cfg.name}): stage {s}", sec, total, ratio=sec / total,
                     note="ratio = share of the total wall time")
    record_ratio(f"end to end ({cfg.name}): total", total, wall, ratio=total / wall,
                 note=f"pipeline total vs fixture wall time; stages {stages}")


class TrainerModel(nn.Module):
    """What a user would otherwise write for HF's Trainer: forward(examples) -> {'loss'}, texts
    tokenised on the fly inside the model's forward."""

    def __init__(self, task_model, store):
        super().__init__()
        self.task_model = task_model
        self.store = store

    def forward(self, examples):
        return {"loss": self.task_model.loss(examples, self.store)}


def _prune_hooks(backbone, masks):
    for name, _ in backbone.prunable_parameters():
        owner, attr = name.rsplit(".", 1)
        prune.custom_from_mask(backbone.get_submodule(owner), attr, masks[name])


def test_runner_throughput_vs_hf_trainer(benchmark, record_ratio, smoke, tmp_path):
    from transformers import Trainer, TrainingArguments

    from bench.backbones import TaskModel
    from bench.plan import build_plan
    from bench.runner.finetune import finetune_pair, make_pairs
    from bench.runner.stages import search_jobs, search_key, stage_pretrain
    from bench.runner.study import Study
    from bench.tasks import TASKS
    from tickets import Ticket

    cfg, out, _ = smoke
    plan = build_plan(cfg)
    study = Study(cfg, out)
    theta0_dir = stage_pretrain(plan, study, quiet=True)
    roots = {search_key(j.search): j.root for j in search_jobs(plan, study, theta0_dir)}
    pairs = make_pairs(plan, study, theta0_dir, roots)
    pair = next(p for p in pairs if p.task == "gqa" and p.sparsity == 0.5 and p.source == "pretrained_magnitude")
    steps = sized(40, 3)
    s = plan.finetune_settings("gqa", 0).override(steps=steps)  # more steps than the smoke recipe: a stable rate
    pair = dataclasses.replace(pair, settings=s)
    samples = steps * s.batch_size
    ticket = Ticket.load(pair.ticket_path)
    spec, store, examples = TASKS.get("gqa"), study.store, study.train_examples("gqa")

    def ours():
        rec = finetune_pair(pair, out / "runs" / "bench-throughput")
        return rec["timings"]["train_s"]

    def hf():
        torch.manual_seed(0)
        backbone = study.theta0(theta0_dir)
        _prune_hooks(backbone, ticket.masks)
        model = TrainerModel(TaskModel(backbone, spec, study.labels("gqa")), store)
        args = TrainingArguments(
            output_dir=str(tmp_path / "hf"), max_steps=steps, per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr, weight_decay=s.weight_decay, adam_beta1=s.betas[0], adam_beta2=s.betas[1],
            max_grad_norm=s.grad_clip, lr_scheduler_type="linear", warmup_steps=int(s.warmup * steps),
            logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True, seed=0,
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=list(examples),
                          data_collator=lambda batch: {"examples": batch})
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0

    times = {"ours": [], "hf": []}
    rounds = sized(2, 1)
    benchmark.pedantic(lambda: [times[k].append(f()) for _ in range(rounds) for k, f in (("ours", ours), ("hf", hf))],
                       rounds=1, iterations=1)
    t_ours, t_hf = min(times["ours"]), min(times["hf"])
    ratio = t_hf / t_ours
    record_ratio(f"runner throughput, one gqa pair ({steps} steps × {s.batch_size}) (samples/s)",
                 samples / t_ours, samples / t_hf, ratio=ratio, unit="samples/s", goal="≥ 1.5×", met=ratio >= 1.5,
                 note="finetune_pair train time vs HF Trainer + prune hooks")


def test_matrix_scaling_1_vs_2_workers(benchmark, record_ratio, smoke):
    """`ticketbench matrix` as a user runs it (a fresh process each, start-up included), fresh runs/."""
    cfg, out, _ = smoke
    seeds = sized(3, 1)  # 45 pairs: enough work per worker to amortise the workers' start-up

    def matrix(workers):
        def run():
            shutil.rmtree(out / "runs", ignore_errors=True)  # fresh runs: nothing is skipped
            subprocess.run([sys.executable, "-m", "bench", "matrix", "smoke", "--out", str(out), "--quiet",
                            "--tasks", ",".join(tasks()), "--sources", ",".join(sized(MATRIX_SOURCES, ["dense"])),
                            "--seeds", str(seeds), "--workers", str(workers),
                            *[a for o in overrides() for a in ("--set", o)]],
                           check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return run

    t = {}
    benchmark.pedantic(lambda: t.update(best_times({"1": matrix(1), "2": matrix(2)}, rounds=1)),
                       rounds=1, iterations=1)
    records = list((out / "runs").glob("*/record.json"))
    failed = [read_json(r) for r in records if read_json(r)["status"] != "done"]
    assert records and not failed, f"{len(failed)} failed runs, e.g. {failed[0].get('reason') if failed else ''}"
    ratio = t["1"] / t["2"]
    record_ratio(f"matrix, {len(records)} pairs, 2 workers vs 1 (speed-up)", t["2"], t["1"], ratio=ratio,
                 goal=f"≥ 1.7× on 2 cores (here {os.cpu_count()})", met=ratio >= 1.7,
                 note=f"ticketbench matrix smoke, tasks {','.join(tasks())}, sources "
                      f"{','.join(MATRIX_SOURCES)}, {seeds} seeds")
