"""Shared helpers of the tests/test_reliability_*.py files: a tiny prepared store, the CLI, store snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.config import load_config
from bench.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
# The smallest useful pipeline: smoke world, few steps, one task, one IMP source plus dense.
TINY = ["pretrain.steps=5", "finetune.steps=3", "find.steps=3"]
TASKS = ["snli_ve"]
SOURCES = ["imp:snli_ve", "dense"]


def tiny_config(*extra: str, name: str = "smoke"):
    """The smoke preset with TINY (and `extra`) overrides."""
    return load_config(name, [*TINY, *extra])


def prepare(out: Path, *extra: str, stages=("world", "pretrain", "find"), **subset) -> Path:
    """Build world, θ0 and tickets (by default) of the tiny config under `out`, in this process."""
    subset.setdefault("tasks", TASKS)
    subset.setdefault("sources", SOURCES)
    return run_pipeline(tiny_config(*extra), out=str(out), stages=list(stages), quiet=True, **subset)


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m bench ARGS` (the `ticketbench` command) single-threaded; never raises."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("TICKETBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env)


def cli_here(*args: str, capsys) -> subprocess.CompletedProcess:
    """The same command through `bench.cli.main` in this process (no interpreter start-up: cheap).
    An uncaught exception propagates, i.e. fails the test, where the command would print a traceback."""
    from bench.cli import main

    capsys.readouterr()
    rc = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["ticketbench", *args], rc, captured.out, captured.err)


def tiny_args(*extra: str) -> list[str]:
    """`--set` arguments of the tiny config (plus `extra` overrides)."""
    out = []
    for item in (*TINY, *extra):
        out += ["--set", item]
    return out


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under `root` (relative path -> sha256), to prove a store unchanged."""
    result = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            result[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return result


def records(out: Path) -> list[dict]:
    """Every run record of a store."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A non-zero exit whose stderr is one `ticketbench: error:` line, no traceback, naming `needles`."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, f"expected a failure, got exit 0:\n{proc.stdout[-1000:]}"
    assert "Traceback" not in err, err[-2000:]
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ticketbench: error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"
    return err
