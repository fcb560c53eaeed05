"""build_report / paper_figures / compare_method end to end on the synthetic store."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_reports_synth import config, make_store  # noqa: E402

TABLES = ["accuracy_vs_sparsity", "transfer_matrix_s50", "transfer_matrix_s50_abs", "transfer_matrix_s70",
          "transfer_matrix_s70_abs", "matching_sparsity", "ticket_overlap", "ticket_overlap_s50", "layer_sparsity",
          "layer_sparsity_by_stream", "dense_vs_chance", "claims", "comparisons", "compare_mine", "compare_mine_summary"]
FIGURES = ["accuracy_vs_sparsity", "transfer_heatmap_s50", "transfer_heatmap_s70", "overlap_heatmap_s50",
           "layer_sparsity", "compare_mine"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from reports import build_report

    out = make_store(tmp_path_factory.mktemp("b") / "out")
    return out, build_report(out, compare="mine", config=config())


def test_every_table_and_figure_is_written(built):
    out, rd = built
    assert rd == out / "report"
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (rd / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    for name in FIGURES:
        assert (rd / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (rd / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert "\\begin{tabular}" in (rd / "transfer_matrix_s50.tex").read_text()
    pct = pd.read_csv(rd / "transfer_matrix_s50.csv", index_col=0)
    assert pct.loc["imp:pretrain", "average"] == pytest.approx(99.5)


def test_readme_has_setup_claims_tables_and_figures(built):
    _, rd = built
    text = (rd / "README.md").read_text()
    for needle in ("backbone: toy-uniter", "seeds: 0, 1", "sparsities: 50%, 70%", "runs: 52 done, 1 failed",
                   "device: cpu", "not comparable", "## Verdicts", "IMP − random: +24.5 points [95% CI",
                   "Pre-registered rules", "vqa (dense convergence not checked: matrix.convergence\\_check)", "| **not testable** |",
                   "## Paired comparisons",
                   "![accuracy vs sparsity](accuracy_vs_sparsity.png)", "transfer_heatmap_s70.png",
                   "overlap_heatmap_s50.png", "## Comparing `mine`", "better than random (+25.25 points, 95% CI"):
        assert needle in text, needle
    for name in FIGURES:  # every embedded figure exists
        assert (rd / f"{name}.png").exists()
    # The verdicts come first, before the setup and the tables.
    assert text.index("## Verdicts") < text.index("## Setup") < text.index("## Matching sparsity")
    assert len(text.splitlines()) < 110


def test_rebuild_is_idempotent_and_drops_stale_files(built):
    from reports import build_report

    out, rd = built
    before = {p.name: p.read_bytes() for p in rd.glob("*") if p.suffix in (".csv", ".md", ".tex")}
    (rd / "notes.txt").write_text("mine")  # a file the report did not write is never touched
    build_report(out, config=config())  # without --compare: its files go, nothing else changes
    after = {p.name: p.read_bytes() for p in rd.glob("*") if p.suffix in (".csv", ".md", ".tex")}
    assert not (rd / "compare_mine.csv").exists() and not (rd / "compare_mine.png").exists()
    assert (rd / "notes.txt").exists()
    same = {k: v for k, v in before.items() if not k.startswith("compare_") and k != "README.md"}
    assert {k: after[k] for k in same} == same
    build_report(out, compare="mine", config=config())  # restore for the other tests


def test_partial_store_gives_partial_report(tmp_path):
    from reports import build_report

    values = {"dense": {"vqa": {0.0: (60.0,)}}, "imp:vqa": {"vqa": {0.5: (59.5,)}}, "random": {"vqa": {0.5: (30.0,)}}}
    out = make_store(tmp_path / "o", values, seeds=(0,), failed=0, tickets=False)
    rd = build_report(out, config=config())
    text = (rd / "README.md").read_text()
    assert "## Partial report: what is missing" in text
    assert "target tasks without any finished run: gqa" in text
    assert "ladder sparsities without runs: 70%" in text
    assert "one seed per run" in text and "no ticket files" in text
    assert (rd / "accuracy_vs_sparsity.png").exists() and (rd / "transfer_heatmap_s50.png").exists()
    assert not (rd / "ticket_overlap.csv").exists()
    claims = pd.read_csv(rd / "claims.csv")
    assert claims.loc[0, "verdict"] == "not testable"  # one seed: no interval, nothing is judged


def test_compare_method_returns_frame_and_validates_name(built):
    from bench.core.errors import TicketbenchError
    from reports import build_report, compare_method

    out, _ = built
    cmp = compare_method(out, "mine", config=config())
    # like against like: mine:vqa meets imp:vqa, omp:vqa, random; mine:gqa imp:gqa and random (no omp:gqa);
    # gqa's dense seeds agree exactly (no interval against chance): its cells are listed, not judged
    assert set(cmp["reference"]) == {"imp", "omp", "random"} and len(cmp) == 10
    assert set(cmp[cmp["task"] == "gqa"]["outcome"]) == {"not testable"}
    with pytest.raises(TicketbenchError, match="invalid method '../x'"):
        build_report(out, compare="../x", config=config())


def test_paper_figures_vl_and_bert(built):
    from bench.core.errors import ConfigError
    from reports import paper_figures

    out, _ = built
    vl = paper_figures(out, "vl", config=config())
    assert vl == out / "report" / "paper-vl"
    for name in ("vl_accuracy_vs_sparsity", "vl_claims", "vl_transfer_s70"):
        assert (vl / f"{name}.png").exists() and (vl / f"{name}.pdf").exists()
    pt = pd.read_csv(vl / "vl_pretrain_transfer.csv")
    assert pt["paper_pct"].tolist() == [98.0, 96.0]
    # 60% is not on the ladder: no nearest-neighbour stand-in (50% used to be reported as 60%).
    assert pt["sparsity"].isna().tolist() == [True, False] and pt["sparsity"].iloc[1] == 0.7
    assert pt["pct_dense"].iloc[1] == pytest.approx(100 * (57 / 60 + 57 / 62 + 2 * 48 / 50) / 4)
    bert = paper_figures(out, "bert", config=config())
    t2 = pd.read_csv(bert / "bert_table2_this_run.csv").set_index("task")
    assert t2.loc["vqa", "sparsity"] == 0.5 and t2.loc["vqa", "random_minus_dense"] == -20.0
    paper = pd.read_csv(bert / "bert_table2_paper.csv").set_index("task")
    assert paper.loc["MNLI", "imp"] == 82.6 and paper.loc["CoLA", "random"] == 9.6
    assert (bert / "bert_paper_vs_run.png").exists()
    assert "not comparable" in (bert / "README.md").read_text()
    with pytest.raises(ConfigError, match="unknown paper 'gpt'"):
        paper_figures(out, "gpt", config=config())
