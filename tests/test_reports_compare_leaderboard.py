"""The method leaderboard (`ticketbench compare`): like-against-like pairing, outcomes from the
report's statistics (reports.stats), 'not testable' with one seed, AUC, search costs and
side-by-side output."""

import json
import math

import pytest
from test_reports_synth import BACKBONE, METRIC, write_record

from bench.config import build_config
from bench.core.errors import TicketbenchError
from reports.leaderboard import (
    NOT_TESTABLE,
    auc,
    baseline_source,
    leaderboard,
    write_leaderboard,
)
from reports.store import collect_matrix

NOISE = (-1.0, 0.0, 1.0)  # the same seed pattern in every cell: pooled seed sd = 1 exactly
# source -> task -> sparsity -> score before seed noise
BASE = {
    "dense": {"vqa": {0.0: 60.0}, "gqa": {0.0: 50.0}},
    "imp:vqa": {"vqa": {0.5: 58.0, 0.7: 55.0}, "gqa": {0.5: 48.0, 0.7: 45.0}},
    "imp:gqa": {"vqa": {0.5: 40.0, 0.7: 40.0}, "gqa": {0.5: 30.0, 0.7: 30.0}},  # far below: a wrong pairing shows
    "imp:pretrain": {"vqa": {0.5: 57.0, 0.7: 50.0}, "gqa": {0.5: 47.0, 0.7: 40.0}},
    # mine:vqa transferred to gqa too: +3 (win), +1 (tie), -3 (loss), 0 (tie) against imp:vqa
    "mine:vqa": {"vqa": {0.5: 61.0, 0.7: 56.0}, "gqa": {0.5: 45.0, 0.7: 45.0}},
    "mine:retrieval": {"vqa": {0.5: 10.0}},  # imp has no retrieval ticket: unpaired, not ranked
    "flow": {"vqa": {0.5: 62.0, 0.7: 55.0}, "gqa": {0.5: 52.0, 0.7: 45.0}},  # task-free: +5 vs imp:pretrain
}


def _store(out, seeds=(0, 1, 2)):
    for source, per_task in BASE.items():
        method, _, source_task = source.partition(":")
        key = f"{method}__{source_task or 'none'}"
        for task, per_sp in per_task.items():
            for sp, v in per_sp.items():
                for seed in seeds:
                    value = v + NOISE[seed]
                    search = "s-flow" if method == "flow" else "h1"  # flow: the per-search-id layout
                    ticket = {"path": f"/elsewhere/tickets/{search}/{key}/sparsity-{sp:.2f}.safetensors"}
                    write_record(out, f"{key}_{task}_{sp}_{seed}", status="done", backbone=BACKBONE, source=source,
                                 method=method, source_task=source_task, sparsity=sp, task=task, seed=seed,
                                 metric=METRIC[task], value=value, ticket=ticket if method != "dense" else None)
    for key, seconds, cost in (("mine__vqa", 2.5, {"train_steps": 100, "score_calls": 0, "flow_calls": 0}),
                               ("flow__none", 1.0, {"train_steps": 0, "score_calls": 0, "flow_calls": 200}),
                               ("imp__vqa", 10.0, {"train_steps": 400}), ("imp__pretrain", 20.0, {"train_steps": 800})):
        # tickets/<search id>/search.json beside tickets/<search id>/<key>/ (today's layout), or the
        # older tickets/<hash>/<key>/search.json
        d = out / "tickets" / ("s-flow" if key == "flow__none" else "h1") / key
        d.mkdir(parents=True)
        log = d.parent if key == "flow__none" else d
        (log / "search.json").write_text(json.dumps({"seconds": seconds, "cost": cost}))
    stale = out / "tickets" / "h0" / "mine__vqa"  # an older search no run used: not counted
    stale.mkdir(parents=True)
    (stale / "search.json").write_text(json.dumps({"seconds": 99.0, "cost": {"train_steps": 9999}}))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("lb"))


@pytest.fixture(scope="module")
def lb(store):
    from reports.leaderboard import search_costs

    df = collect_matrix(store)
    return leaderboard(df, ["mine", "flow"], "imp", costs=search_costs(store, sorted(set(df["source"]))))


def test_like_against_like_pairing(lb):
    pairs = lb.cells.drop_duplicates(["source", "task"]).set_index(["source", "task"])["baseline_source"].to_dict()
    assert pairs == {("mine:vqa", "vqa"): "imp:vqa", ("mine:vqa", "gqa"): "imp:vqa",  # transferred: imp:vqa, not imp:gqa
                     ("flow", "vqa"): "imp:pretrain", ("flow", "gqa"): "imp:pretrain"}
    assert lb.unpaired == {"mine": ["mine:retrieval"]}
    assert baseline_source({"imp:pretrain", "imp:vqa"}, "snip:pretrain", "imp") == "imp:pretrain"
    assert baseline_source({"imp:vqa"}, "snip:gqa", "imp") is None
    assert baseline_source({"random"}, "snip:gqa", "random") == "random"  # a task-free baseline is like any


def test_outcomes_come_from_the_measured_seed_noise(lb):
    assert lb.noise["noise"].tolist() == pytest.approx([1.0, 1.0])  # dense and pooled seed std: 1
    mine = lb.outcomes[lb.outcomes["method"] == "mine"].set_index(["task", "sparsity"])
    assert mine["margin"].tolist() == pytest.approx([0.5] * 4)  # half the seed noise
    # three seeds per cell: a t-interval floored at the noise, half-width 4.303 / sqrt(3) = 2.48 points
    assert mine["outcome"].to_dict() == {("vqa", 0.5): "win", ("vqa", 0.7): "inconclusive",
                                         ("gqa", 0.5): "loss", ("gqa", 0.7): "inconclusive"}
    assert mine.loc[("vqa", 0.5), "ci_low"] == pytest.approx(3 - 4.303 / math.sqrt(3), abs=1e-3)
    s = lb.summary.set_index("method")
    assert s.loc["mine", ["wins", "ties", "losses", "inconclusive"]].tolist() == [1, 0, 1, 2]
    assert s.loc["flow", ["wins", "ties", "losses", "inconclusive"]].tolist() == [4, 0, 0, 0]


def test_mean_paired_difference_ci_and_verdict(lb):
    s = lb.summary.set_index("method")
    assert s.loc["mine", "cells"] == 12 and s.loc["mine", "seeds"] == 3 and s.loc["mine", "mean_diff"] == pytest.approx(0.25)
    assert s.loc["mine", "ci_low"] < 0 < s.loc["mine", "ci_high"]  # 12 cells: bootstrapped
    assert s.loc["mine", "outcome"] == "inconclusive" and s.loc["mine", "verdict"].startswith("inconclusive against imp")
    # +5 in every cell, seeds shared: the interval is the noise floor's, per task sqrt((1/4 + 1/4) / 3)
    # over two sparsities, halved over two tasks, t with 4 Welch–Satterthwaite degrees of freedom
    half = 2.776 * math.sqrt(0.25 * (1 / 6) * 2)
    assert s.loc["flow", ["mean_diff", "ci_low", "ci_high"]].tolist() == pytest.approx([5.0, 5 - half, 5 + half], abs=1e-3)
    assert s.loc["flow", "verdict"].startswith("better than imp") and "Holm p" in s.loc["flow", "verdict"]
    assert s.loc["flow", "holm_p"] < 0.05 and s.loc["flow", "outcome"] == "win"
    assert lb.summary["method"].tolist() == ["flow", "mine", "imp"] and lb.summary["rank"].tolist() == ["1", "2", "3"]


def test_auc_and_matching_sparsity(lb):
    assert auc({0.5: 50.0, 0.7: 40.0}, dense=60.0) == pytest.approx((0.5 * 55 + 0.2 * 45) / 0.7)
    assert auc({0.5: 50.0, 0.7: 40.0}) == pytest.approx(45.0)
    assert math.isnan(auc({0.5: 50.0}))
    row = lb.per_task.set_index(["source", "task"]).loc[("flow", "vqa")]
    assert row["auc"] == pytest.approx(auc({0.5: 62.0, 0.7: 55.0}, 60.0))
    assert row["baseline_auc"] == pytest.approx(auc({0.5: 57.0, 0.7: 50.0}, 60.0))
    assert row["relaxed_sparsity"] == 0.5 and math.isnan(row["baseline_relaxed_sparsity"])  # 62 ≥ 99 % of 60; 57 not


def test_search_costs_come_from_the_searches_the_runs_used(lb):
    s = lb.summary.set_index("method")
    assert s.loc["mine", ["search_s", "train_steps"]].tolist() == [2.5, 100.0]  # not the stale 99 s search
    assert s.loc["flow", ["search_s", "flow_calls"]].tolist() == [1.0, 200.0]
    assert s.loc["imp", "verdict"] == "baseline" and s.loc["imp", "search_s"] == 30.0


def test_one_seed_says_not_testable_and_ranks_nothing(tmp_path):
    df = collect_matrix(_store(tmp_path, seeds=(1,)))
    lb1 = leaderboard(df, ["mine", "flow"], "imp")
    assert not lb1.testable and (lb1.summary["rank"] == NOT_TESTABLE).all()
    # one dense seed: no interval of dense against chance, so no task is eligible to be ranked on
    assert lb1.outcomes.empty and "gqa: one seed, no std; vqa: one seed, no std" in lb1.excluded
    rows = lb1.summary[lb1.summary["method"] != "imp"]
    assert rows["ci_low"].isna().all() and rows["wins"].isna().all()
    assert all(v.startswith(NOT_TESTABLE) for v in rows["verdict"])


def test_a_one_seed_method_is_listed_unranked_beside_testable_ones(tmp_path):
    df = collect_matrix(_store(tmp_path))
    df = df[~((df["method"] == "mine") & (df["seed"] > 0))]  # mine: one seed per cell
    s = leaderboard(df, ["mine", "flow"], "imp").summary
    assert s[["method", "rank"]].values.tolist() == [["flow", "1"], ["imp", "2"], ["mine", NOT_TESTABLE]]


def test_unknown_method_and_no_method_are_one_line(lb, store):
    df = collect_matrix(store)
    with pytest.raises(TicketbenchError, match="no finished runs of method 'nope'.*flow, imp, mine"):
        leaderboard(df, ["nope"], "imp")
    with pytest.raises(TicketbenchError, match="other than the baseline"):
        leaderboard(df, ["imp"], "imp")


def test_comparisons_live_side_by_side(store):
    cfg = build_config({"matrix": {"tasks": ["vqa", "gqa"], "sparsities": [0.5, 0.7], "seeds": 3}})
    a = write_leaderboard(store, ["mine", "flow"], "imp", config=cfg)
    b = write_leaderboard(store, ["mine"], "imp", config=cfg)
    assert a.name == "compare-mine-flow-vs-imp" and b.name == "compare-mine-vs-imp" and a.parent == b.parent
    for d in (a, b):
        for f in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "per_task.csv", "outcomes.csv",
                  "seed_noise.csv", "cells.csv", "leaderboard.png", "leaderboard.pdf", "curves.png", "README.md"):
            assert (d / f).exists(), (d, f)
    write_leaderboard(store, ["mine", "flow"], "imp", config=cfg)  # rebuilding one leaves the other
    assert (b / "leaderboard.csv").exists()
    readme = (a / "README.md").read_text()
    assert "flow: better than imp" in readme and "mine:retrieval" in readme
    assert "\\begin{tabular}" in (a / "leaderboard.tex").read_text()


def test_cli_compare_and_methods(store, capsys):
    from bench.cli import main

    assert main(["compare", str(store), "--methods", "flow", "--baseline", "imp"]) == 0
    out = capsys.readouterr().out
    assert "flow: better than imp" in out and "compare-flow-vs-imp" in out
    assert main(["compare", str(store), "--methods", "nope"]) != 0
    assert "no finished runs of method 'nope'" in capsys.readouterr().err
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in ("snip", "grasp", "synflow", "movement", "layerwise_magnitude", "lr_rewind", "early_bird", "imp"):
        assert f"\n{name}  (built-in; " in "\n" + text
    assert "snip  (built-in; calibration; no training; N:M tickets)" in text
    assert "reinit  (built-in; data-free; no training, transforms imp's ticket; N:M tickets)" in text
    assert "Tanaka" in text and "iterations = 100" in text
    assert main(["methods", "--plugins", "no_such_plugin_module"]) != 0
    assert "cannot import 'no_such_plugin_module'" in capsys.readouterr().err


def test_report_compare_pits_like_against_like(store):
    from reports.compare import compare_frame

    cmp = compare_frame(collect_matrix(store), "mine")
    imp = cmp[(cmp.reference == "imp") & (cmp.source == "mine:vqa")].set_index(["task", "sparsity"])
    assert set(imp["reference_source"]) == {"imp:vqa"}  # on gqa too: the transferred ticket meets imp:vqa
    assert imp.loc[("gqa", 0.5), "diff"] == pytest.approx(-3.0)


def test_report_compare_with_one_seed_is_not_testable(tmp_path):
    from reports.compare import compare_frame, compare_summary, verdict

    df = collect_matrix(_store(tmp_path, seeds=(1,)))
    cmp = compare_frame(df, "mine")  # one dense seed: no task is clearly above chance
    assert set(cmp["outcome"]) == {NOT_TESTABLE} and (cmp["note"] == "dense not clearly above chance on this task").all()
    assert verdict(compare_summary(cmp), "mine").startswith(
        f"'mine' is {NOT_TESTABLE} against imp: no task clearly above chance (not clearly above chance — gqa: one "
        "seed, no std")
    # dense with three seeds, the method with one: every cell and statement is not testable, and a
    # stated margin does not make one run an interval
    three = collect_matrix(_store(tmp_path / "three"))
    one = three[(three["method"] != "mine") | (three["seed"] == 1)]
    for margin in (0.0, 2.0):
        cmp = compare_frame(one, "mine", tie_margin=margin)
        assert set(cmp["outcome"]) == {NOT_TESTABLE} and cmp["ci_low"].isna().all()
    s = compare_summary(cmp)
    assert (s[["wins", "ties", "losses"]].to_numpy() == 0).all() and (s["not_testable"] > 0).all()
    assert verdict(s, "mine").startswith(f"'mine' is {NOT_TESTABLE} against imp: one seed: no interval (mean")


def test_report_compare_and_leaderboard_agree(store):
    """One rule: `report --compare mine` against imp and `ticketbench compare --methods mine` give the
    same per-cell outcomes and the same overall difference with the same interval."""
    from reports.compare import compare_frame, compare_summary

    df = collect_matrix(store)
    cmp = compare_frame(df, "mine")
    imp = cmp[cmp["reference"] == "imp"].set_index(["source", "task", "sparsity"])
    lbm = leaderboard(df, ["mine"], "imp")
    cells = lbm.outcomes.set_index(["source", "task", "sparsity"])
    assert imp["outcome"].to_dict() == cells["outcome"].to_dict()
    assert imp["ci_low"].to_dict() == pytest.approx(cells["ci_low"].to_dict())
    s = compare_summary(cmp).set_index("reference").loc["imp"]
    row = lbm.summary.set_index("method").loc["mine"]
    assert (s["mean_diff"], s["ci_low"], s["ci_high"]) == pytest.approx((row["mean_diff"], row["ci_low"], row["ci_high"]))


def test_only_tasks_clearly_above_chance_are_ranked(store):
    """GQA's dense model at chance: its cells are left out of the leaderboard and named in it."""
    df = collect_matrix(store)
    df.loc[df["task"] == "gqa", "chance"] = 50.0  # dense GQA is 50 ± 1 over three seeds
    lb2 = leaderboard(df, ["mine", "flow"], "imp")
    assert set(lb2.cells["task"]) == {"vqa"} and set(lb2.per_task["task"]) == {"vqa"}
    assert lb2.excluded.startswith("not clearly above chance — gqa: dense − chance +0.0")
    assert lb2.summary.set_index("method").loc["mine", "cells"] == 6  # vqa only: 2 sparsities × 3 seeds


def test_every_auc_has_an_interval(lb):
    from reports.leaderboard import auc_weights

    w = auc_weights([0.5, 0.7])
    assert sum(w.values()) == pytest.approx(1.0) and w[0.0] == pytest.approx(0.25 / 0.7)
    pt = lb.per_task
    assert (pt["auc_low"] < pt["auc"]).all() and (pt["auc"] < pt["auc_high"]).all()
    assert (pt["auc_diff_low"] < pt["auc_diff"]).all() and (pt["auc_diff"] < pt["auc_diff_high"]).all()
    # flow is +5 at every sparsity: its AUC difference excludes 0; the summary's AUC has its CI too
    flow = pt.set_index(["source", "task"]).loc[("flow", "vqa")]
    assert flow["auc_diff_low"] > 0
    s = lb.summary.set_index("method")
    assert (s["auc_low"] < s["auc"]).all() and (s["auc"] < s["auc_high"]).all()


def test_holm_corrects_wins_across_methods():
    """Two methods each 'winning' at p 0.03 and 0.04 alone: with Holm's correction over the two
    (0.03 × 2 = 0.06 ≥ 0.05) neither win stands."""
    from reports import stats
    from reports.compare import holm_outcomes

    def win(p):
        return stats.Paired(6, 3, 1.0, 0.1, 1.9, 0.05, "win", p=p)

    assert holm_outcomes([win(0.03), win(0.04)]) == [("inconclusive", pytest.approx(0.06)),
                                                       ("inconclusive", pytest.approx(0.06))]
    assert [o for o, _ in holm_outcomes([win(0.01), win(0.04)])] == ["win", "win"]  # 0.02, then 0.04
