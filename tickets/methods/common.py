"""Helpers shared by the built-in methods."""

from __future__ import annotations

from bench.core.errors import ConfigError, TicketError
from tickets.magnitude import check_sparsity, global_magnitude_masks, layerwise_magnitude_masks

SCOPES = {"global": global_magnitude_masks, "layerwise": layerwise_magnitude_masks}


def magnitude_fn(method: str, scope: str):
    """global_magnitude_masks or layerwise_magnitude_masks by name."""
    if scope not in SCOPES:
        raise ConfigError(f"method '{method}': scope must be one of {', '.join(SCOPES)}, found {scope!r}")
    return SCOPES[scope]


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
