"""Adaptive seeds (`matrix.adaptive`): the matrix runs in waves; a cell gets another seed only while its
anytime-valid interval straddles a threshold, up to the cap. The fake executor plants each cell's values."""

from __future__ import annotations

from pathlib import Path

from runner_fakes import calls, valued_pair

from bench.config import load_config
from bench.plan import build_plan
from bench.runner import PairSpec, run_pairs
from bench.runner.adaptive import CAP, DECIDED, FIXED, REFERENCE, run_waves
from bench.runner.results import write_manifest
from bench.runner.store import RunStore

# Planted means (dense 60): clearly above, clearly below, at 99 % of dense (the threshold), below.
MEANS = {("dense", "snli_ve"): 60.0, ("dense", "gqa"): 60.0,
         ("random", 0.5, "snli_ve"): 80.0, ("random", 0.9, "snli_ve"): 40.0,
         ("random", 0.5, "gqa"): 59.4, ("random", 0.9, "gqa"): 50.0}


def plan_of(*sets: str):
    return build_plan(load_config("smoke", [
        "matrix.tasks=snli_ve,gqa", "matrix.sources=random,dense", "matrix.seeds=2", "matrix.adaptive_max_seeds=5",
        "matrix.adaptive_sigma=1", "matrix.adaptive_thresholds=99", *sets]))


def make(cells, **extra):
    out = []
    for c in cells:
        dense = c.source.is_dense
        mean = MEANS[("dense", c.task) if dense else (str(c.source), c.sparsity, c.task)]
        out.append(PairSpec("toy-uniter", str(c.source), c.source.method, c.source.task, c.sparsity, c.task, c.seed,
                            None, None if dense else f"ticket-{c.sparsity}-{c.search_seed}", "theta0", "dev", "data",
                            config={"mean": mean, "wobble": 0.3, **extra}, search_seed=c.search_seed))
    return out


def waves(plan, out: Path, **extra):
    store = RunStore(out)

    def value_of(pair):
        r = store.read_record(pair.run_id)
        return r["value"] if r and r["status"] == "done" else None

    said = []
    summary, status = run_waves(plan, lambda cells: make(cells, **extra),
                                lambda pairs: run_pairs(pairs, out, valued_pair, progress=False), value_of,
                                say=said.append)
    return summary, {(s.source, s.sparsity, s.task): s for s in status}, said


def test_waves_stop_when_decided_and_at_the_cap(tmp_path: Path):
    plan = plan_of("matrix.adaptive=true")
    summary, st, said = waves(plan, tmp_path)
    assert (st[("random", 0.5, "snli_ve")].stopped, st[("random", 0.5, "snli_ve")].seeds) == (DECIDED, 2)
    assert st[("random", 0.5, "snli_ve")].ci_low > 99
    assert (st[("random", 0.9, "snli_ve")].stopped, st[("random", 0.9, "snli_ve")].seeds) == (DECIDED, 2)
    assert st[("random", 0.9, "snli_ve")].ci_high < 99
    assert (st[("random", 0.9, "gqa")].stopped, st[("random", 0.9, "gqa")].seeds) == (DECIDED, 2)
    # At the threshold: undecided wave after wave, stopped by the cap.
    close = st[("random", 0.5, "gqa")]
    assert (close.stopped, close.seeds) == (CAP, 5) and close.ci_low < 99 < close.ci_high
    # Dense follows its undecided cells: more seeds on GQA only.
    assert (st[("dense", 0.0, "snli_ve")].seeds, st[("dense", 0.0, "snli_ve")].stopped) == (2, REFERENCE)
    assert (st[("dense", 0.0, "gqa")].seeds, st[("dense", 0.0, "gqa")].stopped) == (5, CAP)
    runs = (2 + 2 + 2) + (5 + 5 + 2)  # snli_ve: dense and two cells at 2; gqa: dense 5, close 5, far 2
    assert len(calls(tmp_path)) == runs and summary.total == runs and not summary.failed
    assert len(said) == 3  # waves 2, 3 and 4 add seeds (seeds 3, 4, 5 of the close cell)
    # Deterministic: the same plan on the same results takes the same decisions and computes nothing.
    again, st2, _ = waves(plan, tmp_path)
    assert st2 == st and not again.done and len(calls(tmp_path)) == runs


def test_without_adaptive_one_wave_of_fixed_seeds(tmp_path: Path):
    plan = plan_of()
    summary, st, said = waves(plan, tmp_path)
    assert {s.stopped for s in st.values()} == {FIXED} and {s.seeds for s in st.values()} == {2}
    assert summary.total == len(plan.cells) and not said


def test_failed_runs_count_against_the_cap(tmp_path: Path):
    plan = plan_of("matrix.adaptive=true")
    # Every seed of the close cell fails after the first: it never decides, and stops at the cap.
    summary, st, _ = waves(plan, tmp_path, fail_seeds=[1, 2, 3, 4])
    assert st[("random", 0.5, "gqa")].seeds == 5 and st[("random", 0.5, "gqa")].stopped == CAP
    assert summary.failed


def test_seeds_reach_the_manifest_and_the_report(tmp_path: Path):
    from reports.seeds import seeds_table
    from reports.store import load_results

    plan = plan_of("matrix.adaptive=true")
    theta0 = tmp_path / "pretrain" / "fake"
    theta0.mkdir(parents=True)
    (theta0 / "DONE").write_text("0123456789abcdef\n")
    store = RunStore(tmp_path)
    run_waves(plan, make, lambda pairs: run_pairs(pairs, tmp_path, valued_pair, progress=False),
              lambda p: (store.read_record(p.run_id) or {}).get("value"),
              on_wave=lambda pairs, status: write_manifest(tmp_path, plan, theta0, {}, pairs,
                                                           seeds=[s.row() for s in status]))
    results = load_results(tmp_path)
    assert len(results.frame) == 18 and results.seeds
    table = seeds_table(results.frame, results.seeds).set_index(["source", "sparsity", "task"])
    assert table.loc[("random", 0.5, "gqa"), "seeds"] == 5 and table.loc[("random", 0.5, "gqa"), "stopped"] == CAP
    assert table.loc[("random", 0.9, "gqa"), "stopped"] == DECIDED
    assert table.loc[("dense", 0.0, "gqa"), "finished"] == 5


def test_the_pipeline_runs_waves_and_reports_each_cells_seeds(tmp_path: Path):
    """The real matrix stage on the tiny config: waves, the manifest's seeds, report/seeds.csv."""
    import pandas as pd
    from reliability_support import prepare

    from bench.runner.results import read_manifest

    out = tmp_path / "out"
    prepare(out, "matrix.adaptive=true", "matrix.adaptive_max_seeds=2", "find.sparsities=0.5",
            stages=("world", "pretrain", "find", "matrix", "report"), sources=["random", "dense"])
    seeds = read_manifest(out)["seeds"]
    assert {s["source"] for s in seeds} == {"random", "dense"}
    assert all(1 <= s["seeds"] <= 2 and s["stopped"] in (DECIDED, CAP, REFERENCE) for s in seeds)
    table = pd.read_csv(out / "report" / "seeds.csv")
    assert sorted(zip(table["source"], table["seeds"], table["stopped"])) == sorted(
        (s["source"], s["seeds"], s["stopped"]) for s in seeds)
    assert "seeds.md" in (out / "report" / "README.md").read_text()
