"""Iterative magnitude pruning with rewinding (to θ0, or to step k of the first fine-tuning)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.common import ladder, magnitude_fn
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks
from tickets.ticket import Ticket

MODES = ("ladder", "of_original", "of_remaining")
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class IMPHparams:
    mode: str = hp("ladder", "ladder: prune to each ladder sparsity in turn; of_original / of_remaining: "
                             "prune prune_fraction of the original / remaining weights per round")
    prune_fraction: float = hp(0.1, "fraction pruned per round in the of_original / of_remaining modes "
                                    "(the papers prune 10% per round)")
    rounds: int = hp(0, "rounds in the fraction modes (0 = until the highest ladder sparsity is reached)")

    def __post_init__(self) -> None:
        # Checked when the plan is built, before any search runs (types are the registry's check).
        if not isinstance(self.prune_fraction, (int, float)) or not isinstance(self.rounds, int):
            return
        if self.mode not in MODES:
            raise ConfigError(f"method 'imp': mode must be one of {', '.join(MODES)}, found {self.mode!r}")
        if not 0.0 < self.prune_fraction < 1.0:
            raise ConfigError(f"method 'imp': prune_fraction must be in (0, 1), found {self.prune_fraction}")
        if self.rounds < 0:
            raise ConfigError(f"method 'imp': rounds must be >= 0, found {self.rounds}")


def imp_schedule(hparams: IMPHparams, sparsities) -> list[float]:
    """Target sparsity after each round."""
    if hparams.mode not in MODES:
        raise ConfigError(f"method 'imp': mode must be one of {', '.join(MODES)}, found {hparams.mode!r}")
    top = max(sparsities)
    if hparams.mode == "ladder":
        return list(sparsities)
    p = hparams.prune_fraction
    if not 0.0 < p < 1.0:
        raise ConfigError(f"method 'imp': prune_fraction must be in (0, 1), found {p}")
    if hparams.rounds < 0:
        raise ConfigError(f"method 'imp': rounds must be >= 0, found {hparams.rounds}")
    # Count the rounds before making them: prune_fraction=1e-9 would otherwise plan a billion rounds.
    if hparams.rounds:
        n = hparams.rounds
    elif hparams.mode == "of_original":
        n = math.ceil(top / p)
    else:
        n = math.ceil(math.log1p(-top) / math.log1p(-p)) if top > 0 else 1
    if n > MAX_ROUNDS:
        raise ConfigError(f"method 'imp': prune_fraction={p} and rounds={hparams.rounds} would make {n} rounds "
                          f"(one search each) to reach {top:g}, more than {MAX_ROUNDS}; prune a larger fraction "
                          "per round or set rounds")
    targets, r = [], 0
    while True:
        r += 1
        s = round(r * p if hparams.mode == "of_original" else 1.0 - (1.0 - p) ** r, 10)
        if s >= 1.0 or (hparams.rounds and r > hparams.rounds):
            break
        targets.append(s)
        if not hparams.rounds and s >= top - 1e-9:
            break
    return targets


@register_method("imp", IMPHparams, patterns=True, yields=lambda hp, ladder: imp_schedule(hp, sorted(ladder)), citation="Frankle & Carbin 2019; Chen et al. 2020 (IMP, rewinding to θ0)")
def imp(ctx: SearchContext, hparams: IMPHparams) -> list:
    """Fine-tune → prune globally → rewind the survivors → repeat; one ticket per round.

    Rewinding goes to θ0, or with `ctx.rewind_step` k > 0 to θk, the prunable weights at step k of
    the first round (late rewinding); every ticket then carries θk (`Ticket.rewind_weights`), so
    fine-tuning it starts from m ⊙ θk. With `ctx.store`, each round's ticket is stored as soon as
    the round ends and a search started again resumes after the last stored round (a round's
    ticket holds everything the next round needs: its masks and, for late rewinding, θk).
    """
    targets = imp_schedule(hparams, ladder(ctx, "imp"))
    late = ctx.rewind_step > 0
    # A private deep copy: the runner's θ0 tensors may be live parameters that training mutates.
    theta0 = copy_weights(ctx.theta0)
    rewind_point = theta0
    masks = ones_masks(theta0)
    prune = magnitude_fn("imp", "global", ctx.pattern)
    tickets = []
    for r, target in enumerate(targets, 1):
        stored = _stored_round(ctx, hparams, r, target) if len(tickets) == r - 1 else None
        if stored is not None:
            masks = {n: m.clone() for n, m in stored.masks.items()}
            if late:
                rewind_point = copy_weights(_check_weights(stored.starting_weights(), theta0))
            tickets.append(stored)
            continue
        result = ctx.train(copy_weights(rewind_point), {n: m.clone() for n, m in masks.items()})
        trained = _check_weights(result.weights, theta0)
        if r == 1 and late:
            if result.rewind is None:
                raise TicketError(f"late rewinding to step {ctx.rewind_step} needs train() to return the step's weights")
            rewind_point = copy_weights(_check_weights(result.rewind, theta0))
        masks = prune(trained, target, current=masks)
        ticket = ctx.make_ticket(
            masks, method="imp", hparams=hparams, target_sparsity=target, round=r,
            extra={"rewind_step": ctx.rewind_step, "train_metrics": dict(result.metrics)},
            rewind_weights=rewind_point if late else None, rewind_step=ctx.rewind_step,
        )
        if ctx.store is not None:
            ctx.store.put(ticket)  # before the next round: a pre-empted search keeps this one
        tickets.append(ticket)
    return tickets


def _stored_round(ctx: SearchContext, hparams: IMPHparams, r: int, target: float):
    """Round r's ticket from `ctx.store` when it was found by this very search, else None."""
    import dataclasses

    if ctx.store is None:
        return None
    path = ctx.store.path(f"imp:{ctx.source}", target)
    if not path.exists():
        return None
    try:
        t = Ticket.load(path)
        start = t.starting_weights() if ctx.rewind_step > 0 else None
    except TicketError:
        return None  # unreadable or incomplete: the round is found again and the file replaced
    m = t.metadata
    same = (m["method"] == "imp" and m["round"] == r and abs(m["target_sparsity"] - target) < 1e-9
            and t.fingerprint == ctx.fingerprint and m["seed"] == ctx.seed
            and m["hparams"] == dataclasses.asdict(hparams)
            and (m.get("extra") or {}).get("rewind_step", 0) == ctx.rewind_step
            and (start is not None) == (ctx.rewind_step > 0))
    return t if same else None


def _check_weights(weights: dict, theta0: dict) -> dict:
    for name, t in theta0.items():
        if name not in weights or tuple(weights[name].shape) != tuple(t.shape):
            raise TicketError(f"train() returned no weights of shape {tuple(t.shape)} for '{name}'")
    return {n: weights[n] for n in theta0}
