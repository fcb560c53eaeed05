"""The find stage for one source: build a SearchContext around θ0 and the source's training, run the
registered pruning method, and store one ticket per ladder sparsity (skipped when already stored)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.core.errors import TicketbenchError
from bench.core.io import atomic_write_json
from bench.runner.study import Study, environment


def _prunable(backbone, cfg) -> list:
    from tickets import select_prunable

    return select_prunable(backbone, include=cfg.find.include, exclude=cfg.find.exclude)


def _hparams(method, cfg) -> dict:
    """The method's hyperparameters from the find config (other methods use their defaults)."""
    if method.name == "imp":
        return {"mode": cfg.find.imp_mode, "prune_fraction": cfg.find.prune_fraction}
    return {}


def _set_weights(named, weights, masks) -> None:
    import torch

    with torch.no_grad():
        for name, p in named:
            w = weights[name].to(p.device, p.dtype)
            p.copy_(w * masks[name].to(p.device) if masks is not None else w)


def load_plugins(cfg) -> None:
    """Import the modules named in `find.plugins` (they register pruning methods by decorator)."""
    import importlib

    for name in cfg.find.plugins:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise TicketbenchError(f"find.plugins: cannot import '{name}': {e}") from None


def pretrain_loss_fn(study: Study, model, mix: str):
    """loss_fn of a PretrainModel for one objective mix ('name:ratio,...'): one objective per batch."""
    from bench.runner.stages import _objectives

    objectives = _objectives(mix, model.backbone.image_input)
    return lambda b: model.sampled_loss(b, study.store, objectives, study.cfg.pretrain.mask_prob)


def source_objective(study: Study, backbone, source_task: str):
    """(model, examples, loss_fn, head prefixes) for a ticket source; 'pretrain' uses the main mix."""
    cfg = study.cfg
    if source_task == "pretrain":
        from bench.backbones import PretrainModel

        model = PretrainModel(backbone)
        return (model, study.examples("itm", "train"), pretrain_loss_fn(study, model, cfg.pretrain.objectives),
                ("heads.",))
    from bench.backbones import TaskModel
    from bench.tasks import TASKS

    model = TaskModel(backbone, TASKS.get(source_task), study.labels(source_task))
    return model, study.train_examples(source_task), lambda b: model.loss(b, study.store), ("head.",)


def make_score_fn(study: Study, theta0_dir: Path, source_task: str):
    """score_fn(weights, masks) -> {name: gradient of the source loss} at weights ⊙ masks, on one
    seeded batch per call (for gradient-based methods such as SNIP)."""
    from bench.training.batching import bucketed_batches

    calls = [0]

    def score(weights: dict, masks: dict) -> dict:
        torch.manual_seed(study.cfg.find.seed)
        backbone = study.theta0(theta0_dir)
        model, examples, loss_fn, _ = source_objective(study, backbone, source_task)
        named = _prunable(backbone, study.cfg)
        _set_weights(named, weights, masks)
        model.to(study.device).train()
        batch_size = study.settings(source_task, 0).batch_size if source_task != "pretrain" else study.cfg.pretrain.batch_size
        batch = next(bucketed_batches(examples, batch_size, seed=study.cfg.find.seed + calls[0]))
        calls[0] += 1
        out = loss_fn(batch)
        loss = sum(out.values()) if isinstance(out, dict) else out
        loss.backward()
        return {n: p.grad.detach().to("cpu").clone() if p.grad is not None else torch.zeros_like(p, device="cpu")
                for n, p in named}

    return score


def make_train_fn(study: Study, theta0_dir: Path, source_task: str, steps: int = 0):
    """train(start_weights, masks) -> TrainResult: fine-tune θ0 with its prunable weights set to
    start_weights ⊙ masks on the source (a task, or the pre-training objective mix)."""
    from bench.training import train
    from tickets import MaskEnforcer, TrainResult

    cfg = study.cfg
    seed = cfg.find.seed

    def run(start_weights: dict, masks: dict) -> TrainResult:
        # Every round builds its model and heads from the same seed, whatever ran before it.
        torch.manual_seed(seed)
        backbone = study.theta0(theta0_dir)
        model, examples, loss_fn, heads = source_objective(study, backbone, source_task)
        if source_task == "pretrain":
            from bench.runner.stages import pretrain_phases

            # Half the main mix phase per round (the ITM-only first phase is a warm start, not the objective).
            settings = study.pretrain_settings(steps or cfg.find.steps or max(pretrain_phases(cfg)[-1][1] // 2, 1), seed)
        else:
            settings = study.settings(source_task, seed, steps=steps or cfg.find.steps)
        named = _prunable(backbone, cfg)
        _set_weights(named, start_weights, masks)
        enforcer = MaskEnforcer(named, masks)
        snap = (lambda: {n: p.detach().to("cpu").clone() for n, p in named}) if cfg.find.rewind_step else None
        log = train(model, loss_fn, examples, settings, device=study.device, enforcer=enforcer,
                    head_prefixes=heads, snapshot_step=cfg.find.rewind_step, snapshot_fn=snap)
        weights = {n: p.detach().to("cpu").clone() for n, p in named}
        return TrainResult(weights=weights, rewind=log.snapshot,
                           metrics={"train_s": round(log.seconds, 2),
                                    "final_loss": log.history[-1]["loss"] if log.history else None})

    return run


def run_search(study: Study, theta0_dir: Path, root: Path, source: str, quiet: bool = False) -> Path:
    """Run the search for `source` (e.g. imp:vqa, omp:gqa, pretrained_magnitude, random,
    reinit:pretrain) unless its tickets are stored; returns the search directory."""
    from bench.runner.stages import ladder
    from tickets import Ticket, TicketStore, get_method, parse_source
    from tickets.fingerprint import fingerprint_of
    from tickets.search import SearchContext, copy_weights

    cfg = study.cfg
    src = parse_source(source)
    method_name, source_task = src.method, src.objective
    store = TicketStore(root)
    method = get_method(method_name)
    controls = {c.split(":")[0] for c in cfg.matrix.controls}
    sparsities = tuple(cfg.matrix.control_sparsities) if method_name in controls else ladder(cfg)
    search_dir = store.path(src, sparsities[0]).parent
    done = search_dir / "search.json"
    if done.exists() and all(store.path(src, s).exists() for s in sparsities):
        if not quiet:
            print(f"[find] cached: {source}")
        return search_dir

    backbone = study.theta0(theta0_dir)
    named = _prunable(backbone, cfg)
    theta0 = copy_weights({n: p for n, p in named})
    # Random pruning matches the IMP ticket of its source per tensor; the controls re-use its masks.
    base_source = f"imp:{source_task}" if method_name in ("random", "reinit", "shuffle") else None
    if base_source and source_task not in cfg.find.sources:
        if method_name != "random":
            raise TicketbenchError(f"source {source} needs imp:{source_task}, which is not in find.sources")
        base_source = None  # no IMP ticket to match: global random pruning
    t0 = time.perf_counter()
    if base_source:
        run_search(study, theta0_dir, root, base_source, quiet=quiet)
    if method_name in ("pretrained_magnitude", "random", "reinit", "shuffle"):
        train_fn = None
    else:
        train_fn = make_train_fn(study, theta0_dir, source_task)

    def no_training(*_):
        raise TicketbenchError(f"method {method_name} asked to train but is registered as training-free")

    tickets = []
    per_sparsity = [(s,) for s in sparsities] if base_source else [sparsities]
    for group in per_sparsity:
        base = Ticket.load(store.path(base_source, group[0])) if base_source else None
        ctx = SearchContext(
            backbone=cfg.backbone.preset, fingerprint=fingerprint_of(named), theta0=theta0,
            train=train_fn or no_training, source=src.task, sparsities=group, seed=cfg.find.seed,
            score_fn=make_score_fn(study, theta0_dir, source_task),
            rewind_step=cfg.find.rewind_step, base_ticket=base,
            meta={"include": tuple(cfg.find.include), "exclude": tuple(cfg.find.exclude),
                  "model_numel": sum(p.numel() for p in backbone.parameters())},
        )
        if not quiet:
            print(f"[find] {source}: {method_name} at {', '.join(f'{s:.0%}' for s in group)}", flush=True)
        tickets += method(ctx, _hparams(method, cfg))
    for t in tickets:
        store.put(t)
    atomic_write_json(done, {
        "source": source, "method": method_name, "source_task": source_task,
        "sparsities": list(sparsities), "seconds": round(time.perf_counter() - t0, 2),
        "tickets": [{"sparsity": t.sparsity, "target": t.metadata["target_sparsity"],
                     "round": t.metadata.get("round"), "content_hash": t.content_hash,
                     "train_metrics": (t.metadata.get("extra") or {}).get("train_metrics")} for t in tickets],
        "hparams": _hparams(method, cfg), "env": environment(study.device),
    })
    return search_dir
