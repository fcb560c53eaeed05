"""Controls of an existing ticket: its mask on re-initialised or on shuffled weights.

The masks are the base ticket's; the weight transform is recorded in the metadata and performed
by `Ticket.apply` (so the same file always yields the same weights).

`reinit` draws from the backbone's *own* initialiser, as the papers do (BERT's N(0, 0.02) for a
BERT-initialised model): a control drawn from another distribution than the one the model trains
from would be handicapped. The toy presets train from PyTorch's fan-in Linear init
(`bench.backbones.presets.tiny_init`; N(0, 0.02) leaves their attention blind), so their reinit
control is U(±1/sqrt(fan_in)). The runner names the initialiser in `ctx.meta["init"]`
("normal" or "fan_in_uniform"); without it, presets named "toy-*" get "fan_in_uniform" and the
others BERT's "normal".
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import ConfigError
from bench.core.hparams import hp
from tickets.methods.common import need_base
from tickets.registry import register_method
from tickets.search import SearchContext
from tickets.ticket import REINIT_INITS, REINIT_STD


@dataclass(frozen=True)
class ReinitHparams:
    init: str = hp("auto", "auto: the backbone's own initialiser; normal: N(0, std); "
                           "fan_in_uniform: U(±1/sqrt(fan_in)), PyTorch's Linear default")
    std: float = hp(REINIT_STD, "standard deviation of the N(0, std) initialisation (init normal)")


def backbone_init(ctx: SearchContext) -> str:
    """The initialiser the backbone trains from: the runner's `ctx.meta["init"]`, else by preset name."""
    init = ctx.meta.get("init") or ("fan_in_uniform" if str(ctx.backbone).startswith("toy-") else "normal")
    if init not in REINIT_INITS:
        raise ConfigError(f"method 'reinit': initialiser {init!r} must be one of {', '.join(REINIT_INITS)}")
    return init


@dataclass(frozen=True)
class ShuffleHparams:
    """No hyperparameters: values are permuted within each tensor with the search seed."""


def _control(ctx: SearchContext, hparams, method: str, **weights) -> list:
    base = need_base(ctx, method)
    return [ctx.make_ticket(
        {n: m.clone() for n, m in base.masks.items()}, method=method, hparams=hparams,
        target_sparsity=base.metadata["target_sparsity"], source=f"{method}:{ctx.source}",
        round=base.metadata.get("round"), weights=method, pattern=base.metadata.get("pattern", "unstructured"), weights_seed=ctx.seed,
        extra={"base_source": base.metadata.get("source"), "base_content_hash": base.content_hash}, **weights,
    )]


@register_method("reinit", ReinitHparams, trains=False, base="imp", patterns=True,
                 citation="Frankle & Carbin 2019 (random re-initialisation control)")
def reinit(ctx: SearchContext, hparams: ReinitHparams) -> list:
    """The base ticket's mask on freshly initialised weights (the backbone's own initialiser)."""
    if hparams.init not in ("auto",) + REINIT_INITS:
        raise ConfigError(f"method 'reinit': init must be auto, {', '.join(REINIT_INITS)}; found {hparams.init!r}")
    init = backbone_init(ctx) if hparams.init == "auto" else hparams.init
    std = {"weights_std": hparams.std} if init == "normal" else {}
    return _control(ctx, hparams, "reinit", weights_init=init, **std)


@register_method("shuffle", ShuffleHparams, trains=False, base="imp", patterns=True,
                 citation="Frankle et al. 2021 (layer-wise weight shuffling control)")
def shuffle(ctx: SearchContext, hparams: ShuffleHparams) -> list:
    """The base ticket's mask with the weights permuted within each tensor."""
    return _control(ctx, hparams, "shuffle")
