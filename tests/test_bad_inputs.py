"""The bad-input sweep as a test suite: every case is one `ticketbench: error:` line naming the problem,
a non-zero exit, no traceback, and nothing written (no output directory for config errors, a store
byte-for-byte unchanged for store faults). docs/RELIABILITY.md §4b catalogues the cases.

The commands run in this process (`bench.cli.main`): config values, options and names are all checked
before any stage starts, so each case takes milliseconds. A case that started work would create the
output directory, and the test would fail.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, cli_here, snapshot

# --set KEY=VALUE → what the one-line error must say (besides the key itself).
SET_CASES = [
    ("pretrain.steps=0", "an integer ≥ 1, found 0"),
    ("pretrain.steps=-5", "an integer ≥ 1, found -5"),
    ("pretrain.steps=abc", "expected int, found 'abc'"),
    ("pretrain.steps=2.5", "expected int, found 2.5"),
    ("pretrain.batch_size=0", "an integer ≥ 1, found 0"),
    ("pretrain.batch_size=-1", "an integer ≥ 1, found -1"),
    ("pretrain.lr=0", "> 0, found 0.0"),
    ("pretrain.lr=-1", "> 0, found -1.0"),
    ("pretrain.lr=.nan", "found nan"),
    ("pretrain.lr=.inf", "found inf"),
    ("pretrain.warmup=1.5", "a fraction in [0, 1], found 1.5"),
    ("pretrain.warmup=-0.1", "a fraction in [0, 1], found -0.1"),
    ("pretrain.weight_decay=-0.01", "≥ 0, found -0.01"),
    ("pretrain.objectives=foo:1", "objective mix"),
    ("pretrain.objectives=itm:abc", "objective mix"),
    ("pretrain.objectives=itm:0", "ratios > 0"),
    ("pretrain.objectives=itm:-1", "ratios > 0"),
    ("pretrain.objectives=", "found ''"),
    ("pretrain.first_objectives=xyz", "objective mix"),
    ("pretrain.first_fraction=1.5", "a fraction in [0, 1], found 1.5"),
    ("pretrain.first_fraction=-0.2", "a fraction in [0, 1], found -0.2"),
    ("pretrain.mask_prob=0", "(0, 1), found 0.0"),
    ("pretrain.mask_prob=1", "(0, 1), found 1.0"),
    ("pretrain.mask_prob=2", "(0, 1), found 2.0"),
    ("pretrain.seed=-1", "≥ 0, found -1"),
    ("pretrain.betas=0.9", "expected 2 values, found [0.9]"),
    ("pretrain.grad_accum=0", "≥ 1, found 0"),
    ("pretrain.adv_steps=-1", "≥ 0, found -1"),
    ("pretrain.adv_epsilon=-0.1", "≥ 0, found -0.1"),
    ("world.source=synthetic", "one of toyland, real, found 'synthetic'"),
    ("world.scale=huge", "one of smoke, default, study, large, found 'huge'"),
    ("world.seed=-3", "≥ 0, found -3"),
    ("world.source=real", "world.data_root is empty"),
    ("world.images=coco", "element 'coco' of ['coco']: expected SOURCE=PATH[|KEY_TEMPLATE]"),
    ("world.task_images=vqa", "element 'vqa' of ['vqa']: expected TASK=SOURCE"),
    ("world.cache_mb=-1", "≥ 0, found -1"),
    ("world.conf_th=2", "[-1, 1], found 2.0"),
    ("world.max_bb=0", "≥ 1, found 0"),
    ("backbone.device=gpu", "auto, cpu, mps, cuda or cuda:N, found 'gpu'"),
    ("backbone.device=cuda:x", "found 'cuda:x'"),
    ("backbone.preset=", "a non-empty name"),
    ("find.hparams=imp", "element 'imp' of ['imp']: expected method.field=value"),
    ("find.hparams=imp.mode", "element 'imp.mode' of ['imp.mode']: expected method.field=value"),
    ("find.hparams.imp.nope=1", "method 'imp': unknown hyperparameter 'nope' (did you mean 'mode'?)"),
    ("find.hparams.imp=1", "expected find.hparams.<method>.<field>=value"),
    ("find.sparsities=", "expected at least one value"),
    ("find.sparsities=0.5,1.2", "element 1.2"),
    ("find.sparsities=abc", "element 'abc'"),
    ("find.rewind_step=-1", "≥ 0, found -1"),
    ("find.steps=-2", "≥ 1, found -2"),
    ("find.steps=0", "≥ 1, found 0"),
    ("find.include=[", "element '[' of ['[']: expected a valid regular expression"),
    ("find.exclude=(", "element '(' of ['(']: expected a valid regular expression"),
    ("find.seed=-1", "≥ 0, found -1"),
    ("find.sources=1,2", "element 1 of [1, 2]: expected a non-empty name"),
    ("finetune.steps=-5", "≥ 1, found -5"),
    ("finetune.steps=0", "≥ 1, found 0"),
    ("finetune.batch_size=-3", "≥ 1, found -3"),
    ("finetune.batch_size=0", "≥ 1, found 0"),
    ("finetune.lr=-1", "> 0, found -1.0"),
    ("finetune.lr=0", "> 0, found 0.0"),
    ("finetune.lr=.nan", "found nan"),
    ("finetune.head_lr_mult=0", "> 0, found 0.0"),
    ("finetune.head_lr_mult=-1", "> 0, found -1.0"),
    ("finetune.warmup=2", "a fraction in [0, 1], found 2.0"),
    ("finetune.weight_decay=-1", "≥ 0, found -1.0"),
    ("finetune.betas=0.9", "expected 2 values, found [0.9]"),
    ("finetune.betas=0.9,1.5", "element 1.5"),
    ("finetune.betas=0.9,abc", "element 'abc'"),
    ("finetune.betas=0.9,0.98,0.99", "expected 2 values"),
    ("finetune.grad_clip=-1", "≥ 0, found -1.0"),
    ("finetune.grad_accum=0", "≥ 1, found 0"),
    ("finetune.eval_batch_size=0", "≥ 1, found 0"),
    ("finetune.eval_batch_size=-1", "≥ 1, found -1"),
    ("finetune.max_text_len=0", "≥ 3, found 0"),
    ("finetune.dev_limit=-1", "≥ 0, found -1"),
    ("finetune.bf16=maybe", "expected bool, found 'maybe'"),
    ("finetune.steps=abc", "expected int, found 'abc'"),
    ("finetune.batch_size=1.5", "expected int, found 1.5"),
    ("finetune.adv_steps=-2", "≥ 0, found -2"),
    ("finetune.adv_step_size=.nan", "found nan"),
    ("find.adv_steps=-1", "≥ 0, found -1"),
    ("matrix.sparsities=abc", "element 'abc' of ['abc']: expected a number in [0, 1)"),
    ("matrix.sparsities=1.0", "element 1.0"),
    ("matrix.sparsities=-0.5", "element -0.5"),
    ("matrix.sparsities=0.5,abc", "element 'abc' of [0.5, 'abc']"),
    ("matrix.sparsities=0.5,0.5", "no repeated values"),
    ("matrix.sparsities=0.6", "0.6 is not on the ticket ladder find.sparsities"),
    ("matrix.sparsities=.nan", "element nan"),
    ("matrix.seeds=0", "≥ 1, found 0"),
    ("matrix.seeds=-1", "≥ 1, found -1"),
    ("matrix.workers=-2", "≥ 0, found -2"),
    ("matrix.gpus_per_run=0", "> 0, found 0.0"),
    ("matrix.threads=0", "≥ 1, found 0"),
    ("matrix.sources=imq:vqa", "unknown source 'imq:vqa' (did you mean 'imp:vqa'?)"),
    ("matrix.executor=slurm", "one of local, ray, found 'slurm'"),
    ("matrix.tasks=", "expected at least one value"),
    ("matrix.tasks=1,2", "element 1"),
    ("matrix.control_sparsities=2", "element 2"),
    ("matrix.control_sparsities=abc", "element 'abc'"),
    ("matrix.baselines=3", "element 3"),
    ("report.relaxed=0", "(0, 1], found 0.0"),
    ("report.relaxed=1.5", "(0, 1], found 1.5"),
    ("report.tie_margin=-1", "≥ 0, found -1.0"),
    ("report.transfer_sparsities=1.2", "element 1.2"),
    ("report.transfer_sparsities=x", "element 'x'"),
    ("name=../x", "name: expected one directory name"),
    ("name=a/b", "name: expected one directory name"),
    ("name=.hidden", "name: expected one directory name"),
    ("name=/abs", "name: expected one directory name"),
    ("name=..", "name: expected one directory name"),
    # names that need a registry: checked by the pipeline before it writes anything
    ("matrix.tasks=vqa,nope", "unknown task 'nope'"),
    ("find.sources=vqq", "unknown task 'vqq'"),
    ("backbone.preset=nope", "unknown backbone preset 'nope'"),
    ("find.one_shot=nope:vqa", "unknown pruning method 'nope'"),
    ("matrix.baselines=nope", "unknown pruning method 'nope'"),
    ("find.plugins=no_such_plugin_module", "cannot import 'no_such_plugin_module'"),
    # the override's own syntax
    ("finetune.stepz=3", "unknown key 'finetune.stepz' (did you mean 'finetune.steps'?)"),
    ("foo=1", "unknown key 'foo'"),
    ("finetune=3", "unknown key 'finetune'"),
    ("nodots", "expected section.key=value"),
    ("world.seed.deeper=1", "unknown key 'world.seed.deeper'"),
]

# CLI options (checked before the config reaches the pipeline): option, value → message.
OPTION_CASES = [
    (["--seeds", "0"], "--set: matrix.seeds: expected an integer ≥ 1, found 0"),
    (["--seeds", "-1"], "matrix.seeds: expected an integer ≥ 1, found -1"),
    (["--seeds", "abc"], "matrix.seeds: expected int, found 'abc'"),
    (["--workers", "-4"], "--set: matrix.workers: expected an integer ≥ 0, found -4"),
    (["--workers", "x"], "matrix.workers: expected int, found 'x'"),
    (["--executor", "slurm"], "matrix.executor: expected one of local, ray, found 'slurm'"),
    (["--sparsities", "abc"], "matrix.sparsities: element 'abc' of ['abc']: expected a number in [0, 1)"),
    (["--sparsities", "1.5"], "matrix.sparsities: element 1.5"),
    (["--sparsities", "-0.1"], "matrix.sparsities: element -0.1"),
    (["--sparsities", "0.5,x"], "matrix.sparsities: element 'x' of [0.5, 'x']"),
    (["--sparsities", "0.6"], "matrix.sparsities: 0.6 is not on the ticket ladder"),
    (["--tasks", ","], "matrix.tasks: expected at least one value"),
    (["--tasks", "nope"], "unknown task 'nope'"),
    (["--sources", "imq:vqa"], "did you mean 'imp:vqa'"),
]

# argparse's own refusals: exit 2 and a `ticketbench …: error: argument …` line after the usage.
ARGPARSE_CASES = [
    (["--only", "nope"], "argument --only: invalid choice: 'nope'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--seeds"], "argument --seeds: expected one argument"),
]

# YAML config files: content → message (the file's path is always named too).
YAML_CASES = [
    ("finetune:\n  batch_size: -3\n", "finetune.batch_size: expected an integer ≥ 1, found -3"),
    ("matrix:\n  sparsities: [0.5, abc]\n", "element 'abc' of [0.5, 'abc']"),
    ("matrix:\n  workers: true\n", "matrix.workers: expected int, found True"),
    ("matrix: 3\n", "section 'matrix' must be a mapping, found 3"),
    ("- world\n- matrix\n", "expected a mapping of sections, found list"),
    ("world: [\n", "invalid YAML"),
    ("world: !!python/object:os.system {}\n", "invalid YAML"),
    ("name: ../../etc\n", "name: expected one directory name"),
    ("world:\n  seed: -1\n", "world.seed: expected an integer ≥ 0, found -1"),
    ("pretrain:\n  lr: fast\n", "pretrain.lr: expected float, found 'fast'"),
    ("finetune:\n  betas: 0.9\n", "finetune.betas: expected 2 values"),
    ("finetune:\n  stepz: 3\n", "unknown key 'finetune.stepz'"),
    ("matrix:\n  executor: slurm\n", "one of local, ray"),
]


@pytest.fixture
def never(tmp_path) -> Path:
    """An output directory that a refused command must not create."""
    return tmp_path / "never"


def _refused(never: Path, capsys, *argv: str, needles=()) -> str:
    err = assert_one_line_error(cli_here(*argv, capsys=capsys), *needles)
    assert not never.exists(), f"work started before the error: {sorted(p.name for p in never.rglob('*'))}"
    return err


@pytest.mark.parametrize("override, message", SET_CASES, ids=[c[0] or "empty" for c in SET_CASES])
def test_bad_set_value_is_refused_before_any_stage(override, message, never, capsys):
    key = override.split("=", 1)[0]
    # Registry names (tasks, presets, methods) are refused by name with the known ones listed.
    needles = (message,) if message.startswith(("unknown", "cannot import", "method '")) else (key, message)
    _refused(never, capsys, "run", "smoke", "--out", str(never), "--set", override, needles=needles)


@pytest.mark.parametrize("command", ["run", "pretrain", "find", "matrix", "config"])
def test_every_command_validates_the_config(command, never, capsys):
    argv = [command, "smoke", "--set", "finetune.batch_size=-3"]
    if command != "config":
        argv += ["--out", str(never)]
    _refused(never, capsys, *argv, needles=("finetune.batch_size", "found -3"))


@pytest.mark.parametrize("options, message", OPTION_CASES, ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_bad_option_is_refused_before_any_stage(options, message, never, capsys):
    _refused(never, capsys, "run", "smoke", "--out", str(never), *options, needles=(message,))


@pytest.mark.parametrize("options, message", ARGPARSE_CASES, ids=[" ".join(c[0]) for c in ARGPARSE_CASES])
def test_malformed_option_is_refused_by_the_parser(options, message, never, capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "smoke", "--out", str(never), *options])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert message in err.strip().splitlines()[-1], err
    assert not never.exists()


@pytest.mark.parametrize("content, message", YAML_CASES, ids=[f"yaml{i}" for i in range(len(YAML_CASES))])
def test_bad_yaml_config_is_refused(content, message, tmp_path, never, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(content)
    _refused(never, capsys, "run", str(config), "--out", str(never), needles=(str(config), message))


@pytest.mark.parametrize("argv, message", [
    (["run", "nope.yaml"], "config file not found: nope.yaml"),
    (["run", "smok"], "unknown config 'smok' (did you mean 'smoke'?)"),
    (["world"], "give --out DIR"),
    (["tickets"], "give an action"),
    (["tickets", "show", "NOWHERE/t.safetensors"], "ticket file not found"),
    (["tickets", "ls", "NOWHERE"], "not a ticket directory"),
    (["tickets", "diff", "NOWHERE/a.safetensors", "NOWHERE/b.safetensors"], "ticket file not found"),
    (["tickets", "export", "NOWHERE/t.safetensors", "--out", "NOWHERE/model"], "ticket file not found"),
    (["report", "NOWHERE"], "nowhere"),
], ids=["config-file", "config-preset", "world-no-out", "tickets-no-action", "show", "ls", "diff", "export", "report"])
def test_missing_files_and_arguments(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in argv]
    assert_one_line_error(cli_here(*argv, capsys=capsys), message)
    assert not (tmp_path / "nowhere").exists()


def test_config_name_cannot_leave_runs(tmp_path, capsys, monkeypatch):
    # Without --out the output directory is runs/<name>: a name with '..' would write outside runs/.
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli_here("run", "smoke", "--set", "name=../../escaped", capsys=capsys), "name")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- faults in stored files: records, tickets, θ0 ----------------------------------------------------
@pytest.fixture
def results(tmp_path) -> Path:
    """A synthetic results store (records and tickets, as tests/test_reports_synth.py writes them)."""
    from test_reports_synth import make_store

    return make_store(tmp_path / "out")


def _edit_record(out: Path, **fields) -> Path:
    path = sorted(out.glob("runs/*/record.json"))[0]
    rec = json.loads(path.read_text())
    rec.update(fields)
    path.write_text(json.dumps(rec))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"env": [1]}, "field 'env' must be a JSON object, found [1]"),
    ({"timings": "fast"}, "field 'timings' must be a JSON object"),
    ({"metrics": 3}, "field 'metrics' must be a JSON object"),
    ({"backbone": "../x"}, "field 'backbone' '../x' is not a plain name"),
    ({"backbone": "/tmp/abs"}, "field 'backbone' '/tmp/abs' is not a plain name"),
    ({"task": "../../t"}, "field 'task' '../../t' is not a plain name"),
    ({"source": "../x"}, "invalid ticket source"),
    ({"value": "high"}, "must be numbers"),
    ({"value": float("nan")}, "must be finite"),
    ({"sparsity": None}, "missing field 'sparsity'"),
], ids=["env-list", "timings-str", "metrics-int", "backbone-dotdot", "backbone-abs", "task-dotdot", "source-dotdot",
        "value-str", "value-nan", "sparsity-null"])
def test_bad_record_fails_the_report_in_one_line(results, fields, message, tmp_path, capsys):
    path = _edit_record(results, **fields)
    outside = sorted(p.name for p in tmp_path.iterdir())
    err = assert_one_line_error(cli_here("report", str(results), capsys=capsys), message)
    assert path.parent.name in err  # names the record's file
    assert sorted(p.name for p in tmp_path.iterdir()) == outside  # nothing written outside the store
    assert not list(tmp_path.parent.glob("x*"))


def _rewrite_ticket_metadata(path: Path, edit) -> None:
    """Change a ticket file's JSON metadata in place (safetensors: 8-byte header length, JSON header, data)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = json.loads(header["__metadata__"]["ticket"])
    edit(meta)
    header["__metadata__"]["ticket"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["sparsity"].update(per_tensor=[]), "'per_tensor'"),
    (lambda m: m.update(sparsity=[0.5]), "'per_tensor'"),
    (lambda m: m.update(content_hash="0" * 16), "does not match stored"),
    (lambda m: m.update(weights="magic"), "weights 'magic' must be one of"),
    (lambda m: m.update(target_sparsity=1.5), "target sparsity"),
    (lambda m: m.update(shapes={}), "'order' and 'shapes' disagree"),
    (lambda m: m.pop("fingerprint"), "lacks fingerprint"),
], ids=["per_tensor-list", "sparsity-list", "content-hash", "weights", "target-sparsity", "shapes", "no-fingerprint"])
def test_tampered_ticket_is_refused_in_one_line(results, edit, message, capsys):
    ticket = next(results.glob("tickets/*/imp__vqa/*.safetensors"))
    _rewrite_ticket_metadata(ticket, edit)
    before = snapshot(results)
    assert_one_line_error(cli_here("tickets", "show", str(ticket), capsys=capsys), str(ticket), message)
    assert snapshot(results) == before


def test_theta0_with_a_flipped_byte_is_refused(tmp_path):
    """θ0 is checked against the hash its DONE recorded when it is loaded (before any training)."""
    from bench.backbones import create_backbone
    from bench.config import build_config
    from bench.core.errors import CheckpointError
    from bench.core.io import file_hash
    from bench.runner.study import Study, _load_backbone_cached

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["a", "red", "cube", "is", "left", "of", "the"]) + "\n")
    d = create_backbone("toy-uniter", vocab_path=vocab, feat_dim=8).save(tmp_path / "theta0")
    (d / "DONE").write_text(file_hash(d / "model.safetensors") + "\n")
    study = Study(build_config({}), tmp_path)
    assert study.theta0(d) is not None  # intact: loads
    _load_backbone_cached.cache_clear()
    weights = d / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"θ0 .*model.safetensors: content hash \w+ does not match \w+ recorded in its DONE"):
        study.theta0(d)
    _load_backbone_cached.cache_clear()


def test_every_case_is_catalogued():
    """docs/RELIABILITY.md §4b lists every case of this file; the sweep holds at least 100 cases."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "RELIABILITY.md").read_text()
    rows = [f"`--set {o}`" for o, _ in SET_CASES] + [f"`{' '.join(o)}`" for o, _ in OPTION_CASES + ARGPARSE_CASES]
    rows += [f"`{c.strip().replace(chr(10), '⏎ ')}`" for c, _ in YAML_CASES]
    missing = [r for r in rows if r not in doc]
    assert not missing, f"not in docs/RELIABILITY.md: {missing}"
    others = 5 + 9 + 1 + 10 + 7 + 1  # commands, missing files, name, records, tickets, θ0
    assert len(rows) + others >= 100


def test_every_config_field_has_a_check():
    """A config field declared without its check (`hp(default, help, check=...)`) would go unvalidated."""
    import dataclasses

    from bench import config
    from bench.core.validate import Check

    unchecked = [f"{s}.{f.name}" for s in config.SECTIONS for f in dataclasses.fields(config._section_type(s))
                 if not isinstance(f.metadata.get("check"), Check)]
    assert unchecked == [], "fields without a check"
