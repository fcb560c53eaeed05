"""End to end: the smoke config through every stage, the output contract, resume and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.config import load_config
from bench.pipeline import run_pipeline

MATRIX_COLUMNS = ["backbone", "source", "method", "source_task", "sparsity", "task", "metric", "value", "seed",
                  "dense_value", "relative", "run_id"]


def _cli(*args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"ticketbench {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    run_pipeline(load_config("smoke"), out=str(out), quiet=True)
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def test_output_layout_and_matrix(smoke):
    cfg = load_config("smoke")
    assert (smoke / "world" / "MANIFEST.json").exists()
    (theta0,) = [p for p in (smoke / "pretrain").iterdir()]
    assert (theta0 / "DONE").exists() and (theta0 / "model.safetensors").exists()
    # θ0 keeps its pre-training heads; a pre-training ticket's model starts from them, not fresh.
    from bench.backbones import PretrainModel, load_backbone

    model = PretrainModel(load_backbone(theta0))
    assert (theta0 / "heads.safetensors").exists() and {"mlm", "itm"} <= set(model.loaded_heads)
    for source in cfg.find.sources:
        for s in cfg.find.sparsities:
            assert len(list(smoke.glob(f"tickets/*/imp__{source}/sparsity-{s:.2f}.safetensors"))) == 1
    records = _records(smoke)
    tasks, sources = len(cfg.matrix.tasks), len(cfg.find.sources) + len(cfg.find.one_shot) + 1
    expected = tasks * (sources * len(cfg.find.sparsities) + len(cfg.matrix.controls) + 1)
    # One record per distinct run: cells with identical tickets (omp:vqa at 50 % is imp:vqa's first round)
    # share one; the matrix still has a row per cell.
    from bench.runner.results import read_manifest

    cells = read_manifest(smoke)["cells"]
    assert len(cells) == expected and len(records) == len({c["run"] for c in cells}) <= expected
    assert all(r["status"] == "done" for r in records), [r.get("reason") for r in records if r["status"] != "done"]
    df = pd.read_csv(smoke / "report" / "matrix.csv")
    assert list(df.columns[: len(MATRIX_COLUMNS)]) == MATRIX_COLUMNS
    assert len(df) == expected
    dense = df[df.source == "dense"].set_index("task")["value"]
    row = df[df.source != "dense"].iloc[0]
    assert row.relative == pytest.approx(row.value / dense[row.task])


def test_records_and_manifest_say_what_made_them(smoke):
    from bench import __version__ as TICKETBENCH_VERSION
    from bench.core.provenance import git_commit
    from bench.runner.results import read_manifest
    from bench.tasks import TASKS

    for r in _records(smoke):
        assert r["task_version"] == TASKS.get(r["task"]).version
        assert r["env"]["commit"] == git_commit() != ""
    versions = read_manifest(smoke)["versions"]
    assert set(versions) == {"ticketbench", "torch", "transformers", "commit"}
    assert versions["torch"] != "unknown" and versions["ticketbench"] == TICKETBENCH_VERSION


def test_every_run_keeps_its_ticket_and_names_its_split(smoke):
    for r in _records(smoke):
        assert r["split"] and r["metric"] in r["metrics"]
        if r["source"] == "dense":
            continue
        audit = r["mask_audit"]
        assert audit["nonzero_pruned"] == 0 and audit["pruned"] > 0
        assert audit["trained_sparsity"] >= r["sparsity"] - 1e-6


def test_vqa_predictions_in_the_official_format(smoke):
    (rec,) = [r for r in _records(smoke) if r["task"] == "vqa" and r["source"] == "dense"]
    preds = json.loads((smoke / "runs" / rec["run_id"] / "predictions.json").read_text())
    assert preds and set(preds[0]) == {"question_id", "answer"} and isinstance(preds[0]["question_id"], int)


def test_rerun_is_fully_cached(smoke, capsys):
    stamps = {r["run_id"]: r["finished_at"] for r in _records(smoke)}
    t0 = time.perf_counter()
    run_pipeline(load_config("smoke"), out=str(smoke), quiet=True)
    assert {r["run_id"]: r["finished_at"] for r in _records(smoke)} == stamps
    assert time.perf_counter() - t0 < 60


def test_a_noop_rerun_reads_no_data_and_keeps_the_report(smoke, monkeypatch):
    from bench.core import statcache
    from bench.runner.study import Study

    monkeypatch.setattr(statcache, "RACY_S", 0.0)  # the fixture's files were written seconds ago
    run_pipeline(load_config("smoke"), out=str(smoke), quiet=True)  # digests remembered, the report marked
    readme = smoke / "report" / "README.md"
    built = readme.stat().st_mtime_ns

    def read(*a):
        raise AssertionError("a data file was read on a no-op re-run")

    monkeypatch.setattr(Study, "_data_digest", read)
    run_pipeline(load_config("smoke"), out=str(smoke), quiet=True)
    assert readme.stat().st_mtime_ns == built  # nothing in the store changed: the report was kept
    record = next(smoke.glob("runs/*/record.json"))
    os.utime(record, ns=(built, built - 10**9))  # a store file changed: the report is built again
    run_pipeline(load_config("smoke"), out=str(smoke), quiet=True)
    assert readme.stat().st_mtime_ns != built


def test_report_figures_and_ticket_tools_from_the_cli(smoke):
    report = smoke / "report"
    for name in ("accuracy_vs_sparsity.png", "transfer_heatmap_s50.png", "README.md", "matching_sparsity.md"):
        assert (report / name).exists(), name
    assert "imp:vqa" in _cli("tickets", "ls", str(smoke)).stdout
    a = next(smoke.glob("tickets/*/imp__vqa/sparsity-0.50.safetensors"))
    b = next(smoke.glob("tickets/*/imp__pretrain/sparsity-0.50.safetensors"))
    assert "sparsity" in _cli("tickets", "show", str(a)).stdout.lower()
    assert "jaccard" in _cli("tickets", "diff", str(a), str(b)).stdout.lower()
    _cli("report", str(smoke), "--quiet")
    # Any build but the pipeline's own unmarks the report: the next `run` builds it again (it may have had --compare).
    assert not (smoke / "report" / ".report-inputs.json").exists()
    _cli("figures", str(smoke), "--paper", "vl")
    listed = _cli("plans", str(smoke)).stdout.splitlines()
    last = (smoke / "plans" / "LAST").read_text().strip()
    assert any(line.startswith(f"* {last}  smoke") and "runs done" in line for line in listed)


def test_kill_during_the_matrix_then_resume(smoke, tmp_path):
    """kill -9 a real matrix run mid-way; re-running finishes it without recomputing finished pairs."""
    out = tmp_path / "resume"
    shutil.copytree(smoke, out, ignore=shutil.ignore_patterns("runs", "report"))
    args = ["matrix", "smoke", "--out", str(out), "--tasks", "snli_ve,gqa", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/*/record.json"))) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["run_id"]: r["finished_at"] for r in _records(out)}
    assert 5 <= len(before) < 48
    _cli(*args)
    after = {r["run_id"]: r["finished_at"] for r in _records(out)}
    from bench.runner.results import read_manifest

    assert len(after) == len(read_manifest(out)["runs"]) and all(after[k] == v for k, v in before.items())


@pytest.mark.parametrize("command", ["run", "world", "pretrain", "find", "matrix", "report", "figures", "tickets",
                                     "tasks", "presets", "config"])
def test_every_help_teaches(command):
    out = _cli(command, "--help").stdout
    assert "usage:" in out and "example" in out.lower()


def test_bad_input_is_one_line_without_traceback(tmp_path):
    p = _cli("run", "smoke", "--out", str(tmp_path / "x"), "--set", "finetune.stepz=3", check=False)
    assert p.returncode != 0 and "did you mean 'finetune.steps'" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli("run", "smoke", "--out", str(tmp_path / "x"), "--tasks", "vqq", check=False)
    assert p.returncode != 0 and "did you mean 'vqa'" in p.stderr and "Traceback" not in p.stderr
    p = _cli("run", "smoke", "--out", str(tmp_path / "x"), "--set", "backbone.preset=toy-unitr", check=False)
    assert p.returncode != 0 and "toy-uniter" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.ray
def test_real_pairs_on_a_local_ray_instance(smoke, tmp_path):
    """The real fine-tuning pair function runs as Ray tasks on a real local instance (2 CPUs)."""
    out = tmp_path / "ray"
    shutil.copytree(smoke, out, ignore=shutil.ignore_patterns("runs", "report"))
    run_pipeline(load_config("smoke"), out=str(out), stages=["matrix"], tasks=["snli_ve"],
                 sources=["dense", "imp:snli_ve"], executor="ray", workers=2, quiet=True)
    records = _records(out)
    assert len(records) == 3 and all(r["status"] == "done" for r in records)
    assert all(r["mask_audit"]["nonzero_pruned"] == 0 for r in records)


def test_a_new_method_runs_through_find_matrix_and_compare(smoke, tmp_path, monkeypatch):
    """The plugin template of docs/TICKETS.md, imported through find.plugins, is searched, fine-tuned and
    ranked against the baselines by `report --compare` like any built-in method."""
    import pandas as pd
    from test_tickets_methods import _plugin_source

    from reports import build_report

    # Its own name: the tickets tests register the docs' "taylor" in this process already.
    (tmp_path / "snipdoc_plugin.py").write_text(_plugin_source().replace('"taylor"', '"snipdoc"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "new"
    shutil.copytree(smoke, out, ignore=shutil.ignore_patterns("runs", "report", "tickets"))
    sources = ["dense", "imp:snli_ve", "snipdoc:snli_ve", "omp:snli_ve", "pretrained_magnitude"]
    cfg = load_config("smoke", ["find.plugins=snipdoc_plugin", "find.sources=snli_ve",
                                "find.one_shot=snipdoc:snli_ve,omp:snli_ve,pretrained_magnitude",
                                "matrix.controls=", "matrix.baselines="])
    run_pipeline(cfg, out=str(out), stages=["find", "matrix"], tasks=["snli_ve"], sources=sources, quiet=True)
    assert {r["source"] for r in _records(out)} == set(sources)
    report = build_report(out, compare="snipdoc", config=cfg)
    summary = pd.read_csv(report / "compare_snipdoc_summary.csv")
    assert len(summary) > 0 and (report / "compare_snipdoc.png").exists()


@pytest.mark.parametrize("config", ["toyland-vilt", "toyland-lxmert"])
def test_other_backbones_pretrain_on_toyland(config, tmp_path):
    """The three-backbone configs get through world and pre-training (both phases); toy-vilt reads the
    pictures at its own 64-pixel size, not ViLT's 384."""
    cfg = load_config(config, ["world.scale=smoke", "pretrain.steps=4", "pretrain.batch_size=4"])
    run_pipeline(cfg, tmp_path, stages=("world", "pretrain"), quiet=True)
    (metrics,) = tmp_path.glob("pretrain/*/metrics.json")
    m = json.loads(metrics.read_text())
    # toy-vilt first tags images for tag_fraction 0.8 × 4 steps (its stand-in for ViLT's ViT init).
    tag = [3] if config == "toyland-vilt" else []
    assert [p["steps"] for p in m["phases"]] == tag + [2, 2] and m["history"][-1]["step"] == 4 + sum(tag)
    if config == "toyland-vilt":
        from bench.runner.study import Study

        store = Study(cfg, tmp_path).store
        assert tuple(store.get(store.ids()[0]).pixel_values.shape) == (3, 64, 64)
