"""A synthetic results store with known numbers (shared by the reports tests) + store tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config import build_config
from bench.core.errors import DataError

BACKBONE = "toy-uniter"
# source -> task -> sparsity -> (seed 0, seed 1)
VALUES = {
    "dense": {"vqa": {0.0: (60.0, 62.0)}, "gqa": {0.0: (50.0, 50.0)}},
    "imp:vqa": {"vqa": {0.5: (61.0, 61.0), 0.7: (58.0, 60.0)}, "gqa": {0.5: (49.0, 49.0), 0.7: (45.0, 45.0)}},
    "imp:gqa": {"vqa": {0.5: (55.0, 57.0), 0.7: (50.0, 50.0)}, "gqa": {0.5: (50.0, 50.0), 0.7: (49.6, 49.6)}},
    "imp:pretrain": {"vqa": {0.5: (60.0, 62.0), 0.7: (57.0, 57.0)}, "gqa": {0.5: (49.5, 49.5), 0.7: (48.0, 48.0)}},
    "omp:vqa": {"vqa": {0.5: (59.0, 59.0), 0.7: (55.0, 55.0)}, "gqa": {0.5: (48.0, 48.0), 0.7: (44.0, 44.0)}},
    "random": {"vqa": {0.5: (40.0, 42.0), 0.7: (30.0, 30.0)}, "gqa": {0.5: (35.0, 35.0), 0.7: (52.0, 52.0)}},
    "mine:vqa": {"vqa": {0.5: (63.0, 63.0), 0.7: (58.5, 58.5)}},
    "mine:gqa": {"gqa": {0.5: (50.2, 50.2), 0.7: (40.0, 40.0)}},
}
METRIC = {"vqa": "vqa_score", "gqa": "accuracy"}


def config(**matrix):
    m = {"tasks": ["vqa", "gqa"], "sparsities": [0.5, 0.7], "seeds": 2, **matrix}
    return build_config({"matrix": m})


def write_record(out: Path, run_id: str, **fields) -> None:
    d = out / "runs" / run_id
    d.mkdir(parents=True, exist_ok=True)
    (d / "record.json").write_text(json.dumps({"run_id": run_id, **fields}))


def make_store(out: Path, values: dict = VALUES, seeds=(0, 1), failed: int = 1, tickets: bool = True) -> Path:
    """Write run records (and tickets) for `values`; returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for source, per_task in values.items():
        method, _, source_task = source.partition(":")
        for task, per_sp in per_task.items():
            for sp, vals in per_sp.items():
                for seed, v in zip(seeds, vals):
                    rid = f"{source.replace(':', '-')}_{task}_{sp}_{seed}"
                    write_record(out, rid, status="done", backbone=BACKBONE, source=source, method=method,
                                 source_task=source_task, sparsity=sp, task=task, seed=seed, split="dev",
                                 metric=METRIC[task], value=v, metrics={METRIC[task]: v},
                                 timings={"train_s": 1.0, "eval_s": 0.5, "total_s": 1.5},
                                 env={"device": "cpu", "torch": torch.__version__, "python": "3.11"})
    for i in range(failed):
        write_record(out, f"failed_{i}", status="failed", reason="non-finite loss at step 3", backbone=BACKBONE,
                     source="imp:vqa", task="vqa", sparsity=0.9, seed=0)
    if tickets:
        make_tickets(out)
    return out


# Keep masks over two layers of 16 weights: imp:vqa keeps the first half, imp:gqa indices 4..11
# → Jaccard 4 / 12 = 1/3 at 50%; random keeps the odd indices → with imp:vqa 4 / 12 as well.
def _keep(idx, n=16) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[list(idx)] = True
    return m.reshape(4, 4)


TICKET_KEEP = {
    "imp:vqa": range(0, 8),
    "imp:gqa": range(4, 12),
    "random": range(1, 16, 2),
}
PARAMS = ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.query.weight")


def save_ticket(path: Path, masks: dict, **meta) -> None:
    """The one place the tests build ticket files (through the real `tickets.Ticket`)."""
    from tickets import Ticket
    from tickets.fingerprint import fingerprint_of

    t = Ticket.build(masks, fingerprint=fingerprint_of(masks.items()), **meta)
    t.save(path)


def make_tickets(out: Path) -> None:
    for source, keep in TICKET_KEEP.items():
        method, _, task = source.partition(":")
        masks = {PARAMS[0]: _keep(keep), PARAMS[1]: _keep(range(0, 8))}
        path = out / "tickets" / "abc123" / f"{method}__{task or 'pretrain'}" / "sparsity-0.50.safetensors"
        save_ticket(path, masks, backbone=BACKBONE, source=source, method=method, source_task=task or "pretrain",
                    target_sparsity=0.5)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "out")


# ---------------------------------------------------------------------------------------------


def test_collect_matrix_writes_csv_with_dense_and_relative(store):
    from reports.store import MATRIX_COLUMNS, collect_matrix, matrix_path

    df = collect_matrix(store)
    assert list(df.columns) == MATRIX_COLUMNS
    n_done = sum(len(v) for per_task in VALUES.values() for per_sp in per_task.values() for v in per_sp.values())
    assert len(df) == n_done
    assert df.attrs["failed"] == 1 and df.attrs["failed_runs"] == ["failed_0"]
    on_disk = pd.read_csv(matrix_path(store))
    assert list(on_disk.columns) == MATRIX_COLUMNS and len(on_disk) == n_done
    row = df[(df.source == "imp:vqa") & (df.task == "vqa") & (df.sparsity == 0.7) & (df.seed == 1)].iloc[0]
    assert row.dense_value == 62.0 and math.isclose(row.relative, 60.0 / 62.0)
    assert row.method == "imp" and row.source_task == "vqa"
    dense = df[df.source == "dense"]
    assert (dense.relative == 1.0).all()


def test_collect_matrix_is_idempotent(store):
    from reports.store import collect_matrix, matrix_path

    collect_matrix(store)
    first = matrix_path(store).read_bytes()
    collect_matrix(store)
    assert matrix_path(store).read_bytes() == first


def test_dense_of_another_seed_falls_back_to_mean(tmp_path):
    from reports.store import collect_matrix

    out = make_store(tmp_path / "o", {"dense": {"vqa": {0.0: (60.0, 62.0)}}}, tickets=False, failed=0)
    write_record(out, "extra", status="done", backbone=BACKBONE, source="random", sparsity=0.5, task="vqa", seed=7,
                 metric="vqa_score", value=30.5)
    df = collect_matrix(out)
    row = df[df.seed == 7].iloc[0]
    assert row.dense_value == 61.0 and row.method == "random" and row.source_task == ""


def test_bad_records_are_one_line_errors(tmp_path):
    from reports.store import collect_matrix

    out = tmp_path / "o"
    write_record(out, "a", status="done", backbone=BACKBONE, source="dense", sparsity=0.0, task="vqa", seed=0,
                 metric="vqa_score")
    with pytest.raises(DataError, match=r"record.json: missing field 'value'") as e:
        collect_matrix(out)
    assert "\n" not in str(e.value)
    write_record(out, "a", status="weird")
    with pytest.raises(DataError, match="'status' must be 'done' or 'failed', found 'weird'"):
        collect_matrix(out)
    (out / "runs" / "a" / "record.json").write_text("{not json")
    with pytest.raises(DataError, match="malformed JSON at line 1"):
        collect_matrix(out)


def test_empty_store_is_a_one_line_error(tmp_path):
    from reports import build_report

    out = make_store(tmp_path / "o", {}, failed=2, tickets=False)
    with pytest.raises(DataError, match=r"no finished runs under runs/\*/record.json \(2 failed\)") as e:
        build_report(out, config=config())
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="results directory not found"):
        build_report(tmp_path / "missing", config=config())


def test_tickets_are_read_with_source_and_sparsity(store):
    from reports.ticket_views import iter_tickets

    ts = {t.source: t for t in iter_tickets(store)}
    assert set(ts) == {"imp:vqa", "imp:gqa", "random"}
    assert ts["imp:vqa"].sparsity == 0.5 and ts["imp:vqa"].backbone == BACKBONE
    assert int(ts["imp:gqa"].masks[PARAMS[0]].sum()) == 8


def test_config_of_the_store_is_read_leniently(tmp_path):
    from reports.context import resolve_config

    (tmp_path / "config.yaml").write_text(
        "name: s\nmatrix:\n  tasks: [vqa]\n  sparsities: [0.5]\n  renamed_field: 3\nreport:\n  relaxed: 0.98\n")
    cfg = resolve_config(tmp_path, None)
    assert cfg.matrix.tasks == ("vqa",) and cfg.matrix.sparsities == (0.5,) and cfg.report.relaxed == 0.98
    assert resolve_config(tmp_path / "none", None).report.relaxed == 0.99
