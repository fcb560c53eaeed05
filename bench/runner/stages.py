"""The pipeline's stages, each taking the plan: world → pretrain → find → matrix → report.

Every stage writes content-addressed outputs (keys from the plan) and skips what is stored, so
re-running resumes. `bench.pipeline.run_pipeline` runs them in order; the matrix stage leaves the plan's manifest, which
the results object (`ticketbench.load_results`, reports/store.py) reads back.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from bench.backbones import create_backbone
from bench.config import to_dict
from bench.core.errors import TicketbenchError
from bench.core.io import MAX_STORE_BYTES, atomic_write_json, atomic_write_text, file_hash, read_json
from bench.core.layout import Layout
from bench.core.source import PRETRAIN
from bench.core.validate import check_world_manifest
from bench.data import textworld
from bench.data.textworld import generate_text_world
from bench.data.toyland import generate_world
from bench.data.toyland import world as toyland
from bench.plan import Plan
from bench.runner.adaptive import run_waves
from bench.runner.executors import FailedRun, run_pairs
from bench.runner.executors.local import visible_gpus
from bench.runner.finetune import finetune_pair, make_pairs
from bench.runner.progress import say, step_lines
from bench.runner.results import write_manifest
from bench.runner.search import SearchJob, pretrain_loss_fn, run_search_job, source_objective
from bench.runner.store import RoutedStore, RunStore
from bench.runner.study import Study, environment
from bench.training import OnStep, train


# ---- world ------------------------------------------------------------------------------------
def stage_world(plan: Plan, study: Study, quiet: bool = False) -> Path:
    """Generate toyland into <out>/world (skipped when its manifest exists with the same settings)."""
    w = plan.config.world
    if w.source != "toyland":
        if not study.data_root.exists():
            raise TicketbenchError(f"world.data_root {study.data_root} does not exist")
        return study.data_root
    world = study.layout.inside(study.layout.world)
    manifest = world / "MANIFEST.json"
    text = plan.image_input == "none"  # a text-only backbone (the BERT study) reads the text world
    version = textworld.VERSION if text else toyland.VERSION
    if manifest.exists():
        m = check_world_manifest(manifest, read_json(manifest, MAX_STORE_BYTES))
        found, needed = m.get("kind", "toyland"), ("textworld" if text else "toyland")
        if m.get("version") != version or found != needed:
            raise TicketbenchError(
                f"{world} holds a {found} world of format version {m.get('version')}; this ticketbench writes version "
                f"{version}{'' if found == needed else f' of the {needed} world this backbone reads'}; use another --out "
                f"(or delete {world} and what was built on it)")
        if m.get("seed") == w.seed and m.get("scale") == w.scale:
            say(quiet, f"[world] cached: {world}")
            return world
        raise TicketbenchError(
            f"{world} holds a {found} world of scale {m.get('scale')} seed {m.get('seed')}, not "
            f"{w.scale} seed {w.seed}; use another --out")
    t0 = time.perf_counter()
    (generate_text_world if text else generate_world)(world, seed=w.seed, scale=w.scale)
    say(quiet, f"[world] {'textworld' if text else 'toyland'} ({w.scale}, seed {w.seed}) written to {world} "
                f"in {time.perf_counter() - t0:.1f}s")
    return world


# ---- pretrain ---------------------------------------------------------------------------------
def _feat_dim(plan: Plan, study: Study) -> int | None:
    """The image embedder's input width: the store's features (none for pixels or a text-only backbone)."""
    return None if plan.image_input in ("pixels", "none") else study.store.feat_dim


def stage_pretrain(plan: Plan, study: Study, quiet: bool = False) -> Path:
    """θ0: pre-train a toy preset on the world's captions (the plan's phases), or take a real checkpoint."""
    c = plan.config
    # Pre-trained here, θ0 is a function of its corpus too: a changed caption is a new θ0 (and so new
    # ticket and run ids downstream, which hash θ0's content).
    d = study.layout.inside(study.layout.theta0(plan.theta0_id(study.data_digest(PRETRAIN) if plan.phases else None)))
    if Layout.done(d).exists():
        say(quiet, f"[pretrain] cached: {d}")
        return d
    t0 = time.perf_counter()
    metrics: dict = {}
    if plan.phases:  # the corpus was read (and so checked) above, for θ0's folder name
        torch.set_num_threads(c.matrix.threads)  # θ0, like every number, independent of the machine's cores
        # Initial weights come from the global RNG: seed it, so θ0 does not depend on what ran before.
        torch.manual_seed(c.pretrain.seed)
        backbone = create_backbone(c.backbone.preset, vocab_path=study.data_root / "vocab.txt",
                                   tokenizer=c.backbone.tokenizer or None, feat_dim=_feat_dim(plan, study))
        model, examples, _, heads = source_objective(plan, study, backbone, "pretrain")
        history, seconds, done = [], 0.0, 0
        # Each phase is its own train() call, so each warms up and decays to 0 on its own.
        for k, phase in enumerate(plan.phases):
            log = train(model, pretrain_loss_fn(study, model, phase.objectives), examples,
                        plan.pretrain_settings(phase.steps, c.pretrain.seed + k),
                        device=study.device, head_prefixes=heads, loader_workers=c.finetune.loader_workers,
                        callbacks=() if quiet else [OnStep(step_lines(f"[pretrain] phase {k + 1}/{len(plan.phases)}"))])
            history += [{**r, "step": r["step"] + done, "phase": k} for r in log.history]
            seconds += log.seconds
            done += phase.steps
        metrics = {"history": history, "train_s": seconds,
                   "phases": [{"objectives": dict(p.objectives), "steps": p.steps} for p in plan.phases]}
        backbone = model.backbone
        # θ0 keeps the heads it was pre-trained with, as a released checkpoint does: pre-training tickets
        # then search on the objectives from θ0's trained heads, not from fresh ones every IMP round.
        backbone.pretrained_heads = model.head_state()
    else:
        # The image embedder's input follows the image store (minilm-uniter's is new, so any width works;
        # a checkpoint with another width fails with a one-line shape error).
        backbone = create_backbone(c.backbone.preset, checkpoint=c.backbone.checkpoint or None,
                                   tokenizer=c.backbone.tokenizer or None, feat_dim=_feat_dim(plan, study))
    backbone.to("cpu").save(d)
    atomic_write_json(d / "metrics.json", {**metrics, "env": environment(study.device),
                                           "config": to_dict(c)["pretrain"]})
    atomic_write_text(Layout.done(d), file_hash(d / "model.safetensors") + "\n")
    say(quiet, f"[pretrain] θ0 of {c.backbone.preset} written to {d} in {time.perf_counter() - t0:.1f}s")
    return d


def theta0_hash(theta0_dir: Path) -> str:
    return Layout.done(theta0_dir).read_text().strip()


def workers(plan: Plan) -> int:
    """matrix.workers, with 0 meaning one worker per visible GPU (one without GPUs)."""
    return plan.config.matrix.workers or max(1, len(visible_gpus()))


# ---- checks before work -----------------------------------------------------------------------
def check_inputs(study: Study, objectives) -> None:
    """Read every split the coming work trains and evaluates on (the reads are cached for in-process
    work), so bad data is one line naming file, field or id before any training starts — not a failed
    record after hours of it."""
    for objective in dict.fromkeys(objectives):
        study.data_digest(objective)  # reads the train and evaluation splits and the labels (or the corpus)


# ---- find -------------------------------------------------------------------------------------
def search_key(search) -> tuple:
    """A search's key among the plan's: (source, search replicate); `stage_find` returns roots by it."""
    return (search.source, search.search_seed)


def search_jobs(plan: Plan, study: Study, theta0_dir: Path) -> list[SearchJob]:
    """Every search of the plan as a job, bases before the searches derived from them. A search's id covers
    the data of its source objective (so naming the stored tickets loads that data); a derived search reads
    its own replicate's base tickets."""
    h, out = theta0_hash(theta0_dir), study.out
    data = {s.source: study.data_digest(s.source.objective) for s in plan.searches}
    ids = {search_key(s): plan.search_id(s, h, data[s.source]) for s in plan.searches}
    return [SearchJob(s, ids[search_key(s)], plan, str(out), str(theta0_dir),
                      str(study.layout.search(ids[(s.base, s.search_seed)])) if s.base else None, data[s.source])
            for s in plan.searches]


def _search_label(key: tuple) -> str:
    """(Source, replicate) as the manifest names it: the source, '#r' for replicates after the first."""
    source, replicate = key
    return f"{source}#{replicate}" if replicate else str(source)


class SearchesFailed(TicketbenchError):
    """Some ticket searches failed (the others finished): `failed` {(Source, replicate): reason}, `roots`
    {(Source, replicate): folder}.
    The matrix stage fails only the cells of those sources and runs the rest."""

    def __init__(self, failed: dict, roots: dict):
        first = next(iter(failed.items()))
        super().__init__(f"{len(failed)} ticket search(es) failed; find {_search_label(first[0])}: {first[1]}")
        self.failed, self.roots = failed, roots


def _forget_lost_tickets(jobs: list, study: Study) -> None:
    """A search done once whose tickets are gone since: drop its record, so that it searches again."""
    records = RunStore(study.out, kind="tickets")
    for j in jobs:
        if not j.is_stored():
            record = records.record_path(j.run_id)
            if record.exists():
                say(False, f"[find] {j.search.source}: tickets missing under {j.root}; searching again")
                record.unlink()


def run_unit(unit, run_dir: Path) -> dict:
    """A ticket search or a fine-tuning pair, whichever `unit` is (`stage_find_and_matrix` runs both)."""
    return run_search_job(unit, run_dir) if isinstance(unit, SearchJob) else finetune_pair(unit, run_dir)


def stage_find_and_matrix(plan: Plan, study: Study, theta0_dir: Path, quiet: bool = False) -> tuple[dict, dict]:
    """The find stage with the matrix's first wave streamed behind it: every search starts at once (they are
    the critical path), and a source's cells start as soon as its tickets exist — the dense cells at once —
    on the slots the searches leave free, instead of after the last search. A derived search (a control)
    starts when its base is done. Returns (roots, failed searches) as `stage_find` does; `stage_matrix` then
    finds the first wave stored and goes on with the manifest and adaptive seeds."""
    jobs = search_jobs(plan, study, theta0_dir)
    check_inputs(study, plan.config.matrix.tasks)
    _forget_lost_tickets(jobs, study)
    roots = {search_key(j.search): j.root for j in jobs}
    by_key = {search_key(j.search): j for j in jobs}
    cells: dict = {}
    for c in plan.cells:
        cells.setdefault(None if c.source.is_dense else (c.source, c.search_seed), []).append(c)
    derived: dict = {}
    for j in jobs:
        if j.search.base:
            derived.setdefault((j.search.base, j.search.search_seed), []).append(j)
    failed: dict = {}

    def ready(unit, record: dict) -> list:
        if not isinstance(unit, SearchJob):
            return []
        key = search_key(unit.search)
        if record.get("status") != "done" or not unit.is_stored():
            failed[key] = record.get("reason", "failed")
            for d in derived.get(key, []):
                failed[search_key(d.search)] = f"its base search {unit.search.source} failed"
            return []
        return make_pairs(plan, study, theta0_dir, roots, cells.get(key, [])) + derived.get(key, [])

    first = [by_key[k] for k in by_key if not by_key[k].search.base]
    dense = make_pairs(plan, study, theta0_dir, roots, cells.get(None, []))
    m = plan.config.matrix
    say(quiet, f"[find+matrix] {len(jobs)} search(es), their cells started as each search's tickets exist "
                f"({m.executor}, {workers(plan)} worker(s))")
    store = RoutedStore(study.out, {j.run_id: "tickets" for j in jobs})
    run_pairs([*first, *dense], study.out, run_unit, executor=m.executor, workers=workers(plan),
              ray_address=m.ray_address, progress=not quiet, gpus_per_run=m.gpus_per_run, more=ready, store=store)
    return roots, failed


def stage_find(plan: Plan, study: Study, theta0_dir: Path, quiet: bool = False) -> dict:
    """Run every search the plan needs on the plan's executor; stored searches are skipped, and a search
    whose record says done but whose tickets are gone (deleted) runs again. Returns {(Source, search
    replicate): ticket folder}; when searches failed, the others still ran, and `SearchesFailed` says
    which and why (a derived search whose base failed is not tried)."""
    jobs = search_jobs(plan, study, theta0_dir)  # loads (and so checks) every source's data
    m = plan.config.matrix
    failed: dict = {}
    # Two waves: derived tickets (controls) read their base search's tickets.
    for wave in ([j for j in jobs if not j.search.base], [j for j in jobs if j.search.base]):
        for j in wave:
            if j.search.base and (j.search.base, j.search.search_seed) in failed:
                failed[search_key(j.search)] = f"its base search {j.search.base} failed"
        wave = [j for j in wave if search_key(j.search) not in failed]
        todo = [j for j in wave if not j.is_stored()]
        if wave:
            say(quiet, f"[find] {len(wave)} search(es), {len(wave) - len(todo)} stored")
        _forget_lost_tickets(todo, study)
        if todo:
            summary = run_pairs(todo, study.out, run_search_job, executor=m.executor, kind="tickets",
                                workers=min(workers(plan), len(todo)), ray_address=m.ray_address, progress=not quiet,
                                gpus_per_run=m.gpus_per_run)
            by_id = {j.run_id: search_key(j.search) for j in todo}
            failed.update({by_id[f.run_id]: f.reason for f in summary.failed})
    roots = {search_key(j.search): j.root for j in jobs}
    if failed:
        raise SearchesFailed(failed, roots)
    return roots


# ---- matrix -----------------------------------------------------------------------------------
def stage_matrix(plan: Plan, study: Study, theta0_dir: Path, roots: dict, quiet: bool = False,
                 failed_searches: dict | None = None):
    """Fine-tune every cell of the plan; finished pairs are never recomputed. Writes the plan's manifest
    (rewritten after every wave of adaptive seeds, with each cell's seeds and why it stopped). Cells of
    `failed_searches` ({(Source, search replicate): reason}) are not run: each is a failed entry of the summary."""
    m = plan.config.matrix
    failed_searches = failed_searches or {}
    check_inputs(study, plan.config.matrix.tasks)
    lost = []
    if failed_searches:
        lost = [c for c in plan.cells if (c.source, c.search_seed) in failed_searches]
        plan = dataclasses.replace(plan, cells=tuple(c for c in plan.cells
                                                     if (c.source, c.search_seed) not in failed_searches))
        roots = {k: r for k, r in roots.items() if k not in failed_searches}
    store = RunStore(study.out)

    def make(cells):
        return make_pairs(plan, study, theta0_dir, roots, cells)

    def run(pairs):
        runs = len({p.run_id for p in pairs})
        shared = f" for {len(pairs)} cells (identical tickets share a run)" if runs < len(pairs) else ""
        say(quiet, f"[matrix] {runs} fine-tuning runs{shared} ({m.executor}, {workers(plan)} worker(s))")
        return run_pairs(pairs, study.out, finetune_pair, executor=m.executor, workers=workers(plan),
                         ray_address=m.ray_address, progress=not quiet, gpus_per_run=m.gpus_per_run)

    def value_of(pair):
        record = store.read_record(pair.run_id)
        return float(record["value"]) if record and record["status"] == "done" else None

    def on_wave(pairs, status):
        write_manifest(study.out, plan, theta0_dir, roots, pairs, seeds=[s.row() for s in status])

    summary, _ = run_waves(plan, make, run, value_of, on_wave, say=lambda msg: say(quiet, msg))
    if lost:
        for c in lost:
            reason = failed_searches[(c.source, c.search_seed)]
            label = f"{c.source}→{c.task} s={c.sparsity:g} seed={c.seed}"
            summary.failed.append(FailedRun("-", label, f"no ticket: search {c.source} failed: {reason}"))
        summary.total += len(lost)
        say(False, f"[matrix] {len(lost)} cell(s) not run, their ticket search failed: "
                    + "; ".join(f"{_search_label(k)}: {r}" for k, r in failed_searches.items()))
    return summary
