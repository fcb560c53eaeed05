"""The matrix stage's unit of work: fine-tune θ0 ⊙ m on one target task and score it.

`make_pairs` enumerates every (source, sparsity, task, seed); `finetune_pair` is the module-level
pair function the executors (in-process, worker processes, Ray tasks) call.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

from bench.config import build_config, to_dict
from bench.core.errors import RunFailed, TicketbenchError
from bench.runner.pairs import PairSpec
from bench.runner.study import Study, environment


def _pair_config(study: Study, task: str, seed: int, theta0_dir: Path) -> dict:
    """Everything the run's result depends on besides ticket and θ0 content: resolved recipe, world,
    backbone and evaluation settings. It is hashed into the run id."""
    cfg = study.cfg
    full = to_dict(cfg)
    settings = dataclasses.asdict(study.settings(task, seed))
    settings["betas"] = list(settings["betas"])
    return {
        "world": full["world"], "backbone": full["backbone"],
        "finetune": {**settings, "max_text_len": cfg.finetune.max_text_len,
                     "dev_limit": cfg.finetune.dev_limit, "eval_batch_size": cfg.finetune.eval_batch_size},
        "theta0_dir": str(theta0_dir.resolve().relative_to(study.out.resolve())),
    }


def make_pairs(study: Study, theta0_dir: Path, root: Path, sources: list[str]) -> list[PairSpec]:
    """Every fine-tuning run of the matrix for the chosen sources (tickets must exist: run `find`)."""
    from bench.runner.stages import theta0_hash
    from bench.tasks import TASKS
    from tickets import Ticket, TicketStore, parse_source

    cfg = study.cfg
    store = TicketStore(root)
    t0_hash = theta0_hash(theta0_dir)
    controls = {c.split(":")[0] for c in cfg.matrix.controls}
    pairs = []
    hashes: dict[Path, str] = {}
    for task in cfg.matrix.tasks:
        split = TASKS.get(task).splits[1]
        for seed in range(cfg.matrix.seeds):
            pc = _pair_config(study, task, seed, theta0_dir)
            for source in sources:
                if source == "dense":
                    pairs.append(PairSpec(cfg.backbone.preset, "dense", "dense", "", 0.0, task, seed,
                                          None, None, t0_hash, split, pc))
                    continue
                src = parse_source(source)
                method, source_task = src.method, src.task
                sparsities = cfg.matrix.control_sparsities if method in controls else cfg.matrix.sparsities
                for s in sparsities:
                    path = store.path(src, float(s))
                    if not path.exists():
                        raise TicketbenchError(
                            f"no ticket for source {source} at sparsity {float(s):.0%} in {root}; "
                            f"run `ticketbench find --sources {source}` first")
                    if path not in hashes:
                        hashes[path] = Ticket.load(path).content_hash
                    pairs.append(PairSpec(cfg.backbone.preset, source, method, source_task, float(s), task,
                                          seed, str(path.resolve()), hashes[path], t0_hash, split, pc))
    return pairs


@functools.lru_cache(maxsize=4)
def _study(out: str, key: str) -> Study:
    c = json.loads(key)
    cfg = build_config({"world": c["world"], "backbone": c["backbone"],
                        "finetune": {k: c["finetune"][k] for k in ("max_text_len", "dev_limit", "eval_batch_size")}},
                       where="run config")
    return Study(cfg, out)


def finetune_pair(pair: PairSpec, run_dir: Path) -> dict:
    """Fine-tune θ0 ⊙ m of `pair` on its task, evaluate on its split, audit the mask; return the record."""
    import torch

    from bench.backbones import TaskModel
    from bench.runner import progress
    from bench.tasks import TASKS
    from bench.training import TrainSettings, evaluate_task, train
    from tickets import MaskEnforcer, Ticket, select_prunable

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    out = run_dir.parent.parent
    c = pair.config
    study = _study(str(out), json.dumps({k: c[k] for k in ("world", "backbone", "finetune")}, sort_keys=True))
    spec = TASKS.get(pair.task)
    f = dict(c["finetune"])
    settings = TrainSettings(**{k: (tuple(v) if k == "betas" else v) for k, v in f.items()
                                if k in {x.name for x in dataclasses.fields(TrainSettings)}})
    backbone = study.theta0(out / c["theta0_dir"])
    enforcer = None
    if pair.ticket_path:
        ticket = Ticket.load(pair.ticket_path)
        if ticket.content_hash != pair.ticket_hash:
            raise RunFailed(f"ticket {pair.ticket_path} changed since the matrix was planned")
        ticket.apply(backbone)
        named = select_prunable(backbone, include=ticket.metadata.get("include", ()),
                                exclude=ticket.metadata.get("exclude", ()))
        enforcer = MaskEnforcer(named, ticket.masks)
    # The head is initialised from the global RNG: seed it, so a run does not depend on the runs before it
    # in this process (resume, worker processes and concurrent runners then give the same values).
    torch.manual_seed(pair.seed)
    model = TaskModel(backbone, spec, study.labels(pair.task))
    store = study.store
    log = train(model, lambda b: model.loss(b, store), study.train_examples(pair.task), settings,
                device=study.device, enforcer=enforcer, on_step=progress.report)
    audit = enforcer.audit() if enforcer else {"pruned": 0, "nonzero_pruned": 0, "trained_sparsity": 0.0}
    if audit["nonzero_pruned"]:
        raise RunFailed(f"mask audit: {audit['nonzero_pruned']} pruned weights are non-zero after training")
    split, examples = study.eval_examples(pair.task)
    metrics, predictions, eval_s = evaluate_task(model, spec, examples, store, f["eval_batch_size"])
    if pair.task == "vqa":
        from bench.tasks import write_vqa_predictions

        write_vqa_predictions(run_dir / "predictions.json", predictions)
    value = metrics[spec.headline]
    if not torch.isfinite(torch.tensor(float(value))):
        raise RunFailed(f"metric {spec.headline} is not finite")
    return {
        "status": "done", "metric": spec.headline, "value": float(value), "metrics": metrics,
        "chance": study.chance(pair.task, spec.headline), "history": log.history, "mask_audit": audit,
        "timings": {"train_s": round(log.seconds, 3), "eval_s": round(eval_s, 3),
                    "total_s": round(time.perf_counter() - t_start, 3)},
        "env": environment(study.device), "eval_examples": len(examples),
    }
