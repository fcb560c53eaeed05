"""GMP: gradual magnitude pruning during fine-tuning, on the cubic schedule.

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model compression", 2017
(ICLR 2018 workshop). During one fine-tuning on the source, every `frequency` steps from step t0 to
t0 + nΔt the weights with the smallest |w| are pruned to
    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (nΔt))³,
fast at first and slowly near the final sparsity s_f; pruned weights stay pruned, and training goes on
with the mask fixed after the last step. One fine-tuning per ladder sparsity (s_f). The ticket is the
final mask, applied to θ0 like every ticket of the matrix (the trained weights are not kept).

Mechanics: pruning happens in the training loop's `on_grads` hook (after backward, before the optimizer
step): the pruned weights are zeroed and their gradients masked at every step. An optimizer with momentum
can still move a just-pruned weight by one step's update before it is zeroed again; the mask, which is
what the ticket keeps, is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.common import ladder, magnitude_fn
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class GMPHparams:
    initial_sparsity: float = hp(0.0, "s_i: the sparsity of the first pruning step")
    begin: float = hp(0.0, "t0 as a fraction of the fine-tuning's steps")
    end: float = hp(0.75, "t0 + nΔt as a fraction of the fine-tuning's steps (the final sparsity is reached there)")
    frequency: int = hp(10, "Δt: prune every this many steps")
    scope: str = hp("global", "global: one magnitude threshold over all prunable weights; layerwise: per tensor")

    def __post_init__(self) -> None:
        if not all(isinstance(x, (int, float)) for x in (self.initial_sparsity, self.begin, self.end)):
            return  # the registry's type check names the field
        if not 0.0 <= self.begin < self.end <= 1.0:
            raise ConfigError(f"method 'gmp': need 0 <= begin < end <= 1, found begin={self.begin} end={self.end}")
        if not 0.0 <= self.initial_sparsity < 1.0:
            raise ConfigError(f"method 'gmp': initial_sparsity must be in [0, 1), found {self.initial_sparsity}")
        if isinstance(self.frequency, int) and self.frequency < 1:
            raise ConfigError(f"method 'gmp': frequency must be >= 1, found {self.frequency}")


def cubic_sparsity(step: int, final: float, initial: float, t0: int, t_end: int) -> float:
    """Zhu & Gupta's s_t: s_i before t0 … s_f from t_end on, cubic in between."""
    if step <= t0:
        return initial
    if step >= t_end:
        return final
    return final + (initial - final) * (1.0 - (step - t0) / (t_end - t0)) ** 3


def pruning_steps(total: int, hparams: GMPHparams) -> tuple[int, int, list[int]]:
    """(t0, t_end, the 0-based steps before which it prunes: t0, t0 + Δt, …, and t_end itself)."""
    t0 = round(hparams.begin * total)
    t_end = max(round(hparams.end * total), t0 + 1)
    return t0, t_end, sorted(set(range(t0, t_end, hparams.frequency)) | {t_end})


@register_method("gmp", GMPHparams, family="training-based", trains_per_sparsity=True,
                 citation="Zhu & Gupta 2017 (gradual magnitude pruning, cubic schedule)",
                 publishes="a trained network (pruned while fine-tuning)")
def gmp(ctx: SearchContext, hparams: GMPHparams) -> list:
    """Per ladder sparsity: one fine-tuning from θ0 pruning by magnitude on the cubic schedule."""
    total = ctx.meta.get("train_steps")
    if not isinstance(total, int) or total < 1:
        raise TicketError("method 'gmp' needs the number of steps of a source fine-tuning (ctx.meta['train_steps'])")
    t0, t_end, when = pruning_steps(total, hparams)
    prune = magnitude_fn("gmp", hparams.scope)
    tickets = []
    for s in ladder(ctx, "gmp"):
        if hparams.initial_sparsity > s:
            raise ConfigError(f"method 'gmp': initial_sparsity {hparams.initial_sparsity} is above the target {s}")
        state = {"step": 0, "masks": ones_masks(ctx.theta0), "schedule": []}

        def on_grads(weights: dict, grads: dict, s=s, state=state) -> bool:
            step = state["step"]  # 0-based: the optimizer step about to be taken
            state["step"] += 1
            if step in when:
                target = cubic_sparsity(step, s, hparams.initial_sparsity, t0, t_end)
                live = {n: w.to("cpu", torch.float32) for n, w in weights.items()}
                state["masks"] = prune(live, target, state["masks"])
                state["schedule"].append([step, round(target, 6)])
            with torch.no_grad():
                for n, w in weights.items():
                    keep = state["masks"][n].to(w.device)
                    w.mul_(keep)  # in place: these share storage with the live parameters
                    grads[n].mul_(keep)
            return False

        theta0 = copy_weights(ctx.theta0)
        result = ctx.train(theta0, ones_masks(theta0), on_grads=on_grads)
        if state["step"] <= t_end:  # the run ended before t_end: finish the schedule on its final weights
            state["masks"] = prune({n: w.float() for n, w in result.weights.items()}, s, state["masks"])
            state["schedule"].append([state["step"], s])
        tickets.append(ctx.make_ticket(state["masks"], method="gmp", hparams=hparams, target_sparsity=s,
                                       extra={"schedule": state["schedule"], "train_metrics": dict(result.metrics)}))
    return tickets
