"""Helpers shared by the built-in methods."""

from __future__ import annotations

from bench.core.errors import ConfigError, TicketError
from tickets.magnitude import check_sparsity, global_magnitude_masks, layerwise_magnitude_masks
from tickets.patterns import UNSTRUCTURED, nm_masks, parse_pattern, pattern_sparsity

SCOPES = {"global": global_magnitude_masks, "layerwise": layerwise_magnitude_masks}


def magnitude_fn(method: str, scope: str, pattern: str = UNSTRUCTURED):
    """global_magnitude_masks or layerwise_magnitude_masks by name; under an N:M `pattern` (find.pattern)
    N of every M inputs of each row by |w| instead, at the pattern's one sparsity."""
    if scope not in SCOPES:
        raise ConfigError(f"method '{method}': scope must be one of {', '.join(SCOPES)}, found {scope!r}")
    if parse_pattern(pattern) is None:
        return SCOPES[scope]

    def by_pattern(weights: dict, sparsity: float, current: dict | None = None) -> dict:
        if abs(sparsity - pattern_sparsity(pattern)) > 1e-9:
            raise TicketError(f"method '{method}': pattern {pattern} has sparsity {pattern_sparsity(pattern):g}, "
                              f"asked for {sparsity:g}")
        return nm_masks({n: w.detach().abs() for n, w in weights.items()}, pattern, current, f"method '{method}'")

    return by_pattern


def ladder(ctx, method: str) -> list[float]:
    """The context's sparsities, validated, sorted, without 0 (the dense model is no ticket)."""
    out = sorted({check_sparsity(s, f"method '{method}': ladder sparsity") for s in ctx.sparsities} - {0.0})
    if not out:
        raise TicketError(f"method '{method}': the sparsity ladder has no sparsity above 0")
    return out


def need_base(ctx, method: str):
    """The context's base ticket, checked to belong to the same backbone."""
    base = ctx.base_ticket
    if base is None:
        raise TicketError(f"method '{method}' needs a base ticket (e.g. the imp:{ctx.source} ticket) to transform")
    if base.fingerprint != ctx.fingerprint:
        raise TicketError(
            f"method '{method}': base ticket is for backbone '{base.backbone}' (fingerprint {base.fingerprint}),"
            f" the search is on '{ctx.backbone}' (fingerprint {ctx.fingerprint})"
        )
    return base


def keep_highest(scores: dict, sparsity: float, scope: str = "global", current: dict | None = None,
                 method: str = "method", pattern: str = UNSTRUCTURED) -> dict:
    """Masks keeping the highest *signed* scores (magnitude pruning ranks |x|, so the scores are
    shifted by their global minimum first: an order-preserving map onto non-negative numbers)."""
    low = min(float(s.min()) for s in scores.values())
    # float32, as magnitude pruning ranks in float32 anyway (half the memory of float64 on 85M weights)
    shifted = {n: s.detach().float() - low for n, s in scores.items()}
    return magnitude_fn(method, scope, pattern)(shifted, sparsity, current)


def score_tickets(ctx, method: str, hparams, scores: dict, scope: str = "global", extra: dict | None = None) -> list:
    """One ticket per ladder sparsity keeping the highest scores."""
    return [ctx.make_ticket(keep_highest(scores, s, scope, method=method, pattern=ctx.pattern), method=method,
                            hparams=hparams,
                            target_sparsity=s, extra=extra)
            for s in ladder(ctx, method)]


def need(ctx, method: str, hook: str):
    """The context's `score_fn` / `flow_fn`, or a one-line error naming what the method needs."""
    fn = getattr(ctx, hook, None)
    if fn is None:
        raise TicketError(f"method '{method}' needs the search context's {hook} (the runner or toy_context gives it)")
    return fn


def mean_grads(ctx, method: str, weights: dict, masks: dict, batches: int, first_batch: int = 0) -> dict:
    """Source-loss gradients at weights ⊙ masks averaged over `batches` seeded batches
    (first_batch, first_batch + 1, …, so a later call can revisit the same batches)."""
    if batches < 1:
        raise ConfigError(f"method '{method}': score_batches must be >= 1, found {batches}")
    score_fn = need(ctx, method, "score_fn")
    total: dict = {}
    for b in range(first_batch, first_batch + batches):
        for n, g in score_fn(weights, masks, batch=b).items():
            total[n] = total.get(n, 0) + g.detach().float() / batches
    return total
