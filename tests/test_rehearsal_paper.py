"""Full-size rehearsals of the paper configs: `ticketbench run paper-<family>` end to end on CPU, offline,
until the report.

Real-size backbones from random weights in the released checkpoint layouts (tests/fixtures/checkpoints.py:
UNITER's official key names, LXMERT / ViLT `save_pretrained` folders, WordPiece tokenizers of the real
vocabulary sizes), the miniature release of every task and image layout (tests/fixtures/releases.py
`write_release`), `HF_HUB_OFFLINE=1` and an empty HF cache. The papers' configs run as written except for
the limits in `LIMITS` (`--set` overrides: one or two steps per stage, a handful of examples, one
sparsity and one seed), so every stage, task head, search and report path runs at full width.

Breadth: `REHEARSE=full` (`tox -e rehearse`) fine-tunes every source of the config on every task for all
four configs. Otherwise (the README's `pytest -q`, CI) only UNITER and BERT run, with every task and search
kind but three sources (`CI_SOURCES`, `CI_SOURCES_BERT`), to stay within CI's time budget (measurements:
docs/ARCHITECTURE.md, "Full-size rehearsals" and "The BERT study"). paper-bert reads the text world's files
(GLUE's TSV folders, SQuAD v1.1 JSON, the raw corpus) with a bert-base-uncased-sized BertForMaskedLM.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.checkpoints import VOCAB_SIZE, hf_checkpoint, uniter_checkpoint, wordpiece_tokenizer
from fixtures.releases import HAVE_IMG_DB, write_release

from bench.config import load_config
from bench.core.errors import ConfigError
from bench.core.source import Source
from bench.plan import build_plan
from bench.runner.results import read_manifest
from bench.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("REHEARSE", "") == "full"

# The rehearsal's limits: everything else is the paper config's own (recipes' learning rates, accumulation,
# text length, IMP's hyperparameters, sources, tasks, controls). find.steps is left alone: task searches
# take finetune.steps, and the `:pretrain` search half of pretrain.steps, as in a real run.
# The recipes' token budgets stay (the miniature splits fill a micro-batch with a handful of examples);
# their accumulation (up to 5 micro-batches a step) is cut to one.
LIMITS = ("finetune.steps=1", "finetune.batch_size=2", "finetune.grad_accum=1", "finetune.eval_batch_size=4",
          "finetune.dev_limit=4",
          "pretrain.steps=2", "pretrain.batch_size=2",
          "find.sparsities=0.1", "matrix.control_sparsities=0.1", "matrix.seeds=1",
          # batches of two examples: the configs' loader workers (execution only; tests/test_host_prep.py) would
          # cost more forking than they save here
          "finetune.loader_workers=0")
# CI breadth: a search on the pre-training mix (the checkpoint's heads, MLM/ITM/MRM at 2048-d), one on a
# task, and dense, fine-tuned on all seven tasks.
CI_SOURCES = "dense,imp:pretrain,imp:vqa"
# paper-bert's CI breadth: the MLM search (the checkpoint's own MLM head) and one GLUE task's, on one task of
# each head kind — classification, regression, span extraction (all ten at REHEARSE=full; CI's time budget).
CI_SOURCES_BERT = "dense,imp:pretrain,imp:sst2"
CI_TASKS_BERT = "sst2,stsb,squad"


def _world(family: str, release: dict) -> list[str]:
    if family == "uniter":
        return [f"world.features={release['img_db']}"]
    if family == "lxmert":  # LXMERT released no Flickr30k or VCR features: the user's own, by world.images
        return [f"world.features={release['lxmert']}",
                f"world.images=flickr30k={release['lxmert_flickr30k']},vcr={release['lxmert_vcr']}"]
    if family == "bert":  # no images; paper-bert names its matrix sparsities, cut to the rehearsal's one
        return ["matrix.sparsities=0.1"]
    return [f"world.features={release['pictures']}"]


def rehearse(tmp_path: Path, family: str, full: bool) -> tuple[Path, list[str]]:
    """Write the release and the checkpoint, run `ticketbench run paper-<family>`; the output folder and overrides."""
    if family == "bert":  # the GLUE folders, SQuAD v1.1 JSON and raw corpus as released: the text world's files
        from bench.data.textworld import generate_text_world

        generate_text_world(tmp_path / "data", scale="smoke")
        release = {"root": tmp_path / "data"}
    else:
        release = write_release(tmp_path / "data", feat_dim=2048)
    tok = wordpiece_tokenizer(tmp_path / "tokenizer", VOCAB_SIZE[family], lowercase=family != "uniter")
    if family == "uniter":  # uniter-base.pt as released; its tokenizer (bert-base-cased's size) given by path
        checkpoint = uniter_checkpoint(tmp_path / "uniter-base.pt", tok)
    else:  # save_pretrained folders carry their tokenizer; backbone.tokenizer is given all the same
        checkpoint = hf_checkpoint(tmp_path / family, family, tok)
    del tok
    overrides = [f"world.data_root={release['root']}", *_world(family, release), f"backbone.checkpoint={checkpoint}",
                 f"backbone.tokenizer={tmp_path / 'tokenizer'}", *LIMITS] + ([] if full else [f"matrix.sources={CI_SOURCES_BERT if family == 'bert' else CI_SOURCES}"]
                                     + ([f"matrix.tasks={CI_TASKS_BERT}"] if family == "bert" else []))
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"
    args = [sys.executable, "-m", "bench", "run", f"paper-{family}", "--out", str(out), "--quiet"]
    proc = subprocess.run(args + [a for o in overrides for a in ("--set", o)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    # The one thing allowed there: `datasets`' Arrow cache of the local files the text tasks read (load_dataset
    # of csv / json / parquet / text builders); anything else would mean something reached the hub.
    written = [p for p in hf_home.rglob("*") if p.is_file() and p.relative_to(hf_home).parts[0] != "datasets"]
    assert not written, f"the HF cache was written: something reached the hub ({written[:3]})"
    assert all(p.name in ("csv", "json", "parquet", "text") or p.suffix == ".lock" for p in (hf_home / "datasets").glob("*"))
    return out, overrides


def check_report(out: Path, family: str, overrides: list[str]) -> None:
    plan = build_plan(load_config(f"paper-{family}", overrides))
    theta0 = json.loads(next((out / "pretrain").glob("*/backbone.json")).read_text())
    assert theta0["config"]["hidden_size"] == 768 and theta0["config"]["vocab_size"] == VOCAB_SIZE[family]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/record.json")]
    failed = [f"{r['source']} on {r['task']}: {r.get('reason')}" for r in records if r["status"] != "done"]
    assert not failed, failed
    # Cells whose tickets are identical share one run (content-addressed): at full breadth with one step a
    # search, IMP's one round on VQA is OMP on VQA, so the manifest's runs, not its cells, are the records.
    manifest = read_manifest(out)
    assert len(manifest["cells"]) == len(plan.cells)
    assert {r["run_id"] for r in records} == set(manifest["runs"]) == {c["run"] for c in manifest["cells"]}
    assert {r["task"] for r in records} == set(plan.config.matrix.tasks)
    assert all(r["mask_audit"]["nonzero_pruned"] == 0 for r in records)
    with open(out / "report" / "matrix.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(plan.cells) and (out / "report" / "README.md").is_file()


@pytest.mark.rehearse
@pytest.mark.parametrize("family", [
    "uniter",
    pytest.param("lxmert", marks=pytest.mark.skipif(not FULL, reason="full-size LXMERT (~9 min, over CI's budget): tox -e rehearse")),
    pytest.param("vilt", marks=pytest.mark.skipif(not FULL, reason="full-size ViLT (~11 min, over CI's budget): tox -e rehearse")),
    "bert",
])
def test_paper_config_rehearsal(tmp_path, family):
    if family == "uniter" and not HAVE_IMG_DB:
        pytest.skip("UNITER's img_db needs lmdb and msgpack (pip install 'ticketbench[test]')")
    out, overrides = rehearse(tmp_path, family, FULL)
    check_report(out, family, overrides)


# ---- checks before work (cheap: CI runs them whatever the breadth) --------------------------------------
@pytest.mark.parametrize("family", ["uniter", "lxmert", "vilt", "bert"])
def test_paper_configs_plan_only_pairs_their_backbone_can_do(family):
    plan = build_plan(load_config(f"paper-{family}"))
    image_input = plan.image_input
    named = set(plan.config.matrix.tasks) | {s.source.objective for s in plan.searches} - {"pretrain"}
    assert all(TASKS.get(t).unsupported(image_input) is None for t in named)
    # The pre-training source of a real backbone (no toy phases) trains half of pretrain.steps per IMP round.
    assert plan.search_settings(Source.parse("imp:pretrain")).steps == plan.config.pretrain.steps // 2


@pytest.mark.parametrize("where", ["matrix.tasks=vqa,refcoco_plus", "find.sources=vqa,refcoco_plus",
                                   "find.one_shot=omp:refcoco_plus"])
def test_a_pair_the_backbone_cannot_do_is_refused_before_any_work(where):
    with pytest.raises(ConfigError) as e:
        build_plan(load_config("paper-vilt", [where]))
    msg = str(e.value)
    assert "backbone vilt-b32 cannot do refcoco_plus: it scores image regions and a pixels backbone has none" in msg
    assert "\n" not in msg
