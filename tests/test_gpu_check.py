"""`ticketbench gpu-check`: on a CPU-only machine `--dry-run` runs everything but CUDA (full-size models, one
example a recipe, saved activations against the memory model); without --dry-run it says why it cannot run."""

import json

import pytest
import torch

from bench.cli import main
from bench.cost import measured_mfu


def test_dry_run_exercises_a_recipe_and_writes_a_file_plan_ignores(tmp_path, capsys):
    assert main(["gpu-check", "--dry-run", "--families", "uniter", "--tasks", "nlvr2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CPU (dry run)" in out and "uniter  nlvr2" in out and out.rstrip().endswith("OK")
    data = json.loads((tmp_path / "gpu-check.json").read_text())
    (row,) = data["recipes"]
    assert row["dry_run"] and row["task"] == "nlvr2" and row["rows"] == 2 and row["mfu"] is None
    assert measured_mfu(tmp_path, "uniter-base") == {}  # a dry run measures no MFU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_a_gpu_it_says_to_use_dry_run(capsys):
    assert main(["gpu-check", "--families", "uniter"]) != 0
    assert "--dry-run" in capsys.readouterr().err


def test_unknown_family_is_one_line(capsys):
    assert main(["gpu-check", "--dry-run", "--families", "bert"]) != 0
    err = capsys.readouterr().err
    assert "--families" in err and "bert" in err and len(err.strip().splitlines()) == 1
