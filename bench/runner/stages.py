"""The pipeline's stages: world → pretrain → find → matrix → report.

Each stage is content-addressed by the hash of the non-default config sections it depends on, and
skipped when its output (marked by a DONE/record file written last, atomically) exists.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from bench.config import Config, config_hash, non_default, to_dict
from bench.core.errors import ConfigError, TicketbenchError
from bench.core.io import atomic_write_json, atomic_write_text, file_hash, read_json, short_hash
from bench.core.registry import suggest
from bench.runner.study import Study, environment

STAGES = ("world", "pretrain", "find", "matrix", "report")


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


# ---- world ------------------------------------------------------------------------------------
def stage_world(study: Study, quiet: bool = False) -> Path:
    """Generate toyland into <out>/world (skipped when its manifest exists with the same settings)."""
    w = study.cfg.world
    if w.source != "toyland":
        if not study.data_root.exists():
            raise TicketbenchError(f"world.data_root {study.data_root} does not exist")
        return study.data_root
    from bench.data.toyland.world import VERSION

    world = study.out / "world"
    manifest = world / "MANIFEST.json"
    if manifest.exists():
        m = read_json(manifest)
        if m.get("version") != VERSION:
            raise TicketbenchError(
                f"{world} holds a toyland world of format version {m.get('version')}; this ticketbench "
                f"writes version {VERSION}; use another --out (or delete {world} and what was built on it)")
        if m.get("seed") == w.seed and m.get("scale") == w.scale:
            _say(quiet, f"[world] cached: {world}")
            return world
        raise TicketbenchError(
            f"{world} holds a toyland world of scale {m.get('scale')} seed {m.get('seed')}, not "
            f"{w.scale} seed {w.seed}; use another --out")
    from bench.data.toyland import generate_world

    t0 = time.perf_counter()
    generate_world(world, seed=w.seed, scale=w.scale)
    _say(quiet, f"[world] toyland ({w.scale}, seed {w.seed}) written to {world} in {time.perf_counter() - t0:.1f}s")
    return world


# ---- pretrain ---------------------------------------------------------------------------------
def _objectives(spec: str, image_input: str) -> dict[str, float]:
    out = {}
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in ("mlm", "itm", "mrm"):
            raise ConfigError(f"pretrain.objectives: unknown objective '{name}'{suggest(name, ['mlm', 'itm', 'mrm'])}")
        if name == "mrm" and image_input != "regions":
            continue  # masked region modelling needs region features
        out[name] = float(weight or 1.0)
    return out


def pretrain_hash(study: Study) -> str:
    """Over the *effective* pre-training settings (a changed default is a new θ0) and, for toyland,
    the world's format version (a regenerated world is new data)."""
    from bench.data.toyland.world import VERSION

    c = study.cfg
    world = VERSION if c.world.source == "toyland" else None
    return config_hash(c.world, c.backbone, to_dict(c)["pretrain"], {"toyland_version": world})


def pretrain_phases(cfg: Config) -> list[tuple[str, int]]:
    """[(objective mix, steps)] in order: the first phase (if any), then the main mix."""
    p = cfg.pretrain
    if not 0.0 <= p.first_fraction <= 1.0:
        raise ConfigError(f"pretrain.first_fraction: expected a fraction in [0, 1], found {p.first_fraction}")
    first = int(round(p.first_fraction * p.steps)) if p.first_objectives else 0
    phases = [(p.first_objectives, first)] if first > 0 else []
    if p.steps - first > 0:
        phases.append((p.objectives, p.steps - first))
    return phases


def stage_pretrain(study: Study, quiet: bool = False) -> Path:
    """θ0: pre-train a toy preset on the world's captions, or take a real preset's checkpoint."""
    from bench.backbones import PRESETS, create_backbone

    c = study.cfg
    d = study.out / "pretrain" / pretrain_hash(study)
    if (d / "DONE").exists():
        _say(quiet, f"[pretrain] cached: {d}")
        return d
    preset = PRESETS.get(c.backbone.preset)
    t0 = time.perf_counter()
    metrics: dict = {}
    if preset.family in ("toy",):
        store = study.store
        # Initial weights come from the global RNG: seed it, so θ0 does not depend on what ran before.
        torch.manual_seed(c.pretrain.seed)
        backbone = create_backbone(c.backbone.preset, vocab_path=study.data_root / "vocab.txt",
                                   feat_dim=None if study.image_kind[0] == "pixels" else store.feat_dim)
        from bench.runner.search import pretrain_loss_fn, source_objective
        from bench.training import train

        model, examples, _, heads = source_objective(study, backbone, "pretrain")
        phases = pretrain_phases(c)
        history, seconds, done = [], 0.0, 0
        # Each phase is its own train() call, so each warms up and decays to 0 on its own.
        for k, (mix, steps) in enumerate(phases):
            log = train(model, pretrain_loss_fn(study, model, mix), examples,
                        study.pretrain_settings(steps, c.pretrain.seed + k),
                        device=study.device, head_prefixes=heads)
            history += [{**r, "step": r["step"] + done, "phase": k} for r in log.history]
            seconds += log.seconds
            done += steps
        metrics = {"history": history, "train_s": seconds,
                   "phases": [{"objectives": _objectives(m, backbone.image_input), "steps": n} for m, n in phases]}
        backbone = model.backbone
    else:
        backbone = create_backbone(c.backbone.preset, checkpoint=c.backbone.checkpoint or None)
    backbone.to("cpu").save(d)
    atomic_write_json(d / "metrics.json", {**metrics, "env": environment(study.device),
                                           "config": to_dict(c)["pretrain"]})
    atomic_write_text(d / "DONE", file_hash(d / "model.safetensors") + "\n")
    _say(quiet, f"[pretrain] θ0 of {c.backbone.preset} written to {d} in {time.perf_counter() - t0:.1f}s")
    return d


def theta0_hash(theta0_dir: Path) -> str:
    return (theta0_dir / "DONE").read_text().strip()


# ---- find -------------------------------------------------------------------------------------
def ladder(cfg: Config) -> tuple[float, ...]:
    return tuple(sorted(set(float(s) for s in cfg.matrix.sparsities) | set(float(s) for s in cfg.matrix.control_sparsities)))


def tickets_root(study: Study, theta0_dir: Path) -> Path:
    c = study.cfg
    key = short_hash([theta0_hash(theta0_dir), non_default(c.find), non_default(c.finetune),
                      list(ladder(c))])
    return study.out / "tickets" / key


def stage_find(study: Study, theta0_dir: Path, sources: list[str], quiet: bool = False) -> Path:
    """Run every ticket search the requested sources need; each search is skipped when done."""
    from bench.runner.search import run_search

    root = tickets_root(study, theta0_dir)
    searches = [s for s in sources if s != "dense"]
    # Searches that re-use another ticket (random matching IMP, the controls) run after the others.
    derived = [s for s in searches if s.split(":")[0] in ("random", "reinit", "shuffle")]
    first = [s for s in searches if s not in derived]
    workers = study.cfg.matrix.workers
    if workers > 1 and len(first) > 1 and study.cfg.matrix.executor == "local":
        _parallel_searches(study, theta0_dir, root, first, workers, quiet)
    else:
        for source in first:
            run_search(study, theta0_dir, root, source, quiet=quiet)
    for source in derived:
        run_search(study, theta0_dir, root, source, quiet=quiet)
    return root


def _search_in_worker(config: dict, out: str, theta0_dir: str, root: str, source: str, threads: int) -> str:
    """One ticket search in a worker process (module-level so that spawn can import it)."""
    from bench.config import build_config
    from bench.runner.search import load_plugins, run_search

    torch.set_num_threads(threads)
    study = Study(build_config(config, where="search worker"), out)
    load_plugins(study.cfg)
    run_search(study, Path(theta0_dir), Path(root), source, quiet=True)
    return source


def _parallel_searches(study: Study, theta0_dir: Path, root: Path, sources: list[str], workers: int,
                       quiet: bool) -> None:
    """Independent ticket searches (IMP per source, one-shot) spread over local worker processes."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    args = (to_dict(study.cfg), str(study.out), str(theta0_dir), str(root))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(sources)), mp_context=ctx) as pool:
        futures = [pool.submit(_search_in_worker, *args, s, threads) for s in sources]
        for f in as_completed(futures):
            _say(quiet, f"[find] {f.result()}: done")


# ---- matrix -----------------------------------------------------------------------------------
def matrix_sources(cfg: Config) -> list[str]:
    """Every source of the matrix, in report order: IMP tickets, one-shot, baselines, controls, dense."""
    return ([f"imp:{s}" for s in cfg.find.sources] + list(cfg.find.one_shot) + list(cfg.matrix.baselines)
            + list(cfg.matrix.controls) + ["dense"])


def stage_matrix(study: Study, theta0_dir: Path, root: Path, sources: list[str], executor: str,
                 workers: int, ray_address: str, quiet: bool = False):
    """Fine-tune every (source ticket, sparsity, task, seed) pair; finished pairs are never recomputed."""
    from bench.runner import run_pairs
    from bench.runner.finetune import finetune_pair, make_pairs

    pairs = make_pairs(study, theta0_dir, root, sources)
    _say(quiet, f"[matrix] {len(pairs)} fine-tuning runs ({executor}, {workers} worker(s))")
    summary = run_pairs(pairs, study.out, finetune_pair, executor=executor, workers=workers,
                        ray_address=ray_address, progress=not quiet)
    return summary


# ---- the pipeline -----------------------------------------------------------------------------
def _subset(cfg: Config, sources, tasks, sparsities, seeds, executor, workers, ray_address) -> tuple[Config, list[str]]:
    from bench.tasks import TASKS

    all_sources = matrix_sources(cfg)
    if sources:
        for s in sources:
            if s not in all_sources:
                raise ConfigError(f"--sources: unknown source '{s}'{suggest(s, all_sources)}; this config has: "
                                  f"{', '.join(all_sources)}")
        chosen = [s for s in all_sources if s in sources]
    else:
        chosen = all_sources
    m = cfg.matrix
    if tasks:
        for t in tasks:
            TASKS.get(t)
        m = dataclasses.replace(m, tasks=tuple(tasks))
    if sparsities:
        bad = [s for s in sparsities if not 0.0 <= s < 1.0]
        if bad:
            raise ConfigError(f"--sparsities: {bad[0]} is outside [0, 1)")
        m = dataclasses.replace(m, sparsities=tuple(sparsities))
    if seeds:
        m = dataclasses.replace(m, seeds=seeds)
    if executor:
        m = dataclasses.replace(m, executor=executor)
    if workers:
        m = dataclasses.replace(m, workers=workers)
    if ray_address is not None:
        m = dataclasses.replace(m, ray_address=ray_address)
    return dataclasses.replace(cfg, matrix=m), chosen


def run_pipeline(cfg: Config, out: str | None = None, stages=STAGES, upto: bool = False, sources=None,
                 tasks=None, sparsities=None, seeds=None, executor=None, workers=None, ray_address=None,
                 quiet: bool = False) -> Path:
    """Run the requested stages in order (with `upto`, also every earlier stage), skipping done ones."""
    from bench.backbones import PRESETS
    from bench.runner.search import load_plugins
    from bench.tasks import TASKS
    from tickets import parse_source

    load_plugins(cfg)  # before validation: plugins register the methods that sources name
    # Validate every name before anything is written.
    PRESETS.get(cfg.backbone.preset)
    for t in cfg.matrix.tasks:
        TASKS.get(t)
    for s in cfg.find.sources:
        if s != "pretrain":
            TASKS.get(s)
    for s in matrix_sources(cfg):
        parse_source(s)
    full_ladder = ladder(cfg)
    cfg, chosen = _subset(cfg, sources, tasks, sparsities, seeds, executor, workers, ray_address)
    if sparsities and not set(sparsities) <= set(full_ladder):
        missing = sorted(set(sparsities) - set(full_ladder))
        raise ConfigError(f"--sparsities {missing[0]} is not on the ticket ladder {list(full_ladder)}; "
                          f"add it with --set matrix.sparsities=... and run `ticketbench find` first")
    out_dir = Path(out) if out else Path("runs") / cfg.name
    if upto:
        stages = STAGES[: STAGES.index(stages[-1]) + 1]
    t_start = time.perf_counter()
    _say(quiet, f"ticketbench: {cfg.name} -> {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    study = Study(cfg, out_dir)
    timings: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        return result

    theta0_dir = root = summary = None
    if "world" in stages:
        timed("world", lambda: stage_world(study, quiet))
    if "pretrain" in stages:
        theta0_dir = timed("pretrain", lambda: stage_pretrain(study, quiet))
    if "find" in stages:
        theta0_dir = theta0_dir or stage_pretrain(study, quiet=True)
        root = timed("find", lambda: stage_find(study, theta0_dir, chosen, quiet))
    if "matrix" in stages:
        theta0_dir = theta0_dir or stage_pretrain(study, quiet=True)
        root = root or tickets_root(study, theta0_dir)
        summary = timed("matrix", lambda: stage_matrix(
            study, theta0_dir, root, chosen, cfg.matrix.executor, cfg.matrix.workers, cfg.matrix.ray_address, quiet))
    if "report" in stages:
        from reports import build_report

        timed("report", lambda: build_report(out_dir, config=cfg))
    total = time.perf_counter() - t_start
    timing_file = out_dir / "timings.json"
    old = read_json(timing_file) if timing_file.exists() else {}
    atomic_write_json(timing_file, {**old, **timings, "last_total_s": round(total, 2),
                                    "device": str(study.device), "threads": torch.get_num_threads()})
    if "report" in stages:
        _say(quiet, f"report: {out_dir / 'report' / 'README.md'}")
    _say(quiet, f"ticketbench: done in {total:.0f}s -> {out_dir}")
    if summary is not None and getattr(summary, "failed", None):
        _say(quiet, f"ticketbench: {len(summary.failed)} run(s) failed; re-run to retry them")
    return out_dir
