"""Concurrent runners and kill -9: every pair exactly once, no partial record ever read as complete."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from runner_fakes import calls, counting_pair, make_pairs  # noqa: E402

from bench.runner import RunStore, run_pairs  # noqa: E402


def _runner(out: Path, *args: str) -> subprocess.Popen:
    """A separate `run_pairs` process (tests/runner_fakes.py main) on the output directory `out`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
        "OMP_NUM_THREADS": "1",
    }
    code = "import sys, runner_fakes; runner_fakes.main(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(out), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_two_runners_on_one_output_run_every_pair_exactly_once(tmp_path):
    n = 8
    procs = [_runner(tmp_path, "--pairs", str(n), "--sleep", "0.2") for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    pairs = make_pairs(n, sleep=0.2)
    assert calls(tmp_path) == {p.run_id: 1 for p in pairs}
    done = [rid for r in results for rid in r["done"]]
    assert sorted(done) == sorted(p.run_id for p in pairs)  # each done by exactly one runner
    for r in results:
        assert not r["failed"]
        assert len(r["done"]) + len(r["cached"]) == n  # each runner waited for the other's pairs
    assert all(RunStore(tmp_path).is_done(p.run_id) for p in pairs)


def test_kill_while_writing_a_record_then_resume(tmp_path):
    marker = tmp_path / "writing"
    proc = _runner(tmp_path, "--pairs", "3", "--hang-on-write", str(marker))
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)  # the record's temp file is written, the rename has not happened
    proc.wait()
    pairs = make_pairs(3)
    store = RunStore(tmp_path)
    first = pairs[0].run_id
    run_dir = store.run_dir(first)
    assert list(run_dir.glob(".record.json.*.tmp")), "the kill should land mid-write"
    assert not store.record_path(first).exists() and not store.is_done(first)
    summary = run_pairs(pairs, tmp_path, counting_pair, progress=False)  # takes over the dead runner's lock
    assert sorted(summary.done) == sorted(p.run_id for p in pairs) and not summary.failed
    assert not list(run_dir.glob(".record.json.*.tmp"))
    assert calls(tmp_path) == {first: 2, pairs[1].run_id: 1, pairs[2].run_id: 1}


@pytest.mark.slow
def test_kill_at_random_moments_never_recomputes_finished_pairs(tmp_path):
    n = 12
    rng = random.Random(0)
    pairs = make_pairs(n, sleep=0.15)
    store = RunStore(tmp_path)
    done_before_kill: set[str] = set()
    for _ in range(6):
        proc = _runner(tmp_path, "--pairs", str(n), "--sleep", "0.15")
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now_done = {p.run_id for p in pairs if store.is_done(p.run_id)}
        assert done_before_kill <= now_done
        done_before_kill = now_done
    summary = run_pairs(pairs, tmp_path, counting_pair, progress=False)
    assert sorted(summary.cached) == sorted(done_before_kill)
    assert all(store.is_done(p.run_id) for p in pairs)
    counted = calls(tmp_path)
    for pair in pairs:  # the stored record came from the last call: nothing ran after it was stored
        assert store.read_record(pair.run_id)["call"] == counted[pair.run_id]
