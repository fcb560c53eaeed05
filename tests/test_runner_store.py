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
        replace(pair, data_hash="other"),  # the task's examples changed
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
        ({"data_hash": ""}, "data_hash"),
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


# ---- the data a run reads is part of its identity ------------------------------------------------
@pytest.fixture(scope="module")
def world_out(tmp_path_factory) -> Path:
    from bench.data.toyland import generate_world

    out = tmp_path_factory.mktemp("dataid") / "out"
    generate_world(out / "world", seed=0, scale="smoke")
    return out


def _edit_first_row(path: Path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    edit(row)
    path.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n", encoding="utf-8")


def _ids(out: Path) -> dict:
    """Run ids of the dense cells of three tasks, search ids of three IMP searches and θ0's folder, each
    from a fresh Study (θ0's content is faked: these ids need only its DONE hash)."""
    from bench.config import load_config
    from bench.core.source import PRETRAIN
    from bench.plan import build_plan
    from bench.runner.finetune import make_pairs
    from bench.runner.stages import search_jobs
    from bench.runner.study import Study

    def plan(sources: str):
        return build_plan(load_config("smoke", ["matrix.tasks=snli_ve,vqa,gqa", f"matrix.sources={sources}"]))

    runs, find = plan("dense"), plan("imp:snli_ve,imp:vqa,imp:pretrain")
    study = Study(runs.config, out)
    theta0 = out / "pretrain" / "fake"
    theta0.mkdir(parents=True, exist_ok=True)
    (theta0 / "DONE").write_text("0123456789abcdef\n")
    return {"runs": {(p.task, p.seed): p.run_id for p in make_pairs(runs, study, theta0, {})},
            "searches": {str(j.search.source): j.search_id for j in search_jobs(find, study, theta0)},
            "theta0": runs.theta0_id(study.data_digest(PRETRAIN))}


def test_same_data_same_ids_in_two_studies(world_out):
    assert _ids(world_out) == _ids(world_out)


def test_a_changed_example_is_a_new_id_for_its_task_only(world_out, tmp_path):
    import shutil

    before = _ids(world_out)
    out = tmp_path / "out"
    shutil.copytree(world_out / "world", out / "world")
    # One text of SNLI-VE's evaluation split (what a fixed loader or annotation file would change).
    _edit_first_row(out / "world" / "snli_ve" / "snli_ve_dev.jsonl",
                    lambda r: r.update(sentence2=r["sentence2"].replace("There is", "There is not")))
    after = _ids(out)
    changed = {k for k in before["runs"] if before["runs"][k] != after["runs"][k]}
    assert changed == {k for k in before["runs"] if k[0] == "snli_ve"} and changed
    assert {k for k in before["searches"] if before["searches"][k] != after["searches"][k]} == {"imp:snli_ve"}
    assert after["theta0"] == before["theta0"]  # the pre-training corpus is unchanged
    # One caption of the corpus: a new θ0 folder and new `:pretrain` search; tasks' runs keep their ids
    # here (downstream they change through θ0's content hash, which is faked in `_ids`).
    corpus = out / "world" / "captions" / "captions_train.json"
    data = json.loads(corpus.read_text(encoding="utf-8"))
    data["annotations"][0]["caption"] += " Two shapes."
    corpus.write_text(json.dumps(data), encoding="utf-8")
    again = _ids(out)
    assert again["theta0"] != before["theta0"] and again["runs"] == after["runs"]
    assert {k for k in after["searches"] if after["searches"][k] != again["searches"][k]} == {"imp:pretrain"}


def test_a_worker_refuses_data_that_differ_from_the_planned_ones(world_out):
    from bench.config import load_config
    from bench.core.errors import RunFailed
    from bench.runner.finetune import finetune_pair
    from bench.runner.study import Study

    cfg = load_config("smoke")
    pair = replace(runner_fakes.make_pairs(1)[0], task="snli_ve", data_hash="stale",
                   study=(cfg, str(world_out), str(world_out / "pretrain" / "fake")))
    assert Study(cfg, world_out).data_digest("snli_ve") != "stale"
    with pytest.raises(RunFailed, match="data of task snli_ve differ"):
        finetune_pair(pair, world_out / "runs" / pair.run_id)
