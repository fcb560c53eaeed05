"""The matrix does not wait for the slowest search (issue 27 item 5): a source's cells start as soon as its
tickets exist, on the worker slots the searches leave free; the plan's results are the same either way."""

from __future__ import annotations

import json

from reliability_support import cli_here, prepare, records, tiny_args


def test_a_sources_cells_finish_before_a_slower_search_does(tmp_path, capsys):
    out = prepare(tmp_path / "out", stages=("world", "pretrain"))
    # Two worker processes: IMP's search on gqa trains (slow); random pruning draws its masks at once, so
    # its cells (and dense's) run on the other worker while IMP still searches.
    argv = ["run", "smoke", "--out", str(out), "--quiet", "--workers", "2", "--tasks", "gqa",
            "--sources", "imp:gqa,random,dense", "--sparsities", "0.5", *tiny_args("find.steps=120")]
    proc = cli_here(*argv, capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    searches = {json.loads((p.parent / "search.json").read_text())["source"]: json.loads(p.read_text())
                for p in out.glob("tickets/*/record.json")}
    runs = {r["source"]: r for r in records(out)}
    assert set(runs) == {"imp:gqa", "random", "dense"} and all(r["status"] == "done" for r in runs.values())
    imp_found = searches["imp:gqa"]["finished_at"]
    assert runs["random"]["finished_at"] < imp_found and runs["dense"]["finished_at"] < imp_found
    assert runs["imp:gqa"]["finished_at"] > imp_found  # its cell waited for its ticket
    manifest = json.loads(next(out.glob("plans/*.json")).read_text())
    assert sorted(manifest["runs"]) == sorted(r["run_id"] for r in runs.values())  # the matrix stage's manifest
    # The same command again: the searches are stored, so their cells are found done without a search or run.
    proc = cli_here(*argv, capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert {r["source"]: r["finished_at"] for r in records(out)} == {k: r["finished_at"] for k, r in runs.items()}
