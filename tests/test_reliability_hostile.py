"""Hostile files, resource bombs, stores from elsewhere and the releases as they unpack (issue 31): each
class of fault has a test here; docs/RELIABILITY.md §4c maps them. CLI cases run in this process
(`cli_here`) and assert one `ticketbench: error:` line, no traceback, and a store left as it was."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, cli, cli_here, prepare, records, snapshot, tiny_args

from bench.core.errors import ConfigError, DataError, TicketbenchError


@pytest.fixture
def results(tmp_path) -> Path:
    """A synthetic results store (records and tickets, as tests/test_reports_synth.py writes them)."""
    from test_reports_synth import make_store

    return make_store(tmp_path / "out")


def _record(out: Path, n: int = 0) -> Path:
    return sorted(out.glob("runs/*/record.json"))[n]


def _refused_quickly(argv, capsys, *needles, seconds: float = 60.0) -> str:
    t0 = time.monotonic()
    err = assert_one_line_error(cli_here(*argv, capsys=capsys), *needles)
    assert time.monotonic() - t0 < seconds, "took too long: it planned or read before refusing"
    return err


# ---- 1. bounded reading: regular files only, size and digit caps --------------------------------------
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_config_that_is_a_device_or_a_fifo_is_refused(tmp_path, kind, capsys):
    config = tmp_path / "study.yaml"
    if kind == "dev-zero":
        config.symlink_to("/dev/zero")
    else:
        os.mkfifo(config)
    found = "a device" if kind == "dev-zero" else "a FIFO"
    _refused_quickly(["run", str(config), "--out", str(tmp_path / "never")], capsys, str(config),
                     f"expected a regular config file, found {found}", seconds=20)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "digits"])
def test_a_record_that_is_a_device_a_fifo_or_a_number_bomb_fails_the_report_in_one_line(results, kind, capsys):
    path = _record(results)
    path.unlink()
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
        needle = "found a device"
    elif kind == "fifo":
        os.mkfifo(path)
        needle = "found a FIFO"
    else:
        path.write_text('{"run_id": "x", "status": "done", "seed": ' + "9" * 5000 + "}")
        needle = "an integer of 5000 digits"
    _refused_quickly(["report", str(results)], capsys, str(path), needle, seconds=60)


def test_the_run_store_counts_an_unreadable_record_as_absent_without_blocking(tmp_path):
    from bench.runner.store import RunStore

    store = RunStore(tmp_path)
    store.run_dir("abc").mkdir(parents=True)
    os.mkfifo(store.record_path("abc"))
    t0 = time.monotonic()
    assert store.read_record("abc") is None and not store.is_done("abc")
    store.record_path("abc").unlink()
    store.record_path("abc").symlink_to("/dev/zero")
    assert store.read_record("abc") is None
    assert time.monotonic() - t0 < 5


def test_a_ticket_that_is_dev_zero_is_refused(tmp_path, capsys):
    ticket = tmp_path / "sparsity-0.50.safetensors"
    ticket.symlink_to("/dev/zero")
    _refused_quickly(["tickets", "show", str(ticket)], capsys, "expected a regular ticket file, found a device")


def test_hashing_a_device_is_refused_not_read_forever(tmp_path):
    from bench.core.io import file_hash

    weights = tmp_path / "model.safetensors"
    weights.symlink_to("/dev/zero")
    with pytest.raises(DataError, match="expected a regular file, found a device"):
        file_hash(weights)


def test_an_annotation_with_a_number_bomb_is_one_line(tmp_path):
    from bench.core.io import read_json, read_jsonl

    (tmp_path / "a.json").write_text('{"questions": [{"question_id": ' + "1" * 10000 + "}]}")
    with pytest.raises(DataError, match=r"a\.json: an integer of 10000 digits \(at most 100\)"):
        read_json(tmp_path / "a.json")
    (tmp_path / "b.jsonl").write_text('{"x": 1}\n{"x": ' + "2" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"b\.jsonl:2: an integer of 5000 digits"):
        read_jsonl(tmp_path / "b.jsonl")


def test_a_non_utf8_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_bytes(b"world:\n  scale: sm\xffoke\n")
    _refused_quickly(["run", str(config), "--out", str(tmp_path / "never")], capsys, str(config), "not UTF-8 text")


def test_a_pickle_memo_bomb_is_refused_at_once():
    from bench.core.safe_pickle import safe_loads

    # L0 = [1]; L_i = [L_{i-1}, L_{i-1}] through the memo: 540 bytes that unfold into 2^60 items.
    data = b"\x80\x02]K\x01aq\x00"
    for i in range(1, 60):
        data += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    t0 = time.monotonic()
    with pytest.raises(DataError, match="refs.*unfolds into more than .* items"):
        safe_loads(data + b".", "refs(unc).p")
    assert time.monotonic() - t0 < 5
    assert safe_loads(b"\x80\x02]K\x01a.", "ok.p") == [1]  # plain data still loads


# ---- 1b. strict YAML: no aliases, no duplicate keys, YAML 1.2 numbers, digit caps --------------------
YAML_CASES = [
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nfinetune:\n  steps: *c\n", "aliases (*a) are not allowed"),
    ("finetune:\n  steps: 3\n  steps: 5\n", "duplicate key 'steps'"),
    ("finetune:\n  lr: 0x10\n", "'0x10' is not a decimal integer (YAML 1.1 would read it as 16)"),
    ("matrix:\n  seeds: 010\n", "'010' is not a decimal integer (YAML 1.1 would read it as 8)"),
    ("matrix:\n  seeds: 1:20\n", "'1:20' is not a decimal integer"),
    ("finetune:\n  steps: " + "9" * 5000 + "\n", "an integer of 5000 digits (at most 100)"),
    ("world:\n  seed: 1\nworld:\n  seed: 2\n", "duplicate key 'world'"),
    ("base: &base {steps: 3}\nfinetune:\n  <<: *base\n", "not allowed"),
]


@pytest.mark.parametrize("content, message", YAML_CASES, ids=["alias-bomb", "duplicate-key", "hex", "octal",
                                                              "sexagesimal", "digits", "duplicate-section", "merge"])
def test_yaml_1_1_surprises_are_refused(content, message, tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(content)
    _refused_quickly(["run", str(config), "--out", str(tmp_path / "never")], capsys, str(config), message)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args, message", [
    (["--seeds", "010"], "'010' is not a decimal integer"),
    (["--set", "finetune.lr=0x10"], "'0x10' is not a decimal integer"),
    (["--set", "finetune.steps=" + "7" * 5000], "an integer of 5000 digits"),
    (["--set", "find.sparsities=0.5,0.9999999"], "element 0.9999999"),
    (["--set", "find.sparsities=0.5,1e-9"], "element 1e-09"),
], ids=["seeds-octal", "lr-hex", "digits", "ladder-near-1", "ladder-near-0"])
def test_set_values_follow_the_same_rules(args, message, tmp_path, capsys):
    _refused_quickly(["run", "smoke", "--out", str(tmp_path / "never"), *args], capsys, message)
    assert not (tmp_path / "never").exists()


def test_plain_numbers_still_read():
    from bench.config import load_config

    cfg = load_config("smoke", ["finetune.lr=1e-4", "matrix.seeds=10", "find.sparsities=0,0.0001,0.5,0.9999"])
    assert (cfg.finetune.lr, cfg.matrix.seeds, cfg.find.sparsities) == (1e-4, 10, (0, 0.0001, 0.5, 0.9999))


# ---- 1c. plans refuse sizes that cannot run, saying the number ------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--seeds", "1000000000"], "would make 175000000000 fine-tuning runs"),
    (["--set", "find.hparams.imp.mode=of_remaining", "--set", "find.hparams.imp.prune_fraction=1e-9"],
     "would make 2302585092 rounds"),
    (["--set", "find.hparams.imp.mode=of_original", "--set", "find.hparams.imp.prune_fraction=1e-9"],
     "would make 900000000 rounds"),
], ids=["seeds", "imp-of-remaining", "imp-of-original"])
def test_plans_that_cannot_run_are_refused_with_their_size(args, message, capsys):
    _refused_quickly(["plan", "smoke", *args], capsys, message, seconds=30)


# ---- 2. one validation layer for what is read back from a store ----------------------------------------
def _with_manifest(out: Path, edit=None) -> Path:
    """A plan manifest over the synthetic store's records (as the matrix stage writes it)."""
    cells, runs = [], []
    for path in sorted(out.glob("runs/*/record.json")):
        rec = json.loads(path.read_text())
        runs.append(rec["run_id"])
        cells.append({"run": rec["run_id"], "source": rec["source"], "sparsity": rec["sparsity"],
                      "task": rec["task"], "seed": rec["seed"], "steps_factor": 1})
    manifest = {"plan": "p0", "name": "synth", "config": {}, "searches": {}, "runs": runs, "cells": cells}
    if edit:
        manifest = edit(manifest)
    (out / "plans").mkdir(exist_ok=True)
    (out / "plans" / "p0.json").write_text(json.dumps(manifest))
    (out / "plans" / "LAST").write_text("p0\n")
    return out / "plans" / "p0.json"


def _cell(field, value):
    def edit(m):
        if value is None:
            m["cells"][0].pop(field)
        else:
            m["cells"][0][field] = value
        return m
    return edit


@pytest.mark.parametrize("edit, message", [
    (_cell("sparsity", "abc"), "field 'cells[0].sparsity': expected a number in [0, 1), found 'abc'"),
    (_cell("source", None), "field 'cells[0].source': expected a string, found None"),
    (_cell("seed", [1]), "field 'cells[0].seed': expected an integer"),
    (_cell("steps_factor", "x"), "field 'cells[0].steps_factor': expected an integer ≥ 1"),
    (lambda m: [m], "not a plan manifest (expected a JSON object, found list)"),
    (lambda m: {**m, "runs": [1]}, "field 'runs[0]': expected a run id"),
    (lambda m: {**m, "searches": [1]}, "field 'searches': expected a mapping"),
], ids=["sparsity", "no-source", "seed", "steps_factor", "list", "runs", "searches"])
def test_a_damaged_plan_manifest_is_one_line_with_a_hint(results, edit, message, capsys):
    path = _with_manifest(results, edit)
    before = snapshot(results)
    err = assert_one_line_error(cli_here("report", str(results), capsys=capsys), str(path), message)
    assert "ticketbench matrix" in err  # what to do
    assert {k: v for k, v in snapshot(results).items() if not k.startswith("report")} == \
           {k: v for k, v in before.items() if not k.startswith("report")}


def test_a_plan_pointer_with_garbage_and_plans_all_without_manifests(results, capsys):
    assert_one_line_error(cli_here("report", str(results), "--plans", "all", capsys=capsys),
                          "no plan manifests", "--plans all")
    _with_manifest(results)
    (results / "plans" / "LAST").write_text("../../etc/passwd\n")
    assert_one_line_error(cli_here("report", str(results), capsys=capsys), "LAST", "expected a plan hash")


@pytest.mark.parametrize("fields, message", [
    ({"metric": "bleu"}, "for task gqa"),
    ({"steps_factor": "x"}, "field 'steps_factor': expected an integer ≥ 1, found 'x'"),
    ({"value": 1e308}, "field 'value': expected a score in [0, 100], found 1e+308"),
    ({"value": -5.0}, "field 'value': expected a score in [0, 100]"),
    ({"metric": ["accuracy"]}, "field 'metric': expected a string"),
    ({"reason": {"x": 1}}, "field 'reason': expected a string"),
    ({"env": {"device": ["cpu"]}}, "field 'env.device': expected a string"),
    ({"metrics": {"accuracy": "high"}}, "field 'metrics.accuracy': expected a finite number"),
    ({"seed": 1.5}, "field 'seed': expected an integer"),
], ids=["metric-mixed", "steps_factor", "value-1e308", "value-negative", "metric-list", "reason-object", "device-list",
        "metrics-str", "seed-float"])
def test_a_damaged_record_is_one_line_with_a_hint(results, fields, message, capsys):
    path = _record(results)
    rec = json.loads(path.read_text())
    rec.update(fields)
    path.write_text(json.dumps(rec))
    err = assert_one_line_error(cli_here("report", str(results), capsys=capsys), path.parent.name, message)
    assert "re-run `ticketbench matrix`" in err


@pytest.mark.parametrize("content", ["[1, 2]", '{"matrix": Infinity, "last_total_s": 3}', '{"device": 3}'],
                         ids=["list", "infinity", "device-number"])
def test_damaged_timings_are_left_out_of_the_readme(results, content, capsys):
    (results / "timings.json").write_text(content)
    assert cli_here("report", str(results), capsys=capsys).returncode == 0
    assert "pipeline wall time" not in (results / "report" / "README.md").read_text()


def test_check_timings_names_the_field():
    from bench.core.validate import check_timings

    with pytest.raises(DataError, match=r"t.json: field 'matrix': expected a finite number ≥ 0, found inf; delete it"):
        check_timings("t.json", {"matrix": float("inf")})
    with pytest.raises(DataError, match="expected a JSON object of stage timings, found list"):
        check_timings("t.json", [1])


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object (a toyland world's manifest), found list"),
    ('{"seed": 0, "scale": "smo', "malformed JSON"),
    ('{"seed": "zero", "scale": "smoke", "version": 1}', "field 'seed': expected an integer"),
], ids=["list", "truncated", "seed-str"])
def test_a_damaged_world_manifest_is_one_line(tmp_path, content, message, capsys):
    world = tmp_path / "world"
    world.mkdir()
    (world / "MANIFEST.json").write_text(content)
    assert_one_line_error(cli_here("world", "--out", str(world), capsys=capsys), "MANIFEST.json", message)
    assert sorted(p.name for p in world.iterdir()) == ["MANIFEST.json"]


# ---- 3. text from a store is escaped in the README and the tables -------------------------------------
def test_text_from_records_is_escaped_in_readme_and_tables(results, capsys):
    failed = next(p for p in results.glob("runs/failed_*/record.json"))
    rec = json.loads(failed.read_text())
    rec["reason"] = "<script>alert(1)</script> [click](http://evil.example) **bold** a|b"
    failed.write_text(json.dumps(rec))
    task = json.loads(_record(results).read_text())["task"]
    for path in results.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        if rec["status"] == "done" and rec["task"] == task:
            rec["env"]["device"] = "<img src=x onerror=alert(1)>"
            rec["metric"] = "<b>acc</b>"  # a task's metric is one name across its runs
            path.write_text(json.dumps(rec))
    assert cli_here("report", str(results), capsys=capsys).returncode == 0
    readme = (results / "report" / "README.md").read_text()
    assert "&lt;script&gt;" in readme and "&lt;img src=x" in readme
    assert "](http://evil" not in readme
    for md in (results / "report").glob("*.md"):
        text = md.read_text()
        assert "<script" not in text and "<img" not in text and "<b>" not in text, md.name
    tex = "".join(p.read_text() for p in (results / "report").glob("*.tex"))
    assert "\\textless{}b\\textgreater{}acc" in tex or "<b>" not in tex


def test_latex_and_markdown_escapes():
    from reports.writers import _latex_escape, md_text

    assert _latex_escape(r"\input{/etc/passwd} $x$ 50% a_b ^~") == (
        r"\textbackslash{}input\{/etc/passwd\} \$x\$ 50\% a\_b \textasciicircum{}\textasciitilde{}")
    assert md_text("<a>|*x*|`y`\nz") == r"&lt;a&gt;\|\*x\*\|\`y\` z"
    assert md_text("[95% CI 1, 2]") == "[95% CI 1, 2]"  # the report's own brackets stay


# ---- 4. locks that cannot wedge ----------------------------------------------------------------------
def _foreign_lock(store, run_id: str, **info) -> Path:
    lock = store.run_dir(run_id) / "claim.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "token": "someone", "time": 0, **info}))
    return lock


def _listening(monkeypatch, name: str) -> None:
    """A library's logging.config.dictConfig (run by an earlier test in the session) disables loggers
    that already exist; the warnings under test must still reach caplog."""
    monkeypatch.setattr(logging.getLogger(name), "disabled", False)


def test_a_lock_naming_a_live_unrelated_process_is_taken_over_with_a_message(tmp_path, caplog, monkeypatch):
    _listening(monkeypatch, "bench.runner.store")
    from bench.runner.store import RunStore

    store = RunStore(tmp_path, stale_after_s=600)
    lock = _foreign_lock(store, "r1", pid=os.getppid())  # alive, not a runner; no start time, no heartbeat
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING, logger="bench.runner.store"):
        claim = store.claim("r1")
    assert claim is not None and claim.held()
    assert "taking over the stale lock" in caplog.text and f"pid {os.getppid()}" in caplog.text
    claim.release()


def test_a_lock_whose_pid_was_recycled_is_taken_over(tmp_path):
    from bench.runner.store import RunStore

    store = RunStore(tmp_path)
    _foreign_lock(store, "r2", pid=os.getpid(), start="1")  # this pid, but another process start time
    claim = store.claim("r2")
    assert claim is not None
    claim.release()


def test_a_fresh_lock_of_a_live_runner_is_respected(tmp_path):
    from bench.runner.store import RunStore, _proc_start

    store = RunStore(tmp_path)
    _foreign_lock(store, "r3", pid=os.getppid(), start=_proc_start(os.getppid()))
    assert store.claim("r3") is None


# ---- 5. strict command line and API -------------------------------------------------------------------
def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli_here("run", "smoke", "--out", "", capsys=capsys), "--out: expected a directory, found ''")
    assert list(tmp_path.iterdir()) == []


def test_world_with_a_negative_seed_is_refused(tmp_path, capsys):
    assert_one_line_error(cli_here("world", "--out", str(tmp_path / "w"), "--seed", "-1", capsys=capsys),
                          "world --seed: expected an integer ≥ 0, found -1")
    assert not (tmp_path / "w").exists()


def test_an_unavailable_device_is_one_line(tmp_path, capsys):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert_one_line_error(cli_here("pretrain", "smoke", "--out", str(tmp_path / "o"), "--quiet",
                                   "--set", "backbone.device=mps", capsys=capsys), "MPS (Apple GPU) is not available")
    assert not list((tmp_path / "o").rglob("*.safetensors")) if (tmp_path / "o").exists() else True


def test_unknown_stages_are_refused_by_the_api(tmp_path):
    import ticketbench

    with pytest.raises(ConfigError, match=r"stages: expected names from world, pretrain, find, matrix, report, "
                                          r"found \['nope'\]"):
        ticketbench.run("smoke", out=tmp_path / "o", stages=["nope"])
    assert not (tmp_path / "o").exists()


def test_output_with_theta_under_an_ascii_terminal():
    proc = cli("plan", "smoke", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\\u03b80" in proc.stdout and "Traceback" not in proc.stderr


# ---- 5b. plugins: a built-in name is not replaced silently; one broken plugin breaks nothing else ------
def _install_plugin(tmp_path, monkeypatch, name: str, entry: str, source: str) -> None:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(source)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ticketbench.methods]\n{entry} = {name}:method\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_plugins_cannot_replace_a_builtin_or_break_other_commands(tmp_path, monkeypatch, caplog):
    _listening(monkeypatch, "bench.core.registry")
    import tickets
    from tickets.registry import METHODS

    imp_before = tickets.get_method("imp")
    _install_plugin(tmp_path, monkeypatch, "evil_imp", "imp",
                    "from tickets.registry import METHODS\nmethod = object()\n")
    (tmp_path / "b").mkdir()
    _install_plugin(tmp_path / "b", monkeypatch, "broken_plugin", "broken", "raise SyntaxError('oops')\n")
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    monkeypatch.setattr(METHODS, "broken", {})
    with caplog.at_level(logging.WARNING, logger="bench.core.registry"):
        assert tickets.get_method("imp") is imp_before  # built-in kept
        assert "omp" in METHODS.names()  # the other methods still answer
    assert "named like a registered pruning method and is ignored" in caplog.text
    assert "'broken' (broken_plugin:method) failed to load: SyntaxError: oops" in caplog.text
    with pytest.raises(TicketbenchError, match="'broken' .* failed to load: SyntaxError"):
        tickets.get_method("broken")


def test_a_builtin_is_replaced_only_with_override(monkeypatch):
    from dataclasses import dataclass

    from tickets.registry import METHODS, register_method

    @dataclass(frozen=True)
    class H:
        pass

    items = dict(METHODS._items)
    monkeypatch.setattr(METHODS, "_items", items)
    with pytest.raises(TicketbenchError, match="'omp' is already registered .*override=True"):
        register_method("omp", H)(lambda ctx, hp: [])
    replaced = register_method("omp", H, override=True)(lambda ctx, hp: [])
    assert items["omp"] is replaced


def test_a_plugin_module_with_an_error_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad_plugin_mod.py").write_text("x = undefined_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_one_line_error(cli_here("plan", "smoke", "--set", "find.plugins=bad_plugin_mod", capsys=capsys),
                          "find.plugins: cannot import 'bad_plugin_mod': NameError")


# ---- 6. the releases as they unpack ------------------------------------------------------------------
def test_nlvr2_train_pictures_under_images_train_n(tmp_path):
    import numpy as np
    from PIL import Image

    from bench.config import WorldConfig
    from bench.data.sources import ImageSources

    pic = tmp_path / "nlvr2" / "images" / "train" / "7" / "train-10171-0-img0.png"
    pic.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(pic)
    world = WorldConfig(source="real", data_root=str(tmp_path), features=str(tmp_path / "nlvr2"))
    store = ImageSources(world, tmp_path, "pixels", "vilt", shorter=32).for_task("nlvr2")
    assert tuple(store.get("train-10171-0-img0").pixel_values.shape[:1]) == (3,)


def test_coco_caption_files_as_released(tmp_path):
    from bench.tasks import TASKS

    captions = tmp_path / "captions"
    captions.mkdir()
    for split in ("train", "val"):
        (captions / f"captions_{split}2014.json").write_text(json.dumps(
            {"annotations": [{"id": 1, "image_id": 9, "caption": "a red cube"}]}))
    spec = TASKS.get("itm")
    assert [e.texts for e in spec.load(captions, "train")] == [("a red cube",)]
    assert len(spec.load(captions, "val")) == 1


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from bench.data.toyland import generate_world

    out = tmp_path_factory.mktemp("w") / "out"
    generate_world(out / "world", seed=0, scale="smoke")
    return out


def test_data_check_sample_0_checks_every_image_and_says_how_many(world, tmp_path):
    from bench.backbones import PRESETS
    from bench.config import load_config
    from bench.data.check import check_data, format_check
    from bench.tasks import TASKS

    out = tmp_path / "out"
    shutil.copytree(world, out)
    spec = TASKS.get("snli_ve")
    ids = sorted({i for e in spec.load(out / "world" / spec.data_subdir, "train") for i in e.image_ids})
    (out / "world" / "features" / "uniter" / f"{ids[-1]}.npz").unlink()  # the last image, rarely sampled
    cfg = load_config("smoke")
    rows = check_data(cfg, PRESETS.get(cfg.backbone.preset), out=out, sample=0, tasks=["snli_ve"])
    assert rows[0].images == len(ids) and rows[0].missing >= 1
    assert f"{sum(r.images for r in rows)} image id(s) looked up in 2 split(s)" in format_check(rows)


# ---- 7. fault isolation: a failed search fails only its cells; deleted tickets are searched again -------
def test_a_failed_search_fails_only_its_own_cells_and_deleted_tickets_are_found_again(tmp_path, capsys):
    import numpy as np

    from bench.tasks import TASKS

    out = prepare(tmp_path / "out", stages=("world", "pretrain"))
    # NaN region features for every snli_ve image: IMP's search on snli_ve fails (non-finite loss);
    # gqa's images are others, so imp:gqa and the cells on gqa do not depend on it.
    spec = TASKS.get("snli_ve")
    for image_id in {i for split in spec.splits[:2] for e in spec.load(out / "world" / spec.data_subdir, split)
                     for i in e.image_ids}:
        path = out / "world" / "features" / "uniter" / f"{image_id}.npz"
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["features"] = np.full_like(arrays["features"], np.nan)
        np.savez(path, **arrays)
    argv = ["matrix", "smoke", "--out", str(out), "--quiet", "--tasks", "gqa", "--sources", "imp:snli_ve,imp:gqa,dense",
            "--sparsities", "0.5", *tiny_args()]
    proc = cli_here(*argv, capsys=capsys)
    err = assert_one_line_error(proc, "1 of 3 run(s) failed", "imp:snli_ve→gqa", "search imp:snli_ve failed")
    assert "non-finite" in err
    done = {(r["source"], r["task"]) for r in records(out) if r["status"] == "done"}
    assert done == {("imp:gqa", "gqa"), ("dense", "gqa")}
    # A deleted ticket is searched again by `find` (its search record alone does not count as stored).
    ticket = next(out.glob("tickets/*/imp__gqa/sparsity-0.50.safetensors"))
    ticket.unlink()
    proc = cli_here("find", "smoke", "--out", str(out), "--quiet", "--tasks", "gqa", "--sources", "imp:gqa,dense",
                    "--sparsities", "0.5", *tiny_args(), capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert ticket.is_file()
    assert "tickets missing" in proc.stdout + proc.stderr


@pytest.mark.parametrize("overrides, needle", [
    (["find.one_shot=imp"], "find.one_shot: 'imp' is IMP"),
    (["find.one_shot=random", "matrix.baselines=random"], "source 'random' is listed twice"),
])
def test_a_source_named_twice_is_refused_not_searched_twice(overrides, needle):
    from bench.config import load_config
    from bench.plan import build_plan

    with pytest.raises(ConfigError, match=needle):
        build_plan(load_config("smoke", overrides=overrides))
