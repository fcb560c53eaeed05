"""The matrix stage's unit of work: fine-tune θ0 ⊙ m on one target task and score it.

`make_pairs` turns the plan's cells into `PairSpec`s (tickets resolved, content hashes taken);
`finetune_pair` is the module-level pair function every executor (in-process, worker processes, Ray)
calls.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.backbones import task_model
from bench.core.errors import RunFailed, TicketbenchError
from bench.core.identity import dataclass_identity
from bench.core.layout import Layout
from bench.plan import Plan, key_settings
from bench.runner import progress
from bench.runner.pairs import PairSpec
from bench.runner.study import Study, cached_study, environment
from bench.tasks import TASKS, write_vqa_predictions
from bench.training import OnStep, evaluate_task, train
from bench.training.adversarial import ROBUST_HEADS, robust_evaluate
from bench.training.checkpoint import Checkpoint
from tickets import MaskEnforcer, Ticket, TicketStore, select_prunable

# Ticket metadata that decides the weights its kept entries start from besides θ0 (`Ticket.apply`:
# the controls' transform and its seed); the masks and θk of late rewinding are in the content hash.
WEIGHT_FIELDS = ("weights", "weights_init", "weights_std", "weights_seed")


def ticket_weights(meta: dict) -> dict:
    """The part of a run's identity that says how the ticket's weights start ({} for θ0's own)."""
    if meta.get("weights", "pretrained") == "pretrained":
        return {}
    return {k: meta[k] for k in WEIGHT_FIELDS if k in meta}


def pair_identity(plan: Plan, settings, theta0_rel: str) -> dict:
    """Everything a run's numbers depend on besides ticket and θ0 content (hashed into its run id)."""
    ft = plan.config.finetune
    return {
        "settings": dataclass_identity(settings),
        "eval": {"max_text_len": ft.max_text_len, "dev_limit": ft.dev_limit, "eval_batch_size": ft.eval_batch_size},
        "world": key_settings(plan.config, "world"), "backbone": key_settings(plan.config, "backbone"),
        "theta0_dir": theta0_rel,  # not matrix.threads nor finetune.loader_workers: execution only
    }


def make_pairs(plan: Plan, study: Study, theta0_dir: Path, ticket_roots: dict, cells=None) -> list[PairSpec]:
    """One PairSpec per cell of the plan (or of `cells`: adaptive seeds add cells wave by wave); `ticket_roots`
    maps each search, (Source, search replicate), to its ticket folder.
    Cells whose tickets are identical get the same run id (the runner trains it once). Each run id covers its
    task's data digest, taken here once in the parent: workers receive it and check their copy against it."""
    out = study.out
    theta0_hash = Layout.done(theta0_dir).read_text().strip()
    theta0_rel = str(theta0_dir.resolve().relative_to(out.resolve()))
    preset = plan.config.backbone.preset
    tickets: dict[Path, tuple] = {}
    settings_of: dict = {}
    pairs = []
    for cell in plan.cells if cells is None else cells:
        key = (cell.task, cell.seed, cell.steps_factor)
        if key not in settings_of:
            s = plan.finetune_settings(*key)
            settings_of[key] = (s, pair_identity(plan, s, theta0_rel))
        settings, identity = settings_of[key]
        split = TASKS.get(cell.task).splits[1]
        path = ticket_hash = None
        weights: dict = {}
        if not cell.source.is_dense:
            path = TicketStore(ticket_roots[(cell.source, cell.search_seed)]).path(cell.source, cell.sparsity)
            if not path.exists():
                raise TicketbenchError(f"no ticket for source {cell.source} at sparsity {cell.sparsity:.0%} "
                                       f"({path} is missing); run `ticketbench find` first")
            if path not in tickets:
                t = Ticket.load(path)
                tickets[path] = (t.content_hash, ticket_weights(t.metadata))
            ticket_hash, weights = tickets[path]
        pairs.append(PairSpec(
            preset, str(cell.source), cell.source.method, cell.source.task, cell.sparsity, cell.task, cell.seed,
            str(path.resolve()) if path else None, ticket_hash, theta0_hash, split,
            data_hash=study.data_digest(cell.task), config=identity, ticket_weights=weights, steps_factor=cell.steps_factor,
            search_seed=cell.search_seed, settings=settings, study=(plan.config, str(out), str(theta0_dir)),
            task_version=TASKS.get(cell.task).version,
        ))
    return pairs


def finetune_pair(pair: PairSpec, run_dir: Path) -> dict:
    """Fine-tune θ0 ⊙ m of `pair` on its task, evaluate on its split, audit the mask; return the record."""
    t_start = time.perf_counter()
    cfg, out, theta0_dir = pair.study
    # A fixed intra-op thread count per run: the same numbers with 1 or N workers, on Ray, cached or not.
    torch.set_num_threads(cfg.matrix.threads)
    study = cached_study(cfg, out)
    study.check_digest(pair.task, pair.data_hash)
    spec = TASKS.get(pair.task)
    backbone = study.theta0(theta0_dir).set_max_text_len(cfg.finetune.max_text_len)
    enforcer = ticket = None
    named: list = []
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
    model = task_model(backbone, spec, study.labels(pair.task), hard_negatives=pair.settings.hard_negatives)
    store = study.store_for(pair.task)
    no_finetune = (without_finetuning(model, ticket, named, spec, study, cfg, pair)
                   if getattr(model, "head_from_theta0", False) else None)
    # Saved every matrix.checkpoint_minutes into the run's folder; a rerun of this run id resumes from it.
    checkpoint = Checkpoint(Layout.checkpoint(run_dir), cfg.matrix.checkpoint_minutes, key=pair.run_id)
    log = train(model, model.batch_loss(store), study.train_examples(pair.task), pair.settings,
                device=study.device, enforcer=enforcer, callbacks=[OnStep(progress.report)], checkpoint=checkpoint,
                loader_workers=cfg.finetune.loader_workers)
    audit = enforcer.audit() if enforcer else {"pruned": 0, "nonzero_pruned": 0, "trained_sparsity": 0.0}
    if audit["nonzero_pruned"]:
        raise RunFailed(f"mask audit: {audit['nonzero_pruned']} pruned weights are non-zero after training")
    split, examples = study.eval_examples(pair.task)
    metrics, predictions, eval_s = evaluate_task(model, spec, examples, store, cfg.finetune.eval_batch_size,
                                                 bf16=pair.settings.bf16, workers=cfg.finetune.loader_workers)
    if pair.task == "vqa":
        write_vqa_predictions(Layout.predictions(run_dir), predictions)
    value = metrics[spec.headline]
    if not torch.isfinite(torch.tensor(float(value))):
        raise RunFailed(f"metric {spec.headline} is not finite")
    robust = {}
    if pair.settings.adv_eval_steps and model.kind not in ROBUST_HEADS:
        robust = {"robust": {"skipped": f"head '{model.kind}' has no single gold label to attack"}}
    elif pair.settings.adv_eval_steps:  # the same eval split under the adversarial regime's attack
        st = pair.settings
        r_metrics, r_s = robust_evaluate(model, spec, examples, store, st.adv_eval_steps, st.adv_epsilon,
                                         st.adv_step_size, cfg.finetune.eval_batch_size)
        robust = {"robust": {"steps": st.adv_eval_steps, "epsilon": st.adv_epsilon, "step_size": st.adv_step_size,
                             "value": float(r_metrics[spec.headline]), "metrics": r_metrics,
                             "eval_s": round(r_s, 3)}}
    checkpoint.clear()  # complete: the runner writes the record next
    return {
        **({"resumed_from": checkpoint.resumed_from} if checkpoint.resumed_from else {}),
        "status": "done", "metric": spec.headline, "value": float(value), "metrics": metrics,
        "chance": study.chance(pair.task, spec.headline), "history": log.history, "mask_audit": audit,
        "timings": {"train_s": round(log.seconds, 3), "eval_s": round(eval_s, 3),
                    "total_s": round(time.perf_counter() - t_start, 3),
                    # per optimizer step trained here, and the share of it spent waiting for the host's
                    # batches: `ticketbench plan --out` reads them (measured MFU, host wait) from GPU runs
                    "step_s": round(log.seconds / max(log.trained, 1), 6),
                    "host_wait_s": round(log.wait_seconds, 3)},
        "env": environment(study.device), "eval_examples": len(examples), **robust,
        **({"no_finetune": no_finetune} if no_finetune else {}),
    }


def without_finetuning(model, ticket, named, spec, study, cfg, pair) -> dict:
    """The pruned model scored as it is, before any training (its head from θ0): θ0 ⊙ m, or the
    method's reconstructed weights when its ticket keeps them (SparseGPT). The weights and the RNG
    are restored, so the fine-tuning that follows is the one it would be without this."""
    rec = ticket.reconstructed() if ticket is not None else None
    params = dict(named) if rec else {}
    saved = {n: params[n].detach().clone() for n in rec or {} if n in params}
    rng = torch.get_rng_state()
    try:
        with torch.no_grad():
            for n in saved:
                params[n].copy_(rec[n].to(params[n].device, params[n].dtype))
        _, examples = study.eval_examples(pair.task)
        metrics, _, _ = evaluate_task(model, spec, examples, study.store_for(pair.task), cfg.finetune.eval_batch_size,
                                      bf16=pair.settings.bf16, workers=cfg.finetune.loader_workers)
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)
        torch.set_rng_state(rng)
    return {"value": float(metrics[spec.headline]), "weights": "reconstructed" if saved else "θ0 ⊙ m"}
