"""The report's tables on the synthetic store: exact expected values."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_reports_synth import PARAMS, make_store  # noqa: E402

TASKS = ["vqa", "gqa"]


@pytest.fixture(scope="module")
def df(tmp_path_factory):
    from reports.store import collect_matrix

    return collect_matrix(make_store(tmp_path_factory.mktemp("s") / "out", tickets=False))


def cell(t, **kw):
    for k, v in kw.items():
        t = t[t[k] == v]
    assert len(t) == 1, kw
    return t.iloc[0]


def test_accuracy_vs_sparsity_mean_std_pct(df):
    from reports.tables import accuracy_vs_sparsity

    long, disp = accuracy_vs_sparsity(df, TASKS)
    r = cell(long, task="vqa", source="imp:vqa", sparsity=0.7)
    assert r["mean"] == 59.0 and math.isclose(r["std"], math.sqrt(2)) and r["n_seeds"] == 2
    assert math.isclose(r["pct_dense"], 100 * (58 / 60 + 60 / 62) / 2)
    assert r["dense_mean"] == 61.0
    # chance-normalised beside % of dense: VQA's nominal chance is 24, so (59 − 24) / (61 − 24)
    assert math.isclose(r["pct_above_chance"], 100 * 35 / 37)
    assert disp.loc[("toy-uniter", "vqa", "vqa_score", "imp:vqa"), "70%"] == "59.0 ± 1.4 (96.7% / 94.6%)"
    assert disp.loc[("toy-uniter", "gqa", "accuracy", "imp:gqa"), "50%"] == "50.0 ± 0.0 (100.0% / 100.0%)"
    # tasks in the given order, own-task IMP first after dense
    assert list(long["task"].drop_duplicates()) == TASKS
    assert list(long[long.task == "vqa"]["source"].drop_duplicates())[:3] == ["dense", "imp:vqa", "imp:gqa"]


def test_transfer_matrix_pct_abs_and_average(df):
    from reports.tables import transfer_matrix

    pct, absolute = transfer_matrix(df, TASKS, 0.7, "toy-uniter")
    assert list(pct.columns) == ["vqa", "gqa", "average"]
    assert list(pct.index[:4]) == ["imp:vqa", "imp:gqa", "imp:pretrain", "omp:vqa"]
    assert "dense" not in pct.index
    vqa = 100 * (57 / 60 + 57 / 62) / 2
    assert math.isclose(pct.loc["imp:pretrain", "vqa"], vqa)
    assert math.isclose(pct.loc["imp:pretrain", "gqa"], 96.0)
    assert math.isclose(pct.loc["imp:pretrain", "average"], (vqa + 96.0) / 2)
    assert absolute.loc["random", "gqa"] == 52.0 and absolute.loc["random", "average"] == 41.0
    assert math.isnan(pct.loc["mine:vqa", "gqa"]) and math.isclose(pct.loc["mine:vqa", "average"], pct.loc["mine:vqa", "vqa"])


def test_matching_sparsity_strict_and_relaxed(df):
    from reports.tables import matching_sparsity

    m = matching_sparsity(df, TASKS, relaxed=0.99)
    r = cell(m, task="vqa", source="imp:vqa")  # dense 61 ± 1.41: 61 matches at 50%, 59 fails at 70%
    assert r.strict_sparsity == 0.5 and r.relaxed_sparsity == 0.5 and r.note == "2 dense seeds"
    r = cell(m, task="gqa", source="imp:gqa")  # dense 50 ± 0: 49.6 fails strict, is 99.2% ≥ 99%
    assert r.strict_sparsity == 0.5 and r.relaxed_sparsity == 0.7 and math.isclose(r.relaxed_pct_dense, 99.2)
    r = cell(m, task="vqa", source="random")
    assert math.isnan(r.strict_sparsity) and math.isnan(r.relaxed_sparsity)


def test_matching_with_one_seed_says_so(tmp_path):
    from reports.store import collect_matrix
    from reports.tables import matching_display, matching_sparsity

    values = {"dense": {"vqa": {0.0: (60.0,)}}, "imp:vqa": {"vqa": {0.5: (59.5,), 0.7: (50.0,)}}}
    df = collect_matrix(make_store(tmp_path / "o", values, seeds=(0,), failed=0, tickets=False))
    m = matching_sparsity(df, ["vqa"])
    r = m.iloc[0]
    assert math.isnan(r.strict_sparsity) and r.relaxed_sparsity == 0.5
    assert "1 dense seed" in r.note and "not assessed" in r.note
    d = matching_display(m).iloc[0]
    assert d["strict (within 1 std)"] == "n/a" and d["relaxed (≥ 99% dense)"] == "50%"
    # A row with nothing assessed (one seed, never relaxed) is left out of the display, kept in the csv.
    values["random"] = {"vqa": {0.5: (20.0,)}}
    df = collect_matrix(make_store(tmp_path / "o2", values, seeds=(0,), failed=0, tickets=False))
    m = matching_sparsity(df, ["vqa"])
    assert len(m) == 2 and matching_display(m)["source"].tolist() == ["imp:vqa"]


def test_claims_from_the_numbers(df):
    from reports.claims import vl_claims

    reference = df[df["source"] == "dense"].assign(steps_factor=2)  # converged: 2× steps gains nothing
    claims = vl_claims(df, TASKS, reference=reference)
    c = {x.claim.split(" ")[0] + x.claim.split(" ")[1]: x for x in claims}
    # gqa's two dense seeds agree exactly (50, 50) and no dev-set size is known: no interval, not counted
    assert "gqa: seeds agree exactly, no interval" in c["NoIMP"].detail
    assert c["NoIMP"].verdict == "not testable" and "1 ticket search(es) per cell" in c["NoIMP"].reason
    relaxed = c["RelaxedIMP"]  # the ladder (50%, 70%) has nothing above 70%: cannot show where tickets stop
    assert relaxed.verdict == "not testable" and "one above 70%" in relaxed.reason
    assert "vqa: 50%; at least 50%: 1/1" in relaxed.this_run
    pre = {x.claim.split(" ")[4]: x for x in claims if x.claim.startswith("Pre-training")}
    assert pre["60%"].verdict == "not testable" and "60% is not on this run's ladder" in pre["60%"].reason
    # 93.4% of dense at 70% (vqa: 57 / 61), two seeds: the interval straddles 96 − 0.5
    assert pre["70%"].verdict == "not testable" and "93.4% of dense [95% CI 83.7, 103.1]" in pre["70%"].this_run
    assert "straddles 95.5 (96 − tolerance 0.5)" in pre["70%"].reason
    imp = c["IMPtickets"]
    assert imp.verdict == "holds" and "+24.5 points" in imp.this_run and "BERT tickets" in imp.paper
    assert c["ViLT'shighest"].verdict == "not testable"


def test_compare_method_wins_ties_losses(df):
    from reports.compare import compare_frame, compare_summary

    cmp = compare_frame(df, "mine")
    # gqa's dense seeds agree exactly: no interval against chance, so its cells are listed, not judged
    assert set(cmp[cmp["task"] == "gqa"]["outcome"]) == {"not testable"} and cmp[cmp["task"] == "gqa"]["ci_low"].isna().all()
    imp = cmp[cmp.reference == "imp"].set_index(["task", "sparsity"])
    # two seeds: t(1) = 12.7 makes a +2 difference inconclusive; the tie margin is half of vqa's noise (√2)
    assert imp.loc[("vqa", 0.5), "outcome"] == "inconclusive" and imp.loc[("vqa", 0.5), "diff"] == 2.0
    assert math.isclose(imp.loc[("vqa", 0.7), "margin"], math.sqrt(2) / 2)
    rnd = cmp[(cmp.reference == "random") & (cmp.task == "vqa")].set_index(["task", "sparsity"])
    assert rnd["outcome"].tolist() == ["win", "win"] and rnd.loc[("vqa", 0.5), "ci_low"] > 0
    # omp has one source (omp:vqa): it is like mine:vqa
    assert cmp[cmp.reference == "omp"]["reference_source"].unique().tolist() == ["omp:vqa"]
    s = compare_summary(cmp).set_index("reference")
    assert s.loc["imp", ["wins", "ties", "losses", "inconclusive", "not_testable"]].tolist() == [0, 0, 0, 2, 2]
    assert s.loc["random", "outcome"] == "win" and s.loc["random", "holm_p"] < 0.05
    assert set(s.index) == {"imp", "omp", "random"}  # no pretrained_magnitude runs in the store
    # a stated tie margin replaces half the seed noise, but does not narrow the interval
    stated = compare_frame(df, "mine", tie_margin=3.0)
    out = stated[(stated.reference == "imp") & (stated.task == "vqa")].set_index(["task", "sparsity"])["outcome"]
    assert out.to_dict() == {("vqa", 0.5): "inconclusive", ("vqa", 0.7): "inconclusive"}
    assert (stated["margin_kind"] == "stated tolerance").all() and (stated["margin"].dropna() == 3.0).all()


def test_compare_unknown_method_is_one_line(df):
    from bench.core.errors import TicketbenchError
    from reports.compare import compare_frame

    with pytest.raises(TicketbenchError, match="no finished runs of method 'nope'.*methods present: imp, mine"):
        compare_frame(df, "nope")


def _view(source, masks, sparsity=0.5, backbone="b"):
    from reports.ticket_views import TicketView

    return TicketView(Path("x"), source, source.partition(":")[0], sparsity, backbone, masks)


def test_ticket_overlap_jaccard():
    from reports.tables import ticket_overlap

    a = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 0, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    ov = ticket_overlap([_view("imp:vqa", {"w": a}), _view("imp:gqa", {"w": b})])
    r = cell(ov, source_a="imp:vqa", source_b="imp:gqa")
    assert math.isclose(r.jaccard, 2 / 6) and r.weights == 8
    assert cell(ov, source_a="imp:gqa", source_b="imp:gqa").jaccard == 1.0


def test_layer_sparsity_groups_lxmert_streams():
    from reports.tables import layer_sparsity

    def m(kept, n=10):
        return torch.arange(n) < kept

    masks = {
        "lxmert.encoder.layer.0.attention.self.query.weight": m(8),  # text: 20% pruned
        "lxmert.encoder.layer.10.attention.self.query.weight": m(6),
        "lxmert.encoder.layer.2.output.dense.weight": m(6),
        "lxmert.encoder.r_layers.0.attention.self.query.weight": m(5),  # vision
        "lxmert.encoder.x_layers.0.visual_attention.att.query.weight": m(1),  # cross-modal
    }
    per_layer, per_stream = layer_sparsity([_view("imp:gqa", masks)])
    assert list(per_layer["layer"]) == ["lxmert.encoder.layer.0", "lxmert.encoder.layer.2", "lxmert.encoder.layer.10",
                                       "lxmert.encoder.r_layers.0", "lxmert.encoder.x_layers.0"]
    st = per_stream.set_index("stream")["stream_sparsity"]
    assert math.isclose(st["text"], 1 - 20 / 30) and st["vision"] == 0.5 and math.isclose(st["cross-modal"], 0.9)
    single, streams = layer_sparsity([_view("imp:vqa", {PARAMS[0]: m(4, 16)})])
    assert streams["stream"].tolist() == ["single-stream"] and single["layer"].tolist() == ["encoder.layer.0"]
