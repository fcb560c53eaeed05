"""The `ticketbench` Python API: run, load_results, load_config — same checks as the command line."""

from __future__ import annotations

import pytest

import ticketbench
from bench.core.errors import ConfigError, DataError


def test_run_and_load_results(tmp_path):
    from test_reports_synth import make_store

    out = make_store(tmp_path / "out")
    done = ticketbench.run("smoke", out=out, stages=["report"],
                           overrides=["matrix.tasks=vqa,gqa", "find.sparsities=0.5,0.7", "matrix.seeds=2"])
    assert done == out and (out / "report" / "README.md").exists()
    df = ticketbench.load_results(out).frame
    assert len(df) == len(list(out.glob("runs/*/record.json"))) - df.attrs["failed"]
    assert {"source", "sparsity", "task", "metric", "value", "relative"} <= set(df.columns)


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": ["finetune.batch_size=-3"]}, "finetune.batch_size: expected an integer ≥ 1, found -3"),
    ({"seeds": 0}, "matrix.seeds: expected an integer ≥ 1, found 0"),
    ({"workers": -1}, "matrix.workers: expected an integer ≥ 0, found -1"),
    ({"executor": "slurm"}, "one of local, ray"),
    ({"sparsities": [0.5, 1.5]}, "matrix.sparsities: element 1.5"),
    ({"nope": 1}, "unknown key 'matrix.nope'"),
])
def test_run_refuses_bad_input_before_any_work(tmp_path, kwargs, message):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as e:
        ticketbench.run("smoke", out=out, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_load_results_of_a_directory_without_runs(tmp_path):
    with pytest.raises(DataError, match="no results here"):
        ticketbench.load_results(tmp_path)


def test_load_config_validates():
    assert ticketbench.load_config("smoke", ["finetune.steps=3"]).finetune.steps == 3
    with pytest.raises(ConfigError, match="matrix.sparsities: element 'abc'"):
        ticketbench.load_config("smoke", ["matrix.sparsities=abc"])


def test_load_results_imports_neither_torch_nor_matplotlib(tmp_path):
    """Reading results is light (issue 30 item 7): `python -X importtime` lists every module imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_reports_synth import make_store

    out = make_store(tmp_path / "out", tickets=False)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    code = f"import ticketbench; r = ticketbench.load_results({str(out)!r}); print(len(r.frame))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    assert proc.stdout.strip() == "52"  # the store's finished runs were read
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "pandas" in modules and "reports.store" in modules  # the listing is real
    assert not {m for m in modules if m.split(".")[0] in ("torch", "matplotlib")}
