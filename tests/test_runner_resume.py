"""kill -9 inside long work, on toyland: a fine-tuning pair resumes from its last checkpoint and an IMP
search after its last stored round, each giving exactly what an uninterrupted run gives; a distributed
launch is refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_support import (
    ROOT,
    assert_one_line_error,
    cli,
    cli_here,
    prepare,
    records,
    tiny_args,
    tiny_config,
)

from bench.pipeline import run_pipeline
from bench.training.checkpoint import LATEST
from tickets import Ticket

TASK, SOURCE = "snli_ve", "imp:snli_ve"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """World, θ0 and the tiny config's tickets, built once."""
    return prepare(tmp_path_factory.mktemp("resume") / "out")


def _copy(src: Path, dst: Path, *skip: str) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("runs", "report", *skip))
    return dst


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TICKETBENCH_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _kill_when(proc: subprocess.Popen, pattern: str, out: Path, timeout: float = 240.0) -> None:
    """kill -9 the command (its whole process group) as soon as a file matching `pattern` exists."""
    deadline = time.time() + timeout
    while not list(out.glob(pattern)):
        if proc.poll() is not None:
            raise AssertionError(f"finished before {pattern} appeared: {proc.communicate()[1][-2000:]}")
        assert time.time() < deadline, f"{pattern} never appeared"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_mid_pair_resumes_from_its_checkpoint_with_the_same_numbers(prepared, tmp_path):
    # 150 steps, a checkpoint at every log window (every 10 steps: the interval is 0.06 s).
    extra = ("finetune.steps=150", "matrix.checkpoint_minutes=0.001")
    subset = dict(tasks=[TASK], sources=[SOURCE], sparsities=[0.5], seeds=1)
    reference = _copy(prepared, tmp_path / "reference")
    run_pipeline(tiny_config(*extra, "matrix.checkpoint_minutes=0"), out=reference, stages=["matrix"],
                 quiet=True, **subset)
    [ref] = records(reference)

    out = _copy(prepared, tmp_path / "killed")
    args = ["matrix", "smoke", "--out", str(out), "--tasks", TASK, "--sources", SOURCE, "--sparsities", "0.5",
            "--seeds", "1", "--quiet", *tiny_args(*extra)]
    _kill_when(_start(*args), f"runs/*/checkpoint/{LATEST}", out)
    [run_dir] = [p for p in out.glob("runs/*") if p.is_dir()]
    assert run_dir.name == ref["run_id"] and not (run_dir / "record.json").exists()
    saved = json.loads((run_dir / "checkpoint" / LATEST).read_text())
    assert 10 <= saved["step"] < 150

    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [rec] = records(out)
    assert rec["status"] == "done" and rec["resumed_from"] == saved["step"]  # not from step 1
    assert rec["history"] == ref["history"]  # every logged loss and lr, before and after the kill
    assert rec["value"] == ref["value"] and rec["metrics"] == ref["metrics"]
    assert rec["mask_audit"] == ref["mask_audit"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["record.json"]  # the checkpoint is gone


@pytest.mark.slow
def test_kill_9_mid_search_resumes_after_its_last_stored_round(prepared, tmp_path):
    extra = ("find.steps=60",)
    reference = _copy(prepared, tmp_path / "reference", "tickets")
    run_pipeline(tiny_config(*extra), out=reference, stages=["find"], quiet=True, tasks=[TASK], sources=[SOURCE])
    [ref_search] = reference.glob("tickets/*/search.json")
    ref = json.loads(ref_search.read_text())
    assert ref["cost"]["train_calls"] == len(ref["tickets"]) == 2  # one IMP round per ladder sparsity

    out = _copy(prepared, tmp_path / "killed", "tickets")
    args = ["find", "smoke", "--out", str(out), "--tasks", TASK, "--sources", SOURCE, "--quiet", *tiny_args(*extra)]
    _kill_when(_start(*args), "tickets/*/imp__snli_ve/sparsity-0.50.safetensors", out)
    [first] = out.glob("tickets/*/imp__snli_ve/sparsity-0.50.safetensors")
    assert not list(out.glob("tickets/*/search.json")) and not list(out.glob("tickets/*/*/sparsity-0.90*"))
    before = Ticket.load(first)

    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [search] = out.glob("tickets/*/search.json")
    assert search.parent.name == ref_search.parent.name
    resumed = json.loads(search.read_text())
    assert resumed["cost"]["train_calls"] == 1  # round 1 was not trained again
    after = Ticket.load(first)  # round 1 is the killed run's: same masks, same training record (its seconds)
    assert after.content_hash == before.content_hash
    assert after.metadata["extra"]["train_metrics"] == before.metadata["extra"]["train_metrics"]
    assert [t["content_hash"] for t in resumed["tickets"]] == [t["content_hash"] for t in ref["tickets"]]


@pytest.mark.slow
def test_kill_9_inside_an_imp_round_resumes_that_round_from_its_checkpoint(prepared, tmp_path):
    """An IMP round checkpoints like a fine-tuning pair (issue 27 item 5): killed mid-round, the search resumes
    the round after its last checkpoint, not from its first step, and finds the uninterrupted run's tickets."""
    extra = ("find.steps=150", "matrix.checkpoint_minutes=0.001")
    reference = _copy(prepared, tmp_path / "reference", "tickets")
    run_pipeline(tiny_config(*extra[:1], "matrix.checkpoint_minutes=0"), out=reference, stages=["find"], quiet=True,
                 tasks=[TASK], sources=[SOURCE])
    [ref_search] = reference.glob("tickets/*/search.json")
    ref = json.loads(ref_search.read_text())

    out = _copy(prepared, tmp_path / "killed", "tickets")
    args = ["find", "smoke", "--out", str(out), "--tasks", TASK, "--sources", SOURCE, "--quiet", *tiny_args(*extra)]
    _kill_when(_start(*args), f"tickets/*/checkpoint/{LATEST}", out)
    [latest] = out.glob(f"tickets/*/checkpoint/{LATEST}")
    saved = json.loads(latest.read_text())
    assert 10 <= saved["step"] < 150 and not list(out.glob("tickets/*/*/sparsity-*.safetensors"))  # inside round 1

    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [search] = out.glob("tickets/*/search.json")
    assert search.parent.name == ref_search.parent.name
    resumed = json.loads(search.read_text())
    first = resumed["tickets"][0]["train_metrics"]
    assert first["resumed_from"] >= saved["step"] and first["steps"] == 150  # the round went on from there
    assert [t["content_hash"] for t in resumed["tickets"]] == [t["content_hash"] for t in ref["tickets"]]
    assert not (search.parent / "checkpoint").exists()  # cleared as each round completed


@pytest.mark.parametrize("command", [["run", "smoke"], ["world"]])  # one check in main() serves every command
def test_a_distributed_launch_is_refused_before_anything_is_written(tmp_path, command):
    out = tmp_path / "out"
    proc = cli(*command, "--out", str(out), env={"WORLD_SIZE": "4", "RANK": "0"})
    assert_one_line_error(proc, "WORLD_SIZE=4", "--workers", "ray")
    assert not out.exists()
    assert cli("plan", "smoke", env={"WORLD_SIZE": "1"}).returncode == 0  # one process is fine


def test_checkpoint_minutes_is_an_execution_setting_and_is_validated(capsys):
    from bench.plan import build_plan

    plans = [build_plan(tiny_config(f"matrix.checkpoint_minutes={m}")) for m in (0, 0.5, 30)]
    assert len({p.hash for p in plans}) == 1  # it never changes a number: no plan or run id covers it
    proc = cli_here("plan", "smoke", "--set", "matrix.checkpoint_minutes=-1", capsys=capsys)
    assert_one_line_error(proc, "matrix.checkpoint_minutes", "≥ 0", "-1")
