"""The find stage's unit of work: one ticket search (a `Search` of the plan) around θ0.

`SearchJob` names it (its id is the plan's content address of the search); `run_search_job` is the
module-level job function the executors call — the same executors that run the matrix's pairs. It
builds a `SearchContext` (θ0's prunable weights, the source's training and scoring), runs the
registered method and stores one ticket per sparsity under `<out>/tickets/<search id>/`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.backbones import MLMModel, PretrainModel, task_model
from bench.backbones.export import structured_latency
from bench.core.errors import TicketbenchError
from bench.core.io import atomic_write_json, read_json
from bench.core.layout import Layout
from bench.core.source import PRETRAIN
from bench.cost import kept_flops
from bench.plan import Plan, Search, load_plugins
from bench.runner.study import Study, cached_study, environment
from bench.tasks import TASKS
from bench.training import OnGrads, Snapshot, train
from bench.training.batching import bucketed_batches
from bench.training.checkpoint import Checkpoint
from tickets import MaskEnforcer, SearchContext, Ticket, TicketStore, TrainResult, get_method, select_prunable
from tickets.activations import collect_input_stats
from tickets.fingerprint import fingerprint_of
from tickets.search import copy_weights


@dataclass(frozen=True)
class SearchJob:
    """One search of a plan, ready to run anywhere: its id, where θ0 and its tickets live."""

    search: Search
    search_id: str
    plan: Plan
    out: str
    theta0_dir: str
    base_dir: str | None  # the base search's ticket folder (derived tickets)
    data_hash: str  # `Study.data_digest` of the source objective, hashed into search_id; checked by the worker

    @property
    def run_id(self) -> str:
        return self.search_id

    @property
    def label(self) -> str:
        r = self.search.search_seed
        return f"find {self.search.source}" + (f" search_seed={r}" if r else "")

    @property
    def root(self) -> Path:
        return Layout(self.out).search(self.search_id)

    def identity(self) -> dict[str, Any]:
        s = self.search
        return {"run_id": self.search_id, "source": str(s.source), "method": s.source.method,
                "source_task": s.source.task, "sparsities": list(s.sparsities), "hparams": dict(s.hparams),
                "base": str(s.base) if s.base else None, "tickets": str(self.root), "data_hash": self.data_hash,
                "search_seed": s.search_seed}

    def is_stored(self) -> bool:
        store = TicketStore(self.root)
        return Layout.search_log(self.root).exists() and all(
            store.path(self.search.source, x).exists() for x in self.search.sparsities)


def pretrain_loss_fn(study: Study, model, objectives: tuple):
    """loss_fn of a PretrainModel for one objective mix ((name, ratio), ...): one objective per batch."""
    return model.batch_loss(study.store, dict(objectives), study.cfg.pretrain.mask_prob)


def source_objective(plan: Plan, study: Study, backbone, objective: str):
    """(model, examples, loss_fn, head prefixes) of a source's objective: a task, or the pre-training mix."""
    if objective == PRETRAIN:
        if backbone.image_input == "none":  # the BERT study: MLM on the text corpus
            model = MLMModel(backbone, plan.config.pretrain.mask_prob)
            return model, study.corpus(), model.loss, ("head.",)
        model = PretrainModel(backbone, tagging=plan.tagging)
        return model, study.corpus(), pretrain_loss_fn(study, model, plan.imp_objectives), ("heads.",)
    backbone.set_max_text_len(plan.config.finetune.max_text_len)
    model = task_model(backbone, TASKS.get(objective), study.labels(objective),
                       hard_negatives=plan.finetune_settings(objective, 0).hard_negatives)
    return model, study.train_examples(objective), model.batch_loss(study.store_for(objective)), ("head.",)


def _set_weights(named, weights, masks) -> None:
    with torch.no_grad():
        for name, p in named:
            w = weights[name].to(p.device, p.dtype)
            p.copy_(w * masks[name].to(p.device) if masks is not None else w)


def _prunable(backbone, plan: Plan) -> list:
    f = plan.config.find
    return select_prunable(backbone, include=f.include, exclude=f.exclude)


def make_score_fn(plan: Plan, study: Study, theta0_dir: str, objective: str, search_seed: int = 0):
    """score_fn(weights, masks, batch=None) -> {name: gradient of the source loss} at weights ⊙ masks,
    on the next seeded batch per call, or on the `batch`-th again (GraSP differences two gradients on
    one batch)."""
    calls = [0]
    seed = plan.search_seed + search_seed

    def score(weights: dict, masks: dict, batch: int | None = None) -> dict:
        torch.manual_seed(seed)
        backbone = study.theta0(theta0_dir)
        model, examples, loss_fn, _ = source_objective(plan, study, backbone, objective)
        named = _prunable(backbone, plan)
        _set_weights(named, weights, masks)
        model.to(study.device).train()
        batch_size = (plan.config.pretrain.batch_size if objective == PRETRAIN
                      else plan.finetune_settings(objective, seed).batch_size)
        k = calls[0] if batch is None else int(batch)
        calls[0] += batch is None
        out = loss_fn(loss_fn.prepare(next(bucketed_batches(examples, batch_size, seed=seed + k))))
        loss = sum(out.values()) if isinstance(out, dict) else out
        loss.backward()
        return {n: p.grad.detach().to("cpu").clone() if p.grad is not None else torch.zeros_like(p, device="cpu")
                for n, p in named}

    return score


def make_calib_fn(plan: Plan, study: Study, theta0_dir: str, objective: str):
    """calib_fn(weights, masks, names, *, samples, seed, hessian=False) -> {name: InputStats}: one
    forward pass without gradients (eval mode: no dropout) over `samples` training examples of the
    source objective (a task's train split, or the pre-training corpus) drawn with `seed`, in batches of
    the source's batch size, with the prunable weights set to weights ⊙ masks, collecting the inputs of
    the nn.Linear of each weight in `names` (every token position the backbone computes)."""

    def calib(weights: dict, masks: dict, names, *, samples: int, seed: int, hessian: bool = False) -> dict:
        torch.manual_seed(seed)  # the pre-training objectives' masking draws
        backbone = study.theta0(theta0_dir)
        model, examples, loss_fn, _ = source_objective(plan, study, backbone, objective)
        _set_weights(_prunable(backbone, plan), weights, masks)
        model.to(study.device).eval()
        pick = sorted(random.Random(seed).sample(range(len(examples)), min(int(samples), len(examples))))
        chosen = [examples[i] for i in pick]
        batch_size = (plan.config.pretrain.batch_size if objective == PRETRAIN
                      else plan.finetune_settings(objective, plan.search_seed).batch_size)

        def run() -> int:
            for j in range(0, len(chosen), batch_size):
                loss_fn(loss_fn.prepare(chosen[j:j + batch_size]))
            return len(chosen)

        return collect_input_stats(backbone, names, run, hessian)

    return calib


def make_flow_fn(plan: Plan, study: Study, theta0_dir: str):
    """flow_fn(weights, masks) -> dR/dw for SynFlow, data-free: every parameter replaced by its
    absolute value (float64, eval mode), every embedding lookup and the image input replaced by ones,
    R = the sum of the encoder's output sequence. Only the *shape* of one image input is read from
    the store. LayerNorms make a transformer's flow only approximately conserved (as in every
    transformer adaptation of SynFlow)."""
    from torch import nn

    def flow(weights: dict, masks: dict) -> dict:
        backbone = study.theta0(theta0_dir).to(study.device).double().eval()
        named = _prunable(backbone, plan)
        with torch.no_grad():
            for p in backbone.parameters():
                p.abs_()
        _set_weights(named, {n: w.abs() for n, w in weights.items()}, masks)
        hooks = [m.register_forward_hook(lambda _m, _i, out: torch.ones_like(out))
                 for m in backbone.modules() if isinstance(m, nn.Embedding)]
        try:
            example = study.corpus()[0]
            images = backbone.collate([study.store.get(example.image_ids[0])])
            images = type(images)(**{k: (torch.ones_like(v, dtype=torch.float64) if torch.is_floating_point(v) else v)
                                     .to(backbone.device) for k, v in vars(images).items()})
            input_ids, text_mask = backbone.tokenize([example.texts[0]])  # ids only: embeddings give ones
            backbone.zero_grad()
            backbone.encode_tokens(input_ids, text_mask, images).sequence.sum().backward()
        finally:
            for h in hooks:
                h.remove()
        return {n: p.grad.detach().to("cpu", torch.float32).clone() if p.grad is not None
                else torch.zeros(p.shape) for n, p in named}

    return flow


def _round_key(search_id: str, masks: dict) -> str:
    """What one training call of a search trains: the search and the masks it starts from (each IMP round
    has its own), so a checkpoint is resumed only by the round that wrote it."""
    import hashlib

    h = hashlib.sha256(search_id.encode())
    for name in sorted(masks):
        h.update(name.encode())
        h.update(masks[name].detach().to("cpu", torch.bool).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def make_train_fn(plan: Plan, study: Study, theta0_dir: str, search: Search, root: str | Path | None = None,
                  search_id: str = ""):
    """train(start_weights, masks) -> TrainResult: fine-tune θ0 with its prunable weights set to
    start_weights ⊙ masks on the source (a task, or the pre-training objective mix).

    With `root` (the search's folder), a call checkpoints every `matrix.checkpoint_minutes` into
    `<root>/checkpoint/` (as a fine-tuning pair does), keyed by the search and the round's masks: a search
    killed inside an IMP round resumes that round from its last checkpoint, with the same numbers. Calls
    that keep state outside the model — late rewinding's θk snapshot, a method reading the gradients —
    are not checkpointed (they restart the round)."""
    settings = plan.search_settings(search.source, search.search_seed)
    rewind_step = plan.config.find.rewind_step

    def run(start_weights: dict, masks: dict, on_grads=None) -> TrainResult:
        # Every round builds its model and heads from the same seed, whatever ran before it.
        torch.manual_seed(settings.seed)
        backbone = study.theta0(theta0_dir)
        model, examples, loss_fn, heads = source_objective(plan, study, backbone, search.source.objective)
        named = _prunable(backbone, plan)
        _set_weights(named, start_weights, masks)
        enforcer = MaskEnforcer(named, masks)
        callbacks = []
        snap = Snapshot(rewind_step, lambda: {n: p.detach().to("cpu").clone() for n, p in named})
        if rewind_step:
            callbacks.append(snap)
        if on_grads is not None:  # methods that read the gradients during training (movement pruning, early-bird)
            callbacks.append(OnGrads(lambda: on_grads(
                {n: p.detach() for n, p in named},
                {n: p.grad.detach() if p.grad is not None else torch.zeros_like(p) for n, p in named})))
        checkpoint = None
        if root is not None and not callbacks:  # a checkpoint carries neither a snapshot nor gradient readers
            checkpoint = Checkpoint(Layout.checkpoint(root), plan.config.matrix.checkpoint_minutes,
                                    key=_round_key(search_id, masks))
        log = train(model, loss_fn, examples, settings, device=study.device, enforcer=enforcer,
                    head_prefixes=heads, callbacks=callbacks, loader_workers=plan.config.finetune.loader_workers,
                    checkpoint=checkpoint)
        resumed = checkpoint.resumed_from if checkpoint is not None else 0
        if checkpoint is not None:
            checkpoint.clear()  # the round is complete: its ticket is stored next
        weights = {n: p.detach().to("cpu").clone() for n, p in named}
        return TrainResult(weights=weights, rewind=snap.value if rewind_step else None,
                           metrics={"train_s": round(log.seconds, 2), "steps": log.steps,
                                    "final_loss": log.history[-1]["loss"] if log.history else None,
                                    **({"resumed_from": resumed} if resumed else {})})

    return run


def run_search_job(job: SearchJob, run_dir: Path) -> dict:
    """Run one search unless its tickets are stored; returns the search record (also `search.json`)."""
    plan, search = job.plan, job.search
    cfg = plan.config
    torch.set_num_threads(cfg.matrix.threads)  # tickets must not depend on the worker count either
    load_plugins(cfg)  # a worker process imports the modules that register plugin methods
    study = cached_study(cfg, job.out)
    store = TicketStore(job.root)
    if job.is_stored():
        return {"status": "done", **_read_record(job.root)}
    study.check_digest(search.source.objective, job.data_hash)
    method = get_method(search.source.method)
    backbone = study.theta0(job.theta0_dir)
    named = _prunable(backbone, plan)
    theta0 = copy_weights({n: p for n, p in named})
    t0 = time.perf_counter()
    train_fn = make_train_fn(plan, study, job.theta0_dir, search, job.root, job.search_id) if search.trains else None

    def no_training(*_, **__):
        raise TicketbenchError(f"method {method.name} asked to train but is registered with trains=False")

    # The search's cost for the leaderboard: training steps and gradient / flow evaluations it asked for.
    cost = {"train_calls": 0, "train_steps": 0, "score_calls": 0, "flow_calls": 0, "calib_calls": 0,
            "calib_samples": 0}
    score_fn = make_score_fn(plan, study, job.theta0_dir, search.source.objective, search.search_seed)
    flow_fn = make_flow_fn(plan, study, job.theta0_dir)
    calib_fn = make_calib_fn(plan, study, job.theta0_dir, search.source.objective)

    def counted_calib(*a, **kw):
        stats = calib_fn(*a, **kw)
        cost["calib_calls"] += 1  # distinct calibration examples: the largest draw (every call redraws the same)
        cost["calib_samples"] = max([cost["calib_samples"]] + [s.samples for s in stats.values()])
        return stats

    def counted_train(start, masks, **kw):
        result = (train_fn or no_training)(start, masks, **kw)
        cost["train_calls"] += 1
        cost["train_steps"] += int(result.metrics.get("steps") or 0)
        return result

    def counted(fn, key):
        def call(*a, **kw):
            cost[key] += 1
            return fn(*a, **kw)
        return call

    # A derived method transforms its base ticket once per sparsity; the others see the whole ladder.
    groups = [(s,) for s in search.sparsities] if search.base else [search.sparsities]
    tickets = []
    for group in groups:
        base = Ticket.load(TicketStore(job.base_dir).path(search.base, group[0])) if search.base else None
        ctx = SearchContext(
            backbone=cfg.backbone.preset, fingerprint=fingerprint_of(named), theta0=theta0,
            train=counted_train, source=search.source.task, sparsities=group,
            seed=plan.search_seed + search.search_seed,
            score_fn=counted(score_fn, "score_calls"), flow_fn=counted(flow_fn, "flow_calls"),
            calib_fn=counted_calib, pattern=getattr(cfg.find, "pattern", "unstructured"),
            rewind_step=cfg.find.rewind_step, base_ticket=base, store=store,
            meta={"include": tuple(cfg.find.include), "exclude": tuple(cfg.find.exclude),
                  "model_numel": sum(p.numel() for p in backbone.parameters()),
                  # steps of one `train` call (gradual pruning schedules are fractions of it)
                  "train_steps": plan.search_settings(search.source, search.search_seed).steps if search.trains else None,
                  "num_heads": backbone.config.get("num_heads"),  # structured tickets (heads as units)
                  # The backbone's own initialiser, for controls that re-initialise (toy presets train
                  # from fan-in init, real ones from BERT's N(0, 0.02)).
                  "init": "fan_in_uniform" if plan.family == "toy" else "normal"},
        )
        tickets += method(ctx, search.hparams_dict)
    for t in tickets:
        store.put(t)
    # Structured tickets: the exported smaller model's latency against dense, on this device (leaderboard).
    latency = structured_latency(backbone, tickets) if method.structured and backbone.arch == "uniter" else None
    record = {
        "source": str(search.source), "method": method.name, "source_task": search.source.task,
        "sparsities": list(search.sparsities), "seconds": round(time.perf_counter() - t0, 2),
        "tickets": [{"sparsity": t.sparsity, "target": t.metadata["target_sparsity"],
                     "round": t.metadata.get("round"), "content_hash": t.content_hash,
                     "train_metrics": (t.metadata.get("extra") or {}).get("train_metrics"),
                     "flops_kept": _flops_kept(t)} for t in tickets],
        "cost": {**cost, **peak_memory(study.device)}, "pattern": ctx.pattern, "hparams": search.hparams_dict, "search_id": job.search_id, "env": environment(study.device),
        **({"latency": latency} if latency else {}),
    }
    atomic_write_json(Layout.search_log(job.root), record)
    return {"status": "done", **record}


def _flops_kept(ticket) -> float | None:
    """The ticket's theoretical FLOPs kept (`bench.cost.kept_flops`); None for a backbone the cost model
    cannot read (a plugin's): the leaderboard then shows '–', the search does not fail."""
    try:
        return round(kept_flops(ticket.backbone, ticket.masks), 6)
    except TicketbenchError:
        return None


def peak_memory(device) -> dict:
    """The search process's peak memory so far (a worker that ran several jobs reports the largest):
    resident set size in MB, and the GPU's peak allocation when it ran on one."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"peak_rss_mb": round(rss / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)}
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / (1 << 20), 1)
    return out


def _read_record(root: Path) -> dict:
    rec = read_json(Layout.search_log(root))
    return rec if isinstance(rec, dict) else {}
