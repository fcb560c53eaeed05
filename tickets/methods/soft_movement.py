"""Soft movement pruning: learned scores with a straight-through estimator and an L1 penalty.

Sanh, Wolf & Rush, "Movement Pruning: Adaptive Sparsity by Fine-Tuning", NeurIPS 2020 (the soft
variant; the hard top-k variant is `movement`). Every prunable weight has a score S, trained with the
model: the forward pass uses W ⊙ M with M = 1[σ(S) > τ], the straight-through estimator gives
∂L/∂S = ∂L/∂W' ⊙ W, and the penalty λ · mean σ(S) per tensor pushes scores down (Adam on the scores,
lr `score_lr`, as the reference trains them). Pruned weights keep their value (they get no gradient)
so a weight can come back when its score rises again. τ follows the cubic schedule of GMP (Zhu & Gupta)
from `begin` to `end` of the fine-tuning. Departure: the paper fixes τ and lets λ decide the final
sparsity; the ladder needs exact sparsities, so τ is placed where the schedule's sparsity s_t is
reached (one global threshold on σ(S), i.e. the top (1 − s_t) scores are kept). One fine-tuning per
ladder sparsity; the ticket is the final mask, applied to θ0 like every ticket of the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.common import keep_highest, ladder
from tickets.methods.gmp import cubic_sparsity
from tickets.registry import register_method
from tickets.search import SearchContext, copy_weights, ones_masks


@dataclass(frozen=True)
class SoftMovementHparams:
    score_lr: float = hp(0.01, "Adam learning rate of the scores (the reference's 1e-2)")
    lam: float = hp(1.0, "λ of the penalty λ · mean σ(S) per tensor (pushes scores down, i.e. towards pruning)")
    begin: float = hp(0.0, "start of the threshold's cubic schedule, as a fraction of the fine-tuning's steps")
    end: float = hp(0.75, "end of the schedule (the final sparsity from there on), as a fraction of the steps")

    def __post_init__(self) -> None:
        if not all(isinstance(x, (int, float)) for x in (self.score_lr, self.lam, self.begin, self.end)):
            return  # the registry's type check names the field
        if not self.score_lr > 0 or self.lam < 0:
            raise ConfigError(f"method 'soft_movement': need score_lr > 0 and lam >= 0, found {self.score_lr}, {self.lam}")
        if not 0.0 <= self.begin < self.end <= 1.0:
            raise ConfigError(f"method 'soft_movement': need 0 <= begin < end <= 1, found {self.begin}, {self.end}")


class ScoreAdam:
    """Adam (β = 0.9, 0.999, ε = 1e-8, bias-corrected) on the scores, float64 on the CPU."""

    def __init__(self, shapes: dict, lr: float):
        self.lr, self.t = lr, 0
        self.scores = {n: torch.zeros(s, dtype=torch.float64) for n, s in shapes.items()}
        self.m = {n: torch.zeros_like(s) for n, s in self.scores.items()}
        self.v = {n: torch.zeros_like(s) for n, s in self.scores.items()}

    def step(self, grads: dict) -> None:
        self.t += 1
        for n, g in grads.items():
            self.m[n].mul_(0.9).add_(g, alpha=0.1)
            self.v[n].mul_(0.999).addcmul_(g, g, value=0.001)
            m_hat, v_hat = self.m[n] / (1 - 0.9 ** self.t), self.v[n] / (1 - 0.999 ** self.t)
            self.scores[n].sub_(self.lr * m_hat / (v_hat.sqrt() + 1e-8))


def score_gradient(scores: dict, weight_grads: dict, full_weights: dict, lam: float) -> dict:
    """∂/∂S of L + λ Σ_t mean σ(S_t): the straight-through ∂L/∂W' ⊙ W plus λ σ'(S) / n_t."""
    out = {}
    for n, s in scores.items():
        sig = torch.sigmoid(s)
        out[n] = weight_grads[n] * full_weights[n] + lam * sig * (1 - sig) / s.numel()
    return out


@register_method("soft_movement", SoftMovementHparams, family="training-based",
                 trains_per_sparsity=True,
                 citation="Sanh, Wolf & Rush, NeurIPS 2020 (soft movement pruning)",
                 publishes="a trained network (pruned while fine-tuning)")
def soft_movement(ctx: SearchContext, hparams: SoftMovementHparams) -> list:
    """Per ladder sparsity: one fine-tuning learning scores (straight-through + L1 on σ(S)), the mask
    being the top (1 − s_t) scores on the cubic schedule; the final mask is the ticket."""
    total = ctx.meta.get("train_steps")
    if not isinstance(total, int) or total < 1:
        raise TicketError("method 'soft_movement' needs the steps of a source fine-tuning (ctx.meta['train_steps'])")
    t0 = round(hparams.begin * total)
    t_end = max(round(hparams.end * total), t0 + 1)
    tickets = []
    for s in ladder(ctx, "soft_movement"):
        opt = ScoreAdam({n: tuple(w.shape) for n, w in ctx.theta0.items()}, hparams.score_lr)
        state = {"step": 0, "masks": ones_masks(ctx.theta0), "shadow": {}}

        def on_grads(weights: dict, grads: dict, s=s, opt=opt, state=state) -> bool:
            step = state["step"]
            state["step"] += 1
            masks = state["masks"]
            live = {n: w.detach().to("cpu", torch.float64) for n, w in weights.items()}
            # pruned weights are 0 in the live tensors; their value is the one they had when pruned
            full = {n: torch.where(masks[n], live[n], state["shadow"].get(n, live[n])) for n in live}
            opt.step(score_gradient(opt.scores, {n: g.detach().to("cpu", torch.float64) for n, g in grads.items()},
                                    full, hparams.lam))
            target = cubic_sparsity(step + 1, s, 0.0, t0, t_end)
            new = keep_highest(opt.scores, target, "global", method="soft_movement") if target > 0 else masks
            with torch.no_grad():
                for n, w in weights.items():
                    state["shadow"][n] = full[n]  # a weight pruned now keeps this value
                    keep = new[n].to(w.device)
                    w.copy_(full[n].to(w.device, w.dtype) * keep)  # revived weights get their value back
                    grads[n].mul_(keep)
            state["masks"] = new
            return False

        theta0 = copy_weights(ctx.theta0)
        result = ctx.train(theta0, ones_masks(theta0), on_grads=on_grads)
        masks = keep_highest(opt.scores, s, "global", method="soft_movement")  # the schedule's end: exactly s
        tickets.append(ctx.make_ticket(masks, method="soft_movement", hparams=hparams, target_sparsity=s,
                                       extra={"score_steps": opt.t, "train_metrics": dict(result.metrics)}))
    return tickets
