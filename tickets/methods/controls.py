"""Controls of an existing ticket: its mask on re-initialised or on shuffled weights.

The masks are the base ticket's; the weight transform is recorded in the metadata and performed
by `Ticket.apply` (so the same file always yields the same weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hparams import hp
from tickets.methods.common import need_base
from tickets.registry import register_method
from tickets.search import SearchContext
from tickets.ticket import REINIT_STD


@dataclass(frozen=True)
class ReinitHparams:
    std: float = hp(REINIT_STD, "standard deviation of the fresh N(0, std) initialisation")


@dataclass(frozen=True)
class ShuffleHparams:
    """No hyperparameters: values are permuted within each tensor with the search seed."""


def _control(ctx: SearchContext, hparams, method: str, **weights) -> list:
    base = need_base(ctx, method)
    return [ctx.make_ticket(
        {n: m.clone() for n, m in base.masks.items()}, method=method, hparams=hparams,
        target_sparsity=base.metadata["target_sparsity"], source=f"{method}:{ctx.source}",
        round=base.metadata.get("round"), weights=method, weights_seed=ctx.seed,
        extra={"base_source": base.metadata.get("source"), "base_content_hash": base.content_hash}, **weights,
    )]


@register_method("reinit", ReinitHparams, trains=False, base="imp",
                 citation="Frankle & Carbin 2019 (random re-initialisation control)")
def reinit(ctx: SearchContext, hparams: ReinitHparams) -> list:
    """The base ticket's mask on freshly initialised N(0, std) weights."""
    return _control(ctx, hparams, "reinit", weights_std=hparams.std)


@register_method("shuffle", ShuffleHparams, trains=False, base="imp",
                 citation="Frankle et al. 2021 (layer-wise weight shuffling control)")
def shuffle(ctx: SearchContext, hparams: ShuffleHparams) -> list:
    """The base ticket's mask with the weights permuted within each tensor."""
    return _control(ctx, hparams, "shuffle")
