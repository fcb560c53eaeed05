"""The run store and pair identities: atomic records, per-run claims, stale-lock takeover, safe names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import runner_fakes  # noqa: E402

from bench.core.errors import TicketbenchError  # noqa: E402
from bench.runner import PairSpec, RunStore  # noqa: E402
from bench.runner.store import LOCK  # noqa: E402


@pytest.fixture
def pair() -> PairSpec:
    return runner_fakes.make_pairs(1)[0]


def test_record_path_layout(tmp_path, pair):
    store = RunStore(tmp_path)
    assert store.record_path(pair.run_id) == tmp_path / "runs" / pair.run_id / "record.json"


def test_run_id_is_stable_and_covers_ticket_theta0_config_split(pair):
    assert pair.run_id == runner_fakes.make_pairs(1)[0].run_id
    ticketed = replace(pair, ticket_path="t.safetensors", ticket_hash="aaa")
    variants = [
        ticketed,
        replace(ticketed, ticket_hash="bbb"),  # same path, new ticket content
        replace(pair, theta0_hash="other"),
        replace(pair, config={"lr": 1e-4}),
        replace(pair, split="test"),
        replace(pair, seed=7),
        replace(pair, backbone="toy-vilt"),
        replace(pair, task="gqa"),
    ]
    ids = {pair.run_id} | {v.run_id for v in variants}
    assert len(ids) == len(variants) + 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("source", "../x"),
        ("task", "a/b"),
        ("backbone", "/abs"),
        ("source_task", ".."),
        ("split", ""),
    ],
)
def test_unsafe_names_are_refused(pair, field, value):
    with pytest.raises(TicketbenchError, match=f"invalid pair {field}") as e:
        replace(pair, **{field: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"seed": "0"}, "seed"),
        ({"ticket_path": "t.safetensors"}, "content hash"),
        ({"theta0_hash": ""}, "theta0_hash"),
    ],
)
def test_bad_pair_fields_are_refused(pair, changes, match):
    with pytest.raises(TicketbenchError, match=match):
        replace(pair, **changes)


def test_run_dir_refuses_unsafe_run_id(tmp_path):
    with pytest.raises(TicketbenchError):
        RunStore(tmp_path).run_dir("../escape")


def test_is_done_only_for_whole_done_records(tmp_path, pair):
    store = RunStore(tmp_path)
    rid = pair.run_id
    assert not store.is_done(rid)
    path = store.record_path(rid)
    path.parent.mkdir(parents=True)
    whole = json.dumps({"run_id": rid, "status": "done", "value": 1.0})
    path.write_text(whole[: len(whole) // 2])  # a torn write from a non-atomic writer
    assert not store.is_done(rid) and store.read_record(rid) is None
    path.write_text(json.dumps({"run_id": "someoneelse", "status": "done"}))
    assert not store.is_done(rid)
    store.write_record(rid, {"run_id": rid, "status": "failed", "reason": "diverged"})
    assert not store.is_done(rid) and store.read_record(rid)["reason"] == "diverged"
    store.write_record(rid, {"run_id": rid, "status": "done", "value": 1.0})
    assert store.is_done(rid)


def test_claim_is_exclusive_until_released(tmp_path, pair):
    a, b = RunStore(tmp_path), RunStore(tmp_path)
    claim = a.claim(pair.run_id)
    assert claim is not None and claim.held()
    assert b.claim(pair.run_id) is None  # held by a live process (this one)
    claim.release()
    assert not (a.run_dir(pair.run_id) / LOCK).exists()
    again = b.claim(pair.run_id)
    assert again is not None
    again.release()


def test_no_claim_on_a_done_run(tmp_path, pair):
    store = RunStore(tmp_path)
    store.write_record(pair.run_id, {"run_id": pair.run_id, "status": "done"})
    assert store.claim(pair.run_id) is None


def test_release_keeps_a_lock_taken_over_by_another_runner(tmp_path, pair):
    store = RunStore(tmp_path)
    claim = store.claim(pair.run_id)
    lock = claim.path
    lock.write_text(json.dumps({"pid": os.getpid(), "host": store.host, "token": "other"}))
    claim.release()
    assert lock.exists()


def _write_lock(store: RunStore, run_id: str, info: dict | None) -> Path:
    lock = store.run_dir(run_id) / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("" if info is None else json.dumps(info))
    return lock


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path, pair):
    store = RunStore(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(store, pair.run_id, {"pid": dead.pid, "host": store.host, "time": time.time(), "token": "x"})
    claim = store.claim(pair.run_id)
    assert claim is not None and claim.held()
    claim.release()


def test_lock_of_another_host_expires_after_the_timeout(tmp_path, pair):
    store = RunStore(tmp_path, stale_after_s=60)
    lock = _write_lock(store, pair.run_id, {"pid": 1, "host": "elsewhere", "time": time.time(), "token": "x"})
    assert store.claim(pair.run_id) is None
    _age(lock, 120)
    claim = store.claim(pair.run_id)
    assert claim is not None
    claim.release()


def test_empty_lock_is_stale_only_when_old(tmp_path, pair):
    store = RunStore(tmp_path)
    lock = _write_lock(store, pair.run_id, None)  # creator died between open and write
    assert store.claim(pair.run_id) is None
    _age(lock, 60)
    claim = store.claim(pair.run_id)
    assert claim is not None
    claim.release()


def test_heartbeat_keeps_the_lock_fresh(tmp_path, pair):
    store = RunStore(tmp_path, heartbeat_s=0.05)
    claim = store.claim(pair.run_id)
    _age(claim.path, 1000)
    deadline = time.time() + 10
    while time.time() - claim.path.stat().st_mtime > 100 and time.time() < deadline:
        time.sleep(0.05)
    assert time.time() - claim.path.stat().st_mtime < 100
    claim.release()
