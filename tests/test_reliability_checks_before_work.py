"""Checks before work: data files of every split a command will read are validated before any training,
and a command refused for its input leaves the output directory (config.yaml included) as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, cli_here, snapshot, tiny_args

from bench.tasks import TASKS


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from bench.data.toyland import generate_world

    root = tmp_path_factory.mktemp("world") / "world"
    generate_world(root, seed=0, scale="smoke")
    return root


@pytest.fixture
def data_root(world, tmp_path) -> Path:
    """A 'real data' root: a copy of the smoke world that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(world, root)
    return root


def _args(command: str, out: Path, root: Path, tasks: str, sources: str) -> list[str]:
    return [command, "smoke", "--out", str(out), "--quiet", "--tasks", tasks, "--sources", sources,
            *tiny_args("world.source=real", f"world.data_root={root}")]


def _nothing_trained(out: Path) -> None:
    assert not (out / "pretrain").exists() and not (out / "tickets").exists() and not (out / "runs").exists()


def test_a_missing_task_folder_fails_before_any_search(data_root, tmp_path, capsys):
    # Before: VQA's IMP search ran, and only then was gqa/ found missing.
    shutil.rmtree(data_root / TASKS.get("gqa").data_subdir)
    out = tmp_path / "out"
    proc = cli_here(*_args("find", out, data_root, "vqa,gqa", "imp:vqa,imp:gqa,dense"), capsys=capsys)
    assert_one_line_error(proc, "gqa")
    _nothing_trained(out)
    assert not (out / "config.yaml").exists()


def test_a_malformed_evaluation_split_fails_before_any_training(data_root, tmp_path, capsys):
    # Before: every pair trained first, then failed in evaluation and left a "failed" record (exit 0).
    spec = TASKS.get("snli_ve")
    dev = data_root / spec.data_subdir / f"snli_ve_{spec.splits[1]}.jsonl"
    lines = dev.read_text().splitlines()
    lines[1] = lines[1][:-3]
    dev.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = cli_here(*_args("matrix", out, data_root, "snli_ve", "dense"), capsys=capsys)
    assert_one_line_error(proc, f"{dev}:2", "malformed JSON")
    _nothing_trained(out)


def test_a_refused_command_leaves_config_yaml_as_it_was(data_root, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("name: the-previous-run\n")
    before = snapshot(out)
    shutil.rmtree(data_root / TASKS.get("nlvr2").data_subdir)
    proc = cli_here(*_args("matrix", out, data_root, "nlvr2", "dense"), capsys=capsys)
    assert_one_line_error(proc, "nlvr2")
    assert snapshot(out) == before
