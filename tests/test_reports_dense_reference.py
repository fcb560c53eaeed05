"""The dense yardstick of the report: extra dense seeds, the convergence reference (dense at 2× the
recipe's steps), runs shared by identical tickets reported under each source, and the sparsity of
each weight-matrix type (synthetic stores and tickets: no training)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_reports_synth import BACKBONE, METRIC, config, make_store, save_ticket, write_record  # noqa: E402

# Dense VQA 60 ± 1 gains 0.5 at 2× steps (converged); dense GQA 50 ± 1 gains 4 (not converged).
DENSE = {"vqa": (59.0, 60.0, 61.0), "gqa": (49.0, 50.0, 51.0)}
LONG = {"vqa": (59.5, 60.5, 61.5), "gqa": (53.0, 54.0, 55.0)}
TICKET = {"vqa": {0.5: 59.8, 0.7: 57.0, 0.9: 50.0}, "gqa": {0.5: 49.6, 0.7: 45.0, 0.9: 40.0}}


def dense_store(out: Path, long: dict = LONG) -> Path:
    """Dense with three seeds and its 2× reference, own-task IMP tickets with one seed (the default's shape)."""
    values = {"dense": {t: {0.0: v} for t, v in DENSE.items()}}
    values.update({f"imp:{t}": {t: {sp: (v,) for sp, v in per.items()}} for t, per in TICKET.items()})
    values["random"] = {t: {0.5: (40.0,), 0.7: (35.0,), 0.9: (30.0,)} for t in TICKET}
    make_store(out, values, seeds=(0, 1, 2), failed=0)
    for task, vals in long.items():
        for seed, v in enumerate(vals):
            write_record(out, f"dense2x_{task}_{seed}", status="done", backbone=BACKBONE, source="dense",
                         method="dense", source_task="", sparsity=0.0, task=task, seed=seed, split="dev",
                         metric=METRIC[task], value=v, steps_factor=2)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from reports import build_report

    out = dense_store(tmp_path_factory.mktemp("dense") / "out")
    return out, build_report(out, config=config(seeds=1, dense_seeds=3, convergence_check=True,
                                                sparsities=[0.5, 0.7, 0.9]))


def test_convergence_is_read_from_the_store(built):
    from reports.claims import convergence
    from reports.store import collect_matrix, split_convergence

    out, _ = built
    df = collect_matrix(out, write=False)
    assert set(df["steps_factor"]) == {1, 2}
    matrix, reference = split_convergence(df)
    assert len(reference) == 6 and (reference["source"] == "dense").all()
    # The 2× runs are not dense seeds: the dense mean and spread are those of the recipe's steps.
    conv = convergence(matrix, reference, ["vqa", "gqa"]).set_index("task")
    assert conv.loc["vqa", "converged"] == "yes" and conv.loc["gqa", "converged"] == "no"
    assert conv.loc["gqa", "gain"] == pytest.approx(4.0) and conv.loc["gqa", "dense_std"] == pytest.approx(1.0)
    assert conv.loc["vqa", "dense_mean"] == pytest.approx(60.0) and conv.loc["vqa", "long_seeds"] == 3
    # Without reference runs nothing is claimed; with one dense seed there is no std to compare with.
    assert set(convergence(matrix, reference.iloc[0:0], ["vqa", "gqa"])["converged"]) == {"not checked"}
    one = matrix[(matrix["source"] != "dense") | (matrix["seed"] == 0)]
    assert set(convergence(one, reference, ["vqa", "gqa"])["converged"]) == {"unknown"}


def test_first_screen_names_the_unconverged_task_and_claims_note_it(built):
    out, rd = built
    text = (rd / "README.md").read_text()
    first = text[: text.index("## Verdicts")]
    assert "3 seed(s) per task" in first and "converged on 1/2 tasks" in first
    assert "**not converged:** gqa (+4.0 points, std 1.0)" in first
    claims = pd.read_csv(rd / "claims.csv").set_index("claim")
    strict = claims.loc[[c for c in claims.index if c.startswith("No IMP ticket")][0]]
    assert "gqa (dense not converged)" in strict["reason"]
    imp_vs_random = claims.loc[[c for c in claims.index if c.startswith("IMP tickets beat")][0]]
    assert "not converged" not in str(imp_vs_random["reason"])  # not a comparison with dense
    conv = pd.read_csv(rd / "dense_convergence.csv")
    assert list(conv["converged"]) == ["yes", "no"]
    assert "converged" in text[text.index("## Dense model vs chance"):]


def test_strict_matching_needs_ticket_searches_not_dense_seeds(built):
    """Three dense seeds, one ticket seed: the chance rule has its interval, but strict matching is a
    statement about tickets (three searches needed) and the relaxed claim needs the tickets' own spread."""
    out, rd = built
    claims = pd.read_csv(rd / "claims.csv")
    strict = claims[claims["claim"].str.startswith("No IMP ticket")].iloc[0]
    assert strict["verdict"] == "not testable"
    relaxed = claims[claims["claim"].str.startswith("Relaxed")].iloc[0]
    assert relaxed["verdict"] == "not testable"
    text = (rd / "README.md").read_text()
    assert "tickets have one seed (dense 3)" in text and "three ticket searches (`find.seeds`)" in text


def test_one_ticket_seed_is_measured_against_the_dense_mean(built):
    """With more dense seeds than ticket seeds, % of dense divides by the dense mean over its seeds,
    not by one dense seed; dense rows stay their own reference."""
    from reports.store import collect_matrix

    out, _ = built
    df = collect_matrix(out, write=False)
    row = df[(df["source"] == "imp:vqa") & (df["sparsity"] == 0.5)].iloc[0]
    assert row["dense_value"] == pytest.approx(60.0) and row["relative"] == pytest.approx(59.8 / 60.0)
    dense = df[(df["source"] == "dense") & (df["steps_factor"] == 1)]
    assert (dense["relative"] == 1.0).all()
    long = df[df["steps_factor"] == 2].set_index(["task", "seed"])
    assert long.loc[("gqa", 0), "dense_value"] == pytest.approx(50.0)  # the 2× run against the recipe's dense


def test_a_shared_run_is_reported_under_each_source(tmp_path):
    """A plan manifest maps cells to runs; two cells with identical tickets share a run and the frame
    has one row per cell, each under its own source (a run's record names only one)."""
    from reports.store import load_results

    out = tmp_path / "o"
    common = dict(status="done", backbone=BACKBONE, split="dev", metric="accuracy", task="gqa", seed=0)
    write_record(out, "r_dense", source="dense", method="dense", source_task="", sparsity=0.0, value=50.0, **common)
    write_record(out, "r_shared", source="imp:vqa", method="imp", source_task="vqa", sparsity=0.3, value=48.0,
                 **common)
    write_record(out, "r_imp50", source="imp:vqa", method="imp", source_task="vqa", sparsity=0.5, value=47.0,
                 **common)
    cells = [{"run": "r_dense", "source": "dense", "sparsity": 0.0, "task": "gqa", "seed": 0, "steps_factor": 1},
             {"run": "r_shared", "source": "imp:vqa", "sparsity": 0.3, "task": "gqa", "seed": 0, "steps_factor": 1},
             {"run": "r_imp50", "source": "imp:vqa", "sparsity": 0.5, "task": "gqa", "seed": 0, "steps_factor": 1},
             {"run": "r_shared", "source": "omp:vqa", "sparsity": 0.3, "task": "gqa", "seed": 0, "steps_factor": 1}]
    (out / "plans").mkdir()
    (out / "plans" / "p1.json").write_text(json.dumps({
        "plan": "p1", "config": {}, "runs": ["r_dense", "r_shared", "r_imp50"], "cells": cells}))
    (out / "plans" / "LAST").write_text("p1\n")
    f = load_results(out).frame
    assert len(f) == 4 and f["run_id"].tolist().count("r_shared") == 2
    shared = f[f["run_id"] == "r_shared"].set_index("source")
    assert set(shared.index) == {"imp:vqa", "omp:vqa"} and (shared["value"] == 48.0).all()
    assert shared.loc["omp:vqa", "method"] == "omp" and shared.loc["omp:vqa", "source_task"] == "vqa"
    assert f.attrs["pending"] == 0 and f.attrs["failed"] == 0


# ---------------------------------------------------------------------------------------------
# Sparsity per weight-matrix type


@pytest.fixture(scope="module")
def prunable_names(tmp_path_factory):
    """The prunable parameter names of every toy backbone family (the names tickets carry)."""
    from bench.backbones import create_backbone

    vocab = tmp_path_factory.mktemp("v") / "vocab.txt"
    vocab.write_text("a\nred\ncube\n")
    names = {}
    for preset in ("toy-uniter", "toy-lxmert", "toy-vilt"):
        torch.manual_seed(0)
        extra = {} if preset == "toy-vilt" else {"feat_dim": 48}
        bb = create_backbone(preset, vocab_path=vocab, **extra)
        names[preset] = {n: tuple(p.shape) for n, p in bb.prunable_parameters()}
    return names


@pytest.mark.parametrize("preset", ["toy-uniter", "toy-lxmert", "toy-vilt"])
def test_every_prunable_matrix_has_a_type(prunable_names, preset):
    """UNITER, LXMERT and ViLT names: each prunable weight is one of Q / K / V / attention out / FFN in
    / FFN out, and every layer (LXMERT's cross layers split into language, vision and cross parts) has
    the kinds of a transformer block."""
    from reports.tables import block_of, matrix_type_of

    kinds: dict = {}
    for name in prunable_names[preset]:
        kinds.setdefault(block_of(name), []).append(matrix_type_of(name))
    for block, ks in kinds.items():
        if block.endswith(".cross"):  # LXMERT's cross-attention: an attention without its own FFN
            assert ks == ["Q", "K", "V", "attn out"], block
        elif ".x_layers." in block:  # a cross layer's language or vision part: self-attention + FFN
            assert sorted(ks) == sorted(["Q", "K", "V", "attn out", "FFN in", "FFN out"]), block
        else:
            assert ks == ["Q", "K", "V", "attn out", "FFN in", "FFN out"], block
    if preset == "toy-lxmert":
        assert {b.rsplit(".", 1)[-1] for b in kinds if ".x_layers." in b} == {"lang", "visn", "cross"}


def test_a_pruned_ffn_output_shows_per_matrix_type(prunable_names, tmp_path):
    """A 90 % ticket whose FFN output is pruned at 99.5 %: the per-layer table averages it away, the
    per-matrix-type table and figure show it; the report README links the figure."""
    from reports import build_report
    from reports.tables import layer_sparsity, matrix_type_sparsity
    from reports.ticket_views import iter_tickets

    shapes = prunable_names["toy-uniter"]
    out = make_store(tmp_path / "o", tickets=False, failed=0)
    g = torch.Generator().manual_seed(0)
    masks = {}
    for name, shape in shapes.items():
        keep = 0.005 if name.endswith(".output.dense.weight") and ".attention." not in name else 0.12
        masks[name] = torch.rand(shape, generator=g) < keep
    save_ticket(out / "tickets" / "abc" / "imp__vqa" / "sparsity-0.90.safetensors", masks, backbone=BACKBONE,
                source="imp:vqa", method="imp", source_task="vqa", target_sparsity=0.9)
    tickets = list(iter_tickets(out))
    per_type = matrix_type_sparsity(tickets)
    ffn_out = per_type[per_type["matrix"] == "FFN out"]["matrix_sparsity"]
    assert len(ffn_out) == 2 and (ffn_out > 0.99).all()
    q = per_type[per_type["matrix"] == "Q"]["matrix_sparsity"]
    assert ((q > 0.85) & (q < 0.91)).all()
    layer = layer_sparsity(tickets)[0]["layer_sparsity"]
    assert (layer < 0.96).all()  # the per-layer average hides the 99.5 %
    weights = sum(m.numel() for m in masks.values())
    assert per_type["weights"].sum() == weights and not (per_type["matrix"] == "other").any()

    rd = build_report(out, config=config())
    assert (rd / "matrix_type_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    assert (rd / "matrix_type_sparsity.pdf").read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(rd / "matrix_type_sparsity.csv")
    assert set(table["matrix"]) == {"Q", "K", "V", "attn out", "FFN in", "FFN out"}
    assert "[matrix_type_sparsity.png](matrix_type_sparsity.png)" in (rd / "README.md").read_text()
    assert math.isclose(float(table[table["matrix"] == "FFN out"]["matrix_sparsity"].min()), ffn_out.min())


def test_seeds_that_agree_do_not_pass_a_score_the_dev_set_cannot_tell_from_chance():
    """Three dense seeds at 51.9 (std 0, e.g. all predicting one class) on 320 NLVR2 dev examples:
    the dev set's sampling error at chance, 100·sqrt(.5·.5/320) = 2.8 points, is shared by every seed,
    so +1.9 is not clearly above chance (95 % lower bound 51.9 − 1.96 × 2.8 < 50); 60.0 is; without
    the count the seeds' own standard error rules (std 0.1 over 3 seeds: 0.058)."""
    from reports.claims import dense_vs_chance, dev_set_error

    def frame(value, n):
        return pd.DataFrame([{"backbone": BACKBONE, "source": "dense", "sparsity": 0.0, "task": "nlvr2",
                              "metric": "accuracy", "value": value + 0.1 * s * (n is None), "seed": s,
                              "chance": 50.0, "eval_examples": n if n else math.nan} for s in range(3)])

    assert dev_set_error(50.0, 320) == pytest.approx(100 * math.sqrt(0.25 / 320))
    low = dense_vs_chance(frame(51.9, 320), ["nlvr2"]).iloc[0]
    assert low["seed_noise"] == 0 and low["noise"] == pytest.approx(2.795, abs=1e-3) and low["learns"] == "no"
    assert dense_vs_chance(frame(60.0, 320), ["nlvr2"]).iloc[0]["learns"] == "yes"
    unknown_n = dense_vs_chance(frame(51.9, None), ["nlvr2"]).iloc[0]
    assert math.isnan(unknown_n["dev_se"]) and unknown_n["noise"] == pytest.approx(0.1 / math.sqrt(3), rel=0.05)
    assert unknown_n["learns"] == "yes"


def test_a_plan_without_finished_runs_is_pending_not_a_crash(tmp_path):
    """`--plans all` while a second plan has just started (its manifest written, no record yet): the
    finished plan's numbers stay numeric and the other plan's runs are counted as pending."""
    from test_reports_synth import make_store

    from bench.core.io import atomic_write_json
    from reports.store import load_results

    out = make_store(tmp_path / "out", failed=0)
    done = sorted(p.name for p in (out / "runs").iterdir())
    for plan, runs in (("aaaaaaaaaaaa", done), ("bbbbbbbbbbbb", ["notyet000001", "notyet000002"])):
        atomic_write_json(out / "plans" / f"{plan}.json", {"plan": plan, "runs": runs, "config": {}})
    res = load_results(out, plans=["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    assert len(res.frame) == len(done) and res.frame["value"].dtype.kind == "f"
    assert (res.frame["value"] - res.frame["dense_value"]).notna().all()
    assert res.pending == 2


def test_a_plan_that_ran_dense_only_reports_beside_one_with_tickets(tmp_path):
    """`--plans all` with a plan of dense runs alone (`--sources dense`): its transfer matrix is empty,
    not a crash (the empty aggregates used to come out as strings)."""
    import json

    from test_reports_synth import make_store

    from bench.core.io import atomic_write_json
    from reports import build_report

    out = make_store(tmp_path / "out", failed=0)
    done = sorted(p.name for p in (out / "runs").iterdir())
    dense = [r for r in done if json.loads((out / "runs" / r / "record.json").read_text())["source"] == "dense"]
    assert dense and len(dense) < len(done)
    for plan, runs in (("aaaaaaaaaaaa", done), ("bbbbbbbbbbbb", dense)):
        atomic_write_json(out / "plans" / f"{plan}.json", {"plan": plan, "runs": runs, "config": {}})
    rd = build_report(out, plans=["all"])
    assert "transfer" in (rd / "README.md").read_text().lower()
