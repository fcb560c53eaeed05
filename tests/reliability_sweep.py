"""The hostile-input sweep (docs/RELIABILITY.md §4c): config files, `--set` values, options, environment,
store files, tickets, pickles and plugins, each run through the `ticketbench` command in this process, and
every outcome tallied:

  error      exit ≠ 0 with one `ticketbench: error:` line (the expected answer to a bad input)
  ok         exit 0 where the input is damaged bookkeeping the command may ignore (it says so in `expect`)
  accepted   exit 0 where an error was expected (silently accepted nonsense)
  misnamed   one error line, but not naming the problem (refused for another reason, by luck)
  traceback  an exception escaped (the command would print a traceback), or more than one error line
  hang       no answer within the case's time limit (SIGALRM)
  write      a file outside the output folder, or a stored file, changed (report/ and config.yaml excepted)

    PYTHONPATH=. python tests/reliability_sweep.py   # every case, a table of outcomes (about 5 minutes on 2 cores)
    python tests/reliability_sweep.py --list     # the cases
    PYTHONPATH=OTHER_CHECKOUT python tests/reliability_sweep.py --limit-gb 6   # another version's code, memory capped

tests/test_reliability_sweep.py runs the fast cases in CI and the whole sweep under `-m slow`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the synthetic store; `bench` comes from PYTHONPATH (the checkout under test)


@dataclass
class Case:
    name: str
    kind: str  # config | set | option | env | store | ticket | pickle | plugin
    argv: Callable[[Path], list[str]]  # given the case's folder (holding `out/` when `store` is set)
    expect: str = "error"  # "error" or "ok"
    needle: str = ""  # a word the error line must hold (else it counts as a traceback-quality failure)
    store: bool = False  # a copy of the synthetic results store under <dir>/out
    setup: Callable[[Path], None] | None = None
    env: dict = field(default_factory=dict)
    seconds: float = 60.0
    slow: bool = False  # builds a whole report: left out of the CI subset


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[:2] in (("out", "report"),) or rel.parts[:1] == ("never",):
            continue
        if p.is_symlink() or not p.is_file():
            out[str(rel)] = "special"
            continue
        out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(case: Case, base: Path, template: Path | None) -> tuple[str, str]:
    """(outcome, detail) of one case, run in this process in a fresh folder under `base`."""
    from bench.cli import main

    d = Path(tempfile.mkdtemp(prefix=case.name[:20].replace("/", "_") + ".", dir=base))
    (d / "outside").mkdir()
    (d / "outside" / "keep.txt").write_text("must survive\n")
    if case.store:
        shutil.copytree(template, d / "out")
    if case.setup:
        case.setup(d)
    before = _snapshot(d)
    argv = case.argv(d)
    old_env = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    err, out = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, case.seconds)
    outcome, detail = "", ""
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except _Timeout:
        outcome, detail = "hang", f"no answer in {case.seconds:g}s"
    except SystemExit as e:  # argparse's refusals: exit 2 with the usage and one error line
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - what would be a traceback
        outcome, detail = "traceback", f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not outcome:
        lines = [line for line in err.getvalue().strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line]
        if rc == 0:
            outcome = "ok" if case.expect == "ok" else "accepted"
            detail = (out.getvalue().strip().splitlines() or [""])[-1][:200]
        elif "Traceback" in err.getvalue() or len(errors) != 1:
            outcome, detail = "traceback", err.getvalue()[-300:]
        else:
            outcome, detail = "error", errors[0][:300]
            if case.needle and case.needle not in errors[0]:
                outcome, detail = "misnamed", f"error without {case.needle!r}: {errors[0][:250]}"
    after = _snapshot(d)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not k.endswith(("config.yaml", "timings.json", ".report-files.json")))
    if changed and outcome != "hang":
        outcome, detail = "write", f"changed: {changed[:5]}"
    shutil.rmtree(d, ignore_errors=True)
    return outcome, detail


# ---- the cases ------------------------------------------------------------------------------------------
def _config_file(content: str | bytes | None = None, special: str = ""):
    def setup(d: Path) -> None:
        path = d / "study.yaml"
        if special == "dev-zero":
            path.symlink_to("/dev/zero")
        elif special == "fifo":
            os.mkfifo(path)
        elif special == "dir":
            path.mkdir()
        elif special == "big":
            with open(path, "wb") as f:
                f.truncate(2 << 20)
        elif content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _config_case(name: str, content=None, special: str = "", needle: str = "") -> Case:
    return Case(name, "config", lambda d: ["config", str(d / "study.yaml")], needle=needle,
                setup=_config_file(content, special), seconds=20)


CONFIG_CASES = [
    _config_case("yaml-alias-bomb", "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                    "finetune:\n  steps: *d\n", needle="aliases"),
    _config_case("yaml-alias-scalar", "x: &v 3\nfinetune:\n  steps: *v\n", needle="aliases"),
    _config_case("yaml-merge-key", "b: &b {steps: 3}\nfinetune:\n  <<: *b\n"),
    _config_case("yaml-duplicate-field", "finetune:\n  steps: 3\n  steps: 4\n", needle="duplicate key"),
    _config_case("yaml-duplicate-section", "world:\n  seed: 1\nworld:\n  seed: 2\n", needle="duplicate key"),
    _config_case("yaml-hex", "finetune:\n  lr: 0x10\n", needle="decimal"),
    _config_case("yaml-octal-leading-zero", "matrix:\n  seeds: 010\n", needle="decimal"),
    _config_case("yaml-octal-0o", "matrix:\n  seeds: 0o10\n", needle="matrix.seeds"),
    _config_case("yaml-binary", "matrix:\n  seeds: 0b11\n", needle="decimal"),
    _config_case("yaml-sexagesimal", "finetune:\n  steps: 1:20\n", needle="decimal"),
    _config_case("yaml-underscore", "finetune:\n  steps: 1_000\n", needle="decimal"),
    _config_case("yaml-digits", "finetune:\n  steps: " + "9" * 5000 + "\n", needle="digits"),
    _config_case("yaml-float-underscore", "finetune:\n  lr: 1_0.5\n", needle="decimal"),
    _config_case("yaml-python-object", "world: !!python/object/apply:os.system ['true']\n", needle="invalid YAML"),
    _config_case("yaml-deep-nesting", "world: " + "[" * 5000 + "]" * 5000 + "\n"),
    _config_case("yaml-non-utf8", b"world:\n  scale: sm\xffoke\n", needle="UTF-8"),
    _config_case("yaml-null-section", "world:\n", needle="world"),
    _config_case("yaml-scalar-top", "just text\n", needle="mapping"),
    _config_case("yaml-int-key", "1: 2\n", needle="unknown key"),
    _config_case("yaml-nan-steps", "finetune:\n  steps: .nan\n", needle="finetune.steps"),
    _config_case("yaml-inf-lr", "finetune:\n  lr: .inf\n", needle="finetune.lr"),
    _config_case("yaml-float-seeds", "matrix:\n  seeds: 1.0e3\n", needle="matrix.seeds"),
    _config_case("yaml-ladder-near-1", "find:\n  sparsities: [0.5, 0.9999999]\n", needle="find.sparsities"),
    _config_case("yaml-ladder-near-0", "find:\n  sparsities: [1e-9, 0.5]\n", needle="find.sparsities"),
    _config_case("yaml-tabs", "world:\n\tseed: 1\n", needle="invalid YAML"),
    _config_case("config-dev-zero", special="dev-zero", needle="a device"),
    _config_case("config-fifo", special="fifo", needle="a FIFO"),
    _config_case("config-directory", special="dir", needle="directory"),
    _config_case("config-2mb", special="big", needle="bytes"),
]


def _set_case(name: str, *items: str, command: str = "plan", needle: str = "", expect: str = "error") -> Case:
    args = [a for item in items for a in ("--set", item)]
    return Case(name, "set", lambda d: [command, "smoke", *args] + (["--out", str(d / "never")] if command != "plan" else []),
                needle=needle, expect=expect, seconds=60)


SET_CASES = [
    _set_case("set-digits", "finetune.steps=" + "7" * 5000, needle="digits"),
    _set_case("set-hex-lr", "finetune.lr=0x10", needle="decimal"),
    _set_case("set-octal-seeds", "matrix.seeds=010", needle="decimal"),
    _set_case("set-alias", "finetune.steps=*a", needle="alias"),
    _set_case("set-anchor-list", "finetune.betas=&a [0.9, 0.98]", expect="ok"),  # an anchor alone is harmless
    _set_case("set-ladder-near-1", "find.sparsities=0.5,0.9999999", needle="find.sparsities"),
    _set_case("set-ladder-near-0", "find.sparsities=1e-9,0.5", needle="find.sparsities"),
    _set_case("set-matrix-near-1", "matrix.sparsities=0.99999", needle="matrix.sparsities"),
    _set_case("set-seeds-billion", "matrix.seeds=1000000000", needle="would make"),
    _set_case("set-dense-seeds-billion", "matrix.dense_seeds=1000000000", needle="would make"),
    _set_case("set-imp-fraction-tiny", "find.hparams.imp.mode=of_remaining", "find.hparams.imp.prune_fraction=1e-9",
              needle="rounds"),
    _set_case("set-imp-original-tiny", "find.hparams.imp.mode=of_original", "find.hparams.imp.prune_fraction=1e-9",
              needle="rounds"),
    _set_case("set-imp-rounds-huge", "find.hparams.imp.mode=of_remaining", "find.hparams.imp.rounds=100000000",
              needle="rounds"),
    _set_case("set-imp-fraction-hex", "find.hparams.imp.prune_fraction=0x1", needle="decimal"),
    _set_case("set-lr-1e400", "finetune.lr=1e400", needle="finetune.lr"),
    _set_case("set-steps-float-exp", "finetune.steps=1e3", needle="finetune.steps"),
    _set_case("set-device-mps", "backbone.device=mps", command="pretrain", needle="MPS"),
    _set_case("set-device-cuda7", "backbone.device=cuda:7", command="pretrain", needle="CUDA"),
    _set_case("set-plugin-missing", "find.plugins=no_such_module_xyz", needle="cannot import"),
    _set_case("set-name-nul", "name=a\x00b", needle="name"),
    _set_case("set-name-empty", "name=", needle="name"),
    _set_case("set-tasks-repeated", "matrix.tasks=vqa,vqa", needle="repeated"),
    _set_case("set-sources-unicode", "matrix.sources=imp:vqá", needle="source"),
    _set_case("set-world-seed-digits", "world.seed=" + "1" * 200, needle="digits"),
]

OPTION_CASES = [
    Case("out-empty", "option", lambda d: ["run", "smoke", "--out", ""], needle="--out"),
    Case("out-blank", "option", lambda d: ["run", "smoke", "--out", "  "], needle="--out"),
    Case("world-seed-negative", "option", lambda d: ["world", "--out", str(d / "never"), "--seed", "-1"],
         needle="--seed"),
    Case("seeds-octal-option", "option", lambda d: ["plan", "smoke", "--seeds", "010"], needle="decimal"),
    Case("seeds-billion-option", "option", lambda d: ["plan", "smoke", "--seeds", "1000000000"], needle="would make"),
    Case("seeds-digits-option", "option", lambda d: ["plan", "smoke", "--seeds", "9" * 400], needle="digits"),
    Case("sparsities-near-1-option", "option", lambda d: ["plan", "smoke", "--sparsities", "0.9999999"],
         needle="matrix.sparsities"),
    Case("only-nope", "option", lambda d: ["run", "smoke", "--only", "nope", "--out", str(d / "never")],
         needle="invalid choice"),
    Case("ascii-output", "env", lambda d: ["plan", "smoke"], expect="ok", env={"PYTHONIOENCODING": "ascii"}),
    Case("report-plan-dotdot", "option", lambda d: ["report", str(d / "out"), "--plan", "../../outside/keep"],
         store=True, needle="plan"),
    Case("report-plan-unknown", "option", lambda d: ["report", str(d / "out"), "--plan", "abc"], store=True,
         needle="abc"),
    Case("report-plans-all-none", "option", lambda d: ["report", str(d / "out"), "--plans", "all"], store=True,
         needle="no plan manifests"),
    Case("report-no-store", "option", lambda d: ["report", str(d / "nowhere")], needle="nowhere"),
]


# -- store files: a copy of the synthetic results store, one file damaged, then `report`
def _edit_first_record(**fields):
    def setup(d: Path) -> None:
        path = sorted((d / "out").glob("runs/*/record.json"))[0]
        rec = json.loads(path.read_text())
        for k, v in fields.items():
            if v is _DROP:
                rec.pop(k, None)
            else:
                rec[k] = v
        path.write_text(json.dumps(rec))
    return setup


_DROP = object()


def _replace_first_record(kind: str, text: str = ""):
    def setup(d: Path) -> None:
        path = sorted((d / "out").glob("runs/*/record.json"))[0]
        path.unlink()
        if kind == "dev-zero":
            path.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "big":
            with open(path, "wb") as f:
                f.truncate(300 << 20)
        else:
            path.write_text(text)
    return setup


def _report(name: str, setup, needle: str = "", expect: str = "error", slow: bool = False) -> Case:
    return Case(name, "store", lambda d: ["report", str(d / "out"), "--quiet"], store=True, setup=setup,
                needle=needle, expect=expect, slow=slow or expect == "ok")


RECORD_CASES = [
    _report("record-dev-zero", _replace_first_record("dev-zero"), "a device"),
    _report("record-fifo", _replace_first_record("fifo"), "a FIFO"),
    _report("record-directory", _replace_first_record("dir"), "directory"),
    _report("record-300mb", _replace_first_record("big"), "bytes"),
    _report("record-digits", _replace_first_record("text", '{"run_id": "x", "status": "done", "seed": '
                                                   + "9" * 5000 + "}"), "digits"),
    _report("record-not-json", _replace_first_record("text", "not json"), "malformed JSON"),
    _report("record-list", _replace_first_record("text", "[1, 2]"), "JSON object"),
    _report("record-truncated", _replace_first_record("text", '{"run_id": "x", "sta'), "malformed JSON"),
    _report("record-nested-deep", _replace_first_record("text", "[" * 100000 + "]" * 100000), "record.json"),
    _report("record-value-nan", _edit_first_record(value=float("nan")), "finite"),
    _report("record-value-1e308", _edit_first_record(value=1e308), "[0, 100]"),
    _report("record-value-negative", _edit_first_record(value=-3.0), "[0, 100]"),
    _report("record-value-str", _edit_first_record(value="high"), "numbers"),
    _report("record-steps-factor-str", _edit_first_record(steps_factor="x"), "steps_factor"),
    _report("record-steps-factor-zero", _edit_first_record(steps_factor=0), "steps_factor"),
    _report("record-steps-factor-list", _edit_first_record(steps_factor=[2]), "steps_factor"),
    _report("record-seed-float", _edit_first_record(seed=1.5), "seed"),
    _report("record-seed-huge", _edit_first_record(seed=2**80), "seed"),
    _report("record-metric-list", _edit_first_record(metric=["accuracy"]), "metric"),
    _report("record-metric-other", _edit_first_record(metric="bleu"), "metric"),
    _report("record-reason-object", _edit_first_record(reason={"x": 1}), "reason"),
    _report("record-env-list", _edit_first_record(env=[1]), "env"),
    _report("record-device-list", _edit_first_record(env={"device": ["cpu"]}), "env.device"),
    _report("record-metrics-str", _edit_first_record(metrics={"accuracy": "high"}), "metrics.accuracy"),
    _report("record-metrics-list", _edit_first_record(metrics=[1]), "metrics"),
    _report("record-backbone-dotdot", _edit_first_record(backbone="../../outside/x"), "backbone"),
    _report("record-task-abs", _edit_first_record(task="/tmp/x"), "task"),
    _report("record-source-dotdot", _edit_first_record(source="../x"), "source"),
    _report("record-source-html", _edit_first_record(source="<script>"), "source"),
    _report("record-status-maybe", _edit_first_record(status="maybe"), "status"),
    _report("record-sparsity-1.5", _edit_first_record(sparsity=1.5), "sparsity"),
    _report("record-sparsity-str", _edit_first_record(sparsity="x"), "sparsity"),
    _report("record-chance-huge", _edit_first_record(chance=1e9), "chance"),
    _report("record-no-task", _edit_first_record(task=_DROP), "task"),
    _report("record-html-reason", _edit_first_record(status="failed", reason="<script>alert(1)</script>"),
            expect="ok"),
    _report("record-html-device", _edit_first_record(env={"device": "<img src=x onerror=alert(1)>"}), expect="ok"),
]


def _manifest(edit=None, last: str | None = None, special: str = ""):
    def setup(d: Path) -> None:
        out = d / "out"
        cells, runs = [], []
        for path in sorted(out.glob("runs/*/record.json")):
            rec = json.loads(path.read_text())
            runs.append(rec["run_id"])
            cells.append({"run": rec["run_id"], "source": rec["source"], "sparsity": rec["sparsity"],
                          "task": rec["task"], "seed": rec["seed"], "steps_factor": 1})
        m = {"plan": "p0", "name": "synth", "config": {}, "searches": {}, "runs": runs, "cells": cells}
        (out / "plans").mkdir()
        path = out / "plans" / "p0.json"
        if special == "fifo":
            os.mkfifo(path)
        elif special == "dev-zero":
            path.symlink_to("/dev/zero")
        else:
            path.write_text(edit(m) if edit else json.dumps(m))
        (out / "plans" / "LAST").write_text(last if last is not None else "p0\n")
    return setup


def _cell(**fields):
    def edit(m):
        for k, v in fields.items():
            if v is _DROP:
                m["cells"][0].pop(k)
            else:
                m["cells"][0][k] = v
        return json.dumps(m)
    return edit


MANIFEST_CASES = [
    _report("manifest-list", _manifest(lambda m: json.dumps([m])), "plan manifest"),
    _report("manifest-truncated", _manifest(lambda m: json.dumps(m)[:40]), "malformed JSON"),
    _report("manifest-cell-sparsity-str", _manifest(_cell(sparsity="abc")), "cells[0].sparsity"),
    _report("manifest-cell-no-source", _manifest(_cell(source=_DROP)), "cells[0].source"),
    _report("manifest-cell-source-dotdot", _manifest(_cell(source="../x")), "cells[0].source"),
    _report("manifest-cell-seed-list", _manifest(_cell(seed=[1])), "cells[0].seed"),
    _report("manifest-cell-steps-str", _manifest(_cell(steps_factor="2")), "steps_factor"),
    _report("manifest-cell-not-object", _manifest(lambda m: json.dumps({**m, "cells": [1]})), "cells[0]"),
    _report("manifest-cells-str", _manifest(lambda m: json.dumps({**m, "cells": "x"})), "cells"),
    _report("manifest-runs-int", _manifest(lambda m: json.dumps({**m, "runs": [1]})), "runs[0]"),
    _report("manifest-runs-dotdot", _manifest(lambda m: json.dumps({**m, "runs": ["../../outside"]})), "run id"),
    _report("manifest-searches-list", _manifest(lambda m: json.dumps({**m, "searches": [1]})), "searches"),
    _report("manifest-config-list", _manifest(lambda m: json.dumps({**m, "config": [1]})), "plan manifest"),
    _report("manifest-plan-dotdot", _manifest(lambda m: json.dumps({**m, "plan": "../x"})), "plan"),
    _report("manifest-fifo", _manifest(special="fifo"), "a FIFO"),
    _report("manifest-dev-zero", _manifest(special="dev-zero"), "a device"),
    _report("manifest-digits", _manifest(lambda m: json.dumps(m)[:-1] + ', "n": ' + "1" * 5000 + "}"), "digits"),
    _report("last-garbage", _manifest(last="../../etc/passwd\n"), "plan hash"),
    _report("last-empty", _manifest(last=""), "LAST"),
]


def _file_in_store(rel: str, text: str = "", special: str = ""):
    def setup(d: Path) -> None:
        path = d / "out" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if special == "fifo":
            os.mkfifo(path)
        elif special == "dev-zero":
            path.symlink_to("/dev/zero")
        else:
            path.write_text(text)
    return setup


BOOKKEEPING_CASES = [
    _report("timings-list", _file_in_store("timings.json", "[1, 2]"), expect="ok"),
    _report("timings-infinity", _file_in_store("timings.json", '{"matrix": Infinity, "last_total_s": 2}'), expect="ok"),
    _report("timings-fifo", _file_in_store("timings.json", special="fifo"), expect="ok"),
    _report("report-files-non-string", _file_in_store("report/.report-files.json", '{"files": [[1], 2, null]}'),
            expect="ok"),
    _report("report-files-outside", _file_in_store("report/.report-files.json",
                                                   '{"files": ["../../outside/keep.txt", "/etc/hostname"]}'), expect="ok"),
    _report("report-files-not-list", _file_in_store("report/.report-files.json", '{"files": 5}'), expect="ok"),
    _report("config-yaml-alias", _file_in_store("config.yaml", "a: &a 1\nb: *a\n"), needle="alias"),
    _report("config-yaml-dev-zero", _file_in_store("config.yaml", special="dev-zero"), needle="a device"),
]


def _world(text: str = "", special: str = ""):
    def setup(d: Path) -> None:
        w = d / "out" / "world"
        w.mkdir(parents=True)
        if special == "dev-zero":
            (w / "MANIFEST.json").symlink_to("/dev/zero")
        elif special == "fifo":
            os.mkfifo(w / "MANIFEST.json")
        else:
            (w / "MANIFEST.json").write_text(text)
    return setup


WORLD_CASES = [
    Case(f"world-manifest-{name}", "store", lambda d: ["world", "--out", str(d / "out" / "world")], setup=_world(*spec),
         needle=needle, seconds=30)
    for name, spec, needle in [
        ("list", ("[1, 2]",), "found list"), ("truncated", ('{"seed": 0, "sca',), "malformed JSON"),
        ("seed-str", ('{"seed": "0", "scale": "smoke", "version": 1}',), "seed"),
        ("counts-list", ('{"seed": 0, "scale": "smoke", "version": 1, "counts": [1]}',), "counts"),
        ("dev-zero", ("", "dev-zero"), "not a toyland world"), ("fifo", ("", "fifo"), "not a toyland world"),
        ("digits", ('{"seed": ' + "1" * 3000 + "}",), "digits"),
    ]
]


# -- tickets and pickles
def _ticket(kind: str):
    def setup(d: Path) -> None:
        path = d / "sparsity-0.50.safetensors"
        if kind == "dev-zero":
            path.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "header-huge":
            path.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
        elif kind == "header-digits":
            header = b'{"__metadata__": {"format": "ticketbench-ticket", "n": ' + b"9" * 5000 + b"}}"
            path.write_bytes(struct.pack("<Q", len(header)) + header)
        elif kind == "garbage":
            path.write_bytes(os.urandom(256))
        else:
            path.write_bytes(b"")
    return setup


def _ticket_in_folder(kind: str):
    def setup(d: Path) -> None:
        (d / "t" / "imp__vqa").mkdir(parents=True)
        _ticket(kind)(d / "t" / "imp__vqa")
    return setup


TICKET_CASES = [
    Case(f"ticket-{k}", "ticket", lambda d: ["tickets", "show", str(d / "sparsity-0.50.safetensors")],
         setup=_ticket(k), needle="sparsity-0.50", seconds=60)
    for k in ("dev-zero", "fifo", "header-huge", "header-digits", "garbage", "empty")
] + [
    Case("tickets-ls-fifo", "ticket", lambda d: ["tickets", "ls", str(d / "t")], setup=_ticket_in_folder("fifo"),
         expect="ok", seconds=60),  # ls lists what it can read and marks the rest with '!'

    Case("tickets-ls-dev-zero", "ticket", lambda d: ["tickets", "ls", str(d / "t")],
         setup=_ticket_in_folder("dev-zero"), expect="ok", seconds=60),
]


def _memo_bomb() -> bytes:
    data = b"\x80\x02]K\x01aq\x00"
    for i in range(1, 60):
        data += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return data + b"."


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch outside/pwned",))


def _pickle_case(name: str, payload: bytes | None, special: str = "", needle: str = "") -> Case:
    def setup(d: Path) -> None:
        path = d / "refs(unc).p"
        if special == "dev-zero":
            path.symlink_to("/dev/zero")
        else:
            path.write_bytes(payload)
    return Case(name, "pickle", lambda d: ["__pickle__", str(d / "refs(unc).p")], setup=setup, needle=needle,
                seconds=20)


PICKLE_CASES = [
    _pickle_case("pickle-memo-bomb", _memo_bomb(), needle="unfolds"),
    _pickle_case("pickle-os-system", pickle.dumps(_Evil()), needle="refused"),
    _pickle_case("pickle-truncated", pickle.dumps({"a": list(range(100))})[:50], needle="not a valid"),
    _pickle_case("pickle-dev-zero", None, special="dev-zero", needle="a device"),
    _pickle_case("pickle-deep", b"\x80\x02" + b"]" * 200 + b"a" * 199 + b".", needle="refs"),
]


# -- plugins (entry points and modules)
def _plugin(entry: str, module_source: str, module: str):
    def setup(d: Path) -> None:
        (d / "plug").mkdir()
        (d / "plug" / f"{module}.py").write_text(module_source)
        info = d / "plug" / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        if entry:
            (info / "entry_points.txt").write_text(f"[ticketbench.methods]\n{entry} = {module}:method\n")
        sys.path.insert(0, str(d / "plug"))
        from tickets.registry import METHODS

        METHODS._entry_points_loaded = False
        METHODS.broken = {}
    return setup


PLUGIN_CASES = [
    Case("plugin-ep-named-imp", "plugin", lambda d: ["plan", "smoke"], expect="ok",
         setup=_plugin("imp", "method = object()\n", "sweep_evil_imp")),
    Case("plugin-ep-broken", "plugin", lambda d: ["plan", "smoke"], expect="ok",
         setup=_plugin("sweep_broken", "raise SyntaxError('oops')\n", "sweep_broken_mod")),
    Case("plugin-ep-broken-asked-for", "plugin", lambda d: ["plan", "smoke", "--set", "find.one_shot=sweep_broken2:vqa"],
         setup=_plugin("sweep_broken2", "raise RuntimeError('bad')\n", "sweep_broken_mod2"), needle="failed to load"),
    Case("plugin-module-nameerror", "plugin", lambda d: ["plan", "smoke", "--set", "find.plugins=sweep_nameerr"],
         setup=_plugin("", "x = undefined\n", "sweep_nameerr"), needle="NameError"),
    Case("plugin-module-sysexit", "plugin", lambda d: ["plan", "smoke", "--set", "find.plugins=sweep_exit"],
         setup=_plugin("", "import sys\nsys.exit(3)\n", "sweep_exit"), needle="sweep_exit"),
    Case("plugin-module-registers-imp", "plugin", lambda d: ["plan", "smoke", "--set", "find.plugins=sweep_regimp"],
         setup=_plugin("", "from dataclasses import dataclass\nfrom tickets.registry import register_method\n"
                           "@dataclass(frozen=True)\nclass H:\n    pass\n"
                           "@register_method('imp', H)\ndef method(ctx, hp):\n    return []\n", "sweep_regimp"),
         needle="already registered"),
]

CASES: list[Case] = (CONFIG_CASES + SET_CASES + OPTION_CASES + RECORD_CASES + MANIFEST_CASES + BOOKKEEPING_CASES
                     + WORLD_CASES + TICKET_CASES + PICKLE_CASES + PLUGIN_CASES)


def _pickle_main(argv: list[str]) -> int:
    """`__pickle__ PATH`: the RefCOCO reader's restricted unpickler, as the loader calls it."""
    from bench.core.errors import TicketbenchError
    from bench.core.safe_pickle import safe_load

    try:
        safe_load(argv[1])
    except TicketbenchError as e:
        print(f"ticketbench: error: {e}", file=sys.stderr)
        return 2
    return 0


def template_store(base: Path) -> Path:
    from test_reports_synth import make_store

    return make_store(base / "template")


def sweep(cases: list[Case], base: Path | None = None, verbose: bool = False) -> list[tuple[Case, str, str]]:
    import bench.cli

    main = bench.cli.main
    bench.cli.main = lambda argv: _pickle_main(argv) if argv[:1] == ["__pickle__"] else main(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cwd = os.getcwd()
    base = Path(base or tempfile.mkdtemp(prefix="ticketbench-sweep."))
    template = template_store(base)
    results = []
    path0 = list(sys.path)
    try:
        for case in cases:
            os.chdir(base)
            t0 = time.monotonic()
            outcome, detail = run_case(case, base, template)
            sys.path[:] = path0
            results.append((case, outcome, detail))
            if verbose:
                print(f"{outcome:10s} {time.monotonic() - t0:6.1f}s  {case.name}: {detail}", flush=True)
    finally:
        os.chdir(cwd)
        bench.cli.main = main
        from tickets.registry import METHODS

        METHODS._entry_points_loaded = False
        METHODS.broken = {}
    return results


def tally(results) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def main(argv: list[str]) -> int:
    if "--limit-gb" in argv:  # an address-space cap, so a code version that reads /dev/zero fails, not the machine
        import resource

        gb = float(argv[argv.index("--limit-gb") + 1])
        resource.setrlimit(resource.RLIMIT_AS, (int(gb * (1 << 30)), int(gb * (1 << 30))))
    if "--list" in argv:
        for c in CASES:
            print(f"{c.kind:8s} {c.name}")
        print(f"{len(CASES)} cases")
        return 0
    t0 = time.time()
    results = sweep(CASES, verbose=True)
    counts = tally(results)
    kinds = sorted({c.kind for c in CASES})
    print(f"\n{len(CASES)} cases ({', '.join(f'{k} {sum(c.kind == k for c in CASES)}' for k in kinds)}) on "
          f"{socket.gethostname()} in {time.time() - t0:.0f}s")
    for outcome in ("error", "ok", "misnamed", "accepted", "traceback", "hang", "write"):
        print(f"  {outcome:10s} {counts.get(outcome, 0)}")
    bad = [(c.name, o, d) for c, o, d in results if o not in ("error", "ok")]
    for name, o, d in bad:
        print(f"BAD {o}: {name}: {d}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
