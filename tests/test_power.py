"""Power before compute (`bench.power`, `ticketbench plan`): per claim, what a design can resolve."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.config import load_config
from bench.plan import build_plan
from bench.power import ASSUMED_NOISE, claim_power, resolvable, seeds_needed, z_sum


def test_resolvable_difference_is_the_normal_rule():
    assert z_sum() == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    assert resolvable(2.0, 4, 4) == pytest.approx(z_sum() * 2.0 * math.sqrt(0.5))
    assert resolvable(2.0, 4, groups=4) == pytest.approx(z_sum() * 2.0 / 2 / 2)
    n = seeds_needed(2.0, 1.0)
    assert resolvable(2.0, n, n) <= 1.0 < resolvable(2.0, n - 1, n - 1)
    assert seeds_needed(2.0, 1.0, two_arms=False) < n  # against a fixed threshold: fewer


def _rows(*sets: str, noise=None) -> dict:
    plan = build_plan(load_config("toyland", list(sets)))
    rows, where = claim_power(plan, noise)
    return {r.claim.split(" (")[0]: r for r in rows}, where


def test_the_default_design_says_what_it_cannot_resolve():
    rows, where = _rows("find.seeds=1")
    assert "assumed" in where and all(r.noise == ASSUMED_NOISE for r in rows.values())
    strict = rows["strict matching"]
    assert not strict.testable and "one seed" in strict.why and strict.resolves > strict.needs
    # Enough seeds resolve strict matching's one-std margin; search replicates count as ticket runs.
    assert "≥ 16 runs per cell and dense seeds each" in strict.why
    assert _rows("find.seeds=1", "matrix.seeds=16")[0]["strict matching"].testable  # dense: max(seeds, dense_seeds)
    assert not _rows("find.seeds=1", "matrix.seeds=8", "matrix.dense_seeds=16")[0]["strict matching"].testable
    assert _rows("matrix.seeds=8", "find.seeds=2", "matrix.dense_seeds=16")[0]["strict matching"].testable
    # The default's three ticket searches give an interval, not yet the assumed noise's resolution.
    default = _rows()[0]["strict matching"]
    assert "one seed" not in default.why and "3 search(es)" in default.design and not default.testable


def test_measured_noise_is_used_and_named():
    low = {t: (0.5, 60.0) for t in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr")}
    rows, where = _rows("matrix.seeds=12", noise=low)
    relaxed = rows["relaxed matching"]
    assert "measured" in where and relaxed.noise == 0.5 and relaxed.testable
    assert not _rows("matrix.seeds=12")[0]["relaxed matching"].testable  # at the assumed 2.5 points


def test_measured_noise_pools_within_cells():
    from reports.seeds import measured_noise

    df = pd.DataFrame({"backbone": "b", "source": ["dense"] * 3 + ["random"] * 2 + ["imp:vqa"],
                       "sparsity": [0.0] * 3 + [0.5] * 3, "task": "vqa", "search_seed": 0, "steps_factor": 1,
                       "value": [60.0, 62.0, 64.0, 50.0, 51.0, 40.0], "seed": [0, 1, 2, 0, 1, 0]})
    sd, dense = measured_noise(df)["vqa"]
    # (2 · 4 + 1 · 0.5) / 3 pooled variance; the one-seed cell adds nothing.
    assert sd == pytest.approx(math.sqrt((2 * 4.0 + 1 * 0.5) / 3)) and dense == pytest.approx(62.0)


def test_plan_prints_power_from_a_store(tmp_path: Path, capsys):
    from reliability_support import cli_here
    from runner_fakes import counting_pair, make_pairs

    from bench.runner import run_pairs

    proc = cli_here("plan", "smoke", "--out", str(tmp_path / "empty"), capsys=capsys)
    assert proc.returncode == 0 and "power before compute" in proc.stdout and "assumed seed noise" in proc.stdout
    run_pairs(make_pairs(8), tmp_path, counting_pair, progress=False)  # 4 tasks × 2 seeds of dense
    proc = cli_here("plan", "smoke", "--out", str(tmp_path), capsys=capsys)
    assert proc.returncode == 0 and "seed noise measured in the store for vqa, gqa, nlvr2, snli_ve" in proc.stdout


def test_the_report_warns_when_the_noise_bound_was_too_small():
    from types import SimpleNamespace

    from reports.seeds import sigma_check

    df = pd.DataFrame({"backbone": "b", "source": "random", "sparsity": 0.5, "task": "gqa", "search_seed": 0,
                       "steps_factor": 1, "seed": [0, 1, 2], "value": [50.0, 56.0, 62.0]})  # std 6
    assert "exceeds matrix.adaptive_sigma = 3 on gqa (largest 6.00" in sigma_check(
        df, SimpleNamespace(adaptive=True, adaptive_sigma=3.0))
    assert sigma_check(df, SimpleNamespace(adaptive=True, adaptive_sigma=8.0)) == ""
    assert sigma_check(df, SimpleNamespace(adaptive=False, adaptive_sigma=3.0)) == ""
