"""The bad-input catalogue at the CLI: each case is one `ticketbench: error:` line naming the problem, a
non-zero exit, no traceback, and a store whose files are byte-for-byte unchanged. (Library-level checks of
the same inputs live in the area tests; docs/RELIABILITY.md maps each case to its tests.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from reliability_support import (
    SOURCES,
    assert_one_line_error,
    cli,
    cli_here,
    prepare,
    records,
    snapshot,
    tiny_args,
)
from reliability_support import (
    TASKS as TINY_TASKS,
)

from bench.tasks import TASKS


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A toyland store of the tiny config with world, θ0 and tickets (no runs)."""
    return prepare(tmp_path_factory.mktemp("store") / "out")


@pytest.fixture(scope="module")
def real(tmp_path_factory, store) -> tuple[Path, Path, list[str]]:
    """A 'real data' root (a copy of the toyland world) and a store of it with θ0 pre-trained."""
    root = tmp_path_factory.mktemp("data") / "root"
    shutil.copytree(store / "world", root)
    out = tmp_path_factory.mktemp("real") / "out"
    overrides = ["world.source=real", f"world.data_root={root}"]
    prepare(out, *overrides, stages=("world", "pretrain"))
    return root, out, overrides


def _matrix(store: Path, *args: str, overrides=()) -> list[str]:
    return ["matrix", "smoke", "--out", str(store), "--quiet", *tiny_args(*overrides), *args]


def _check(store: Path, argv: list[str], *needles: str, capsys=None) -> str:
    """Run the CLI (in this process when given `capsys`, else as a new process); assert a one-line error
    naming `needles` and an unchanged store."""
    before = snapshot(store)
    err = assert_one_line_error(cli_here(*argv, capsys=capsys) if capsys else cli(*argv), *needles)
    assert snapshot(store) == before
    return err


def _a_ticket(store: Path) -> Path:
    return next(store.glob("tickets/*/imp__snli_ve/sparsity-0.50.safetensors"))


# ---- tickets --------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_or_truncated_ticket(store, tmp_path, damage, capsys):
    data = _a_ticket(store).read_bytes()
    bad = tmp_path / "sparsity-0.50.safetensors"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * 8 + data[8:])
    # One case as a real process (exit status and stderr of the command itself), the rest in-process.
    _check(store, ["tickets", "show", str(bad)], str(bad), capsys=None if damage == "truncated" else capsys)


def test_ticket_of_another_backbone(store, tmp_path, capsys):
    from tickets import Ticket, global_magnitude_masks
    from tickets.testing import ToyTransformer

    model = ToyTransformer()
    masks = global_magnitude_masks({n: p.detach() for n, p in model.prunable_parameters()}, 0.5)
    other = tmp_path / "other.safetensors"
    Ticket.build(masks, backbone=model.preset, fingerprint=model.fingerprint(), source="imp:toy", method="imp",
                 target_sparsity=0.5).save(other)
    err = _check(store, ["tickets", "diff", str(_a_ticket(store)), str(other)], "different backbones",
                 "toy-uniter", model.preset, capsys=capsys)
    assert model.fingerprint() in err


# ---- names: a suggestion, nothing written ---------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["--tasks", "snli_vee"], ["snli_vee", "did you mean 'snli_ve'"]),
    (["--sources", "imq:snli_ve"], ["imq:snli_ve", "did you mean 'imp:snli_ve'"]),
    (["--set", "find.one_shot=omq:vqa"], ["pruning method 'omq'", "did you mean 'omp'"]),
    (["--set", "backbone.preset=toy-unitr"], ["toy-unitr", "did you mean 'toy-uniter'"]),
], ids=["task", "source", "method", "preset"])
def test_unknown_name_suggests(store, args, needles, capsys):
    _check(store, _matrix(store, "--tasks", "snli_ve", *args), *needles, capsys=capsys)


def test_unknown_config_preset_suggests(tmp_path, capsys):
    out = tmp_path / "never"
    assert_one_line_error(cli_here("run", "smok", "--out", str(out), capsys=capsys), "unknown config 'smok'", "did you mean 'smoke'")
    assert not out.exists()


def test_preset_name_that_is_also_a_directory_here(tmp_path, monkeypatch):
    # `ticketbench run smoke` in a directory holding an output directory called smoke/ means the preset.
    from bench.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert load_config("smoke").world.scale == "smoke"


def test_yaml_config_with_unknown_key(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text("world:\n  scale: smoke\nfinetune:\n  stepz: 3\n")
    out = tmp_path / "never"
    assert_one_line_error(cli_here("run", str(config), "--out", str(out), capsys=capsys), str(config), "unknown key 'finetune.stepz'",
                          "did you mean 'finetune.steps'")
    assert not out.exists()


def test_ticket_ladder_missing_a_requested_sparsity(store, capsys):
    _check(store, _matrix(store, "--tasks", "snli_ve", "--sparsities", "0.7"), "0.7", "not on the ticket ladder",
           "ticketbench find", capsys=capsys)


# ---- the output directory -------------------------------------------------------------------
def test_output_directory_that_cannot_be_created(tmp_path, capsys):
    # Tests run as root, which ignores permission bits: a path under a regular file fails for root too.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    proc = cli_here("run", "smoke", "--out", str(blocker / "out"), capsys=capsys)
    assert_one_line_error(proc, "Not a directory", str(blocker))
    assert blocker.read_text() == "not a directory\n"


# ---- real data ------------------------------------------------------------------------------
def _find_real(real, store_args=()) -> list[str]:
    _, out, overrides = real
    return ["find", "smoke", "--out", str(out), "--quiet", "--tasks", ",".join(TINY_TASKS),
            "--sources", ",".join(SOURCES), *tiny_args(*overrides), *store_args]


@pytest.fixture
def train_file(real):
    """snli_ve's train file in the real data root, restored after the test."""
    root = real[0]
    path = root / TASKS.get("snli_ve").data_subdir / "snli_ve_train.jsonl"
    original = path.read_bytes()
    yield path
    path.write_bytes(original)


def test_missing_dataset_file(real, train_file, capsys):
    train_file.unlink()
    _check(real[1], _find_real(real), str(train_file), "file not found", "task 'snli_ve'", capsys=capsys)


def test_malformed_annotation_line(real, train_file, capsys):
    lines = train_file.read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing quote and brace of line 3
    train_file.write_text("\n".join(lines) + "\n")
    _check(real[1], _find_real(real), f"{train_file}:3", "malformed JSON", capsys=capsys)


def test_annotation_missing_a_field(real, train_file, capsys):
    lines = train_file.read_text().splitlines()
    lines[1] = lines[1].replace('"gold_label"', '"gold_lable"')
    train_file.write_text("\n".join(lines) + "\n")
    _check(real[1], _find_real(real), f"{train_file}:2", "'gold_label'", capsys=capsys)


def test_empty_split(real, train_file, capsys):
    train_file.write_text("")
    _check(real[1], _find_real(real), "snli_ve", "no examples", capsys=capsys)


# ---- a run that fails does not stop the matrix ------------------------------------------------
def test_non_finite_loss_fails_the_run_and_the_matrix_goes_on(store, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(store, out)
    # NaN region features for every snli_ve image (gqa's images are others): snli_ve's loss is NaN.
    spec = TASKS.get("snli_ve")
    ids = {i for split in spec.splits[:2] for e in spec.load(out / "world", split) for i in e.image_ids}
    for image_id in ids:
        path = out / "world" / "features" / "uniter" / f"{image_id}.npz"
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["features"] = np.full_like(arrays["features"], np.nan)
        np.savez(path, **arrays)
    proc = cli_here(*_matrix(out, "--tasks", "snli_ve,gqa", "--sources", "dense"), capsys=capsys)
    # The other pair ran; the exit status and one line say that a run failed.
    assert_one_line_error(proc, "1 of 2 run(s) failed", "non-finite loss")
    by_task = {r["task"]: r for r in records(out)}
    assert by_task.keys() == {"snli_ve", "gqa"}
    assert by_task["snli_ve"]["status"] == "failed"
    assert "non-finite loss" in by_task["snli_ve"]["reason"] and "\n" not in by_task["snli_ve"]["reason"]
    assert by_task["gqa"]["status"] == "done"
