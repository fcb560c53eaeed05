"""Determinism on CPU: the same config and seeds give the same θ0, the same tickets (content hash) and the
same metrics in two fresh output directories; another search or fine-tuning seed gives different ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_support import prepare, records
from safetensors.torch import load_file

from tickets import Ticket

# Two fine-tuning seeds per pair, so seed 0 and seed 1 of the same pair can be compared.
SUBSET = dict(seeds=2)
STAGES = ("world", "pretrain", "find", "matrix")


def _tickets(out: Path) -> dict[str, Ticket]:
    # Keyed by source and file: the search ids above them are content addresses of θ0 and settings.
    return {f"{p.parent.name}/{p.name}": Ticket.load(p) for p in sorted(out.glob("tickets/*/*/*.safetensors"))}


def _results(out: Path) -> dict[str, dict]:
    """What a run computed, without wall times, stamps and absolute paths."""
    return {r["run_id"]: {"value": r["value"], "metrics": r["metrics"], "history": r["history"],
                          "mask_audit": r["mask_audit"], "ticket_hash": r["ticket"]["content_hash"]}
            for r in records(out)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    a, b = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    prepare(a, stages=STAGES, **SUBSET)
    prepare(b, stages=STAGES, **SUBSET)
    # Another search seed on a copy of the first world and θ0 (both are seed-independent of find).
    c = tmp_path_factory.mktemp("find_seed") / "out"
    shutil.copytree(a, c, ignore=lambda d, names: [n for n in names if n in ("tickets", "runs", "report")])
    prepare(c, "find.seed=1", stages=STAGES, **SUBSET)
    # The dense runs alone, in another order (seed 1 right after seed 0 instead of after the IMP runs).
    d = tmp_path_factory.mktemp("order") / "out"
    shutil.copytree(a, d, ignore=lambda d, names: [n for n in names if n in ("runs", "report")])
    prepare(d, stages=STAGES, sources=["dense"], **SUBSET)
    return {"a": a, "b": b, "find_seed": c, "order": d}


def test_same_seed_same_theta0_bit_for_bit(runs):
    (ta,), (tb,) = (list(runs[k].glob("pretrain/*/model.safetensors")) for k in ("a", "b"))
    assert ta.parent.name == tb.parent.name
    wa, wb = load_file(ta), load_file(tb)
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def test_same_seed_same_tickets(runs):
    ta, tb = _tickets(runs["a"]), _tickets(runs["b"])
    assert ta and ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].content_hash == tb[name].content_hash, name
        assert all(ta[name].masks[k].equal(tb[name].masks[k]) for k in ta[name].masks)


def test_same_seed_same_metrics(runs):
    ra, rb = _results(runs["a"]), _results(runs["b"])
    # 3 pairs (imp 50 %, imp 90 %, dense) x 2 seeds; equal run ids mean equal configs, tickets and θ0.
    assert len(ra) == 6 and ra.keys() == rb.keys()
    for run_id in ra:
        assert ra[run_id] == rb[run_id], run_id


def test_another_find_seed_gives_other_tickets(runs):
    ta, tc = _tickets(runs["a"]), _tickets(runs["find_seed"])
    assert ta.keys() == tc.keys()
    for name in ta:
        assert ta[name].content_hash != tc[name].content_hash, name
    # Different tickets are different runs; their training curves differ too.
    imp = lambda out: {(r["sparsity"], r["seed"]): r["history"] for r in records(out) if r["source"] != "dense"}  # noqa: E731
    ha, hc = imp(runs["a"]), imp(runs["find_seed"])
    assert ha.keys() == hc.keys() and all(ha[k] != hc[k] for k in ha)


def test_another_finetune_seed_gives_other_runs(runs):
    by_pair: dict[tuple, dict[int, dict]] = {}
    for r in records(runs["a"]):
        by_pair.setdefault((r["source"], r["sparsity"], r["task"]), {})[r["seed"]] = r
    assert len(by_pair) == 3
    for key, seeds in by_pair.items():
        assert seeds.keys() == {0, 1}, key
        assert seeds[0]["run_id"] != seeds[1]["run_id"]
        assert [h["loss"] for h in seeds[0]["history"]] != [h["loss"] for h in seeds[1]["history"]], key


def test_a_run_does_not_depend_on_the_runs_before_it(runs):
    # Resume, worker processes and concurrent runners change which runs share a process and in what order.
    ra, rd = _results(runs["a"]), _results(runs["order"])
    assert len(rd) == 2
    for run_id in rd:
        assert rd[run_id] == ra[run_id], run_id


def test_changed_task_data_are_new_runs_and_the_old_records_stay(runs, tmp_path):
    """A fixed annotation (one evaluation text of SNLI-VE) in a copy of the first store: the matrix trains new
    runs under new ids instead of serving the cached ones, and leaves every old record byte for byte; θ0 and
    the corpus are unchanged, so θ0 is reused."""
    import json

    from reliability_support import snapshot

    out = tmp_path / "out"
    shutil.copytree(runs["a"], out, ignore=lambda d, names: [n for n in names if n == "report"])
    old_runs, old_theta0 = snapshot(out / "runs"), snapshot(out / "pretrain")
    dev = out / "world" / "snli_ve" / "snli_ve_dev.jsonl"
    lines = dev.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["sentence2"] = row["sentence2"].replace("There is", "There is not")
    dev.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n", encoding="utf-8")
    prepare(out, stages=("matrix",), sources=["dense"], **SUBSET)
    new = {r["run_id"]: r for r in records(out)}
    old_ids = {r["run_id"] for r in records(runs["a"])}
    assert {k: v for k, v in snapshot(out / "runs").items() if k in old_runs} == old_runs
    assert snapshot(out / "pretrain") == old_theta0
    added = set(new) - old_ids
    assert len(added) == 2 and all(new[k]["source"] == "dense" for k in added)  # dense × 2 seeds, retrained
    assert len({new[k]["data_hash"] for k in added}) == 1
    assert {new[k]["data_hash"] for k in added}.isdisjoint(new[k]["data_hash"] for k in old_ids)
