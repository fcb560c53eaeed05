"""The pruning-method registry: a method is a function `(ctx, hparams) -> list[Ticket]` plus a
frozen hyperparameter dataclass, registered with `@register_method(name, HparamsClass, ...)` or found
through the `ticketbench.methods` entry-point group.

A method declares what it needs, so the runner never names one: whether it trains on its source
(`trains`), whether it transforms the ticket of another method found on the same source (`base`,
e.g. the controls re-use IMP's ticket: a branch of that ticket), and its citation."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import coerce_value
from bench.core.registry import Registry, suggest

METHODS: Registry = Registry("pruning method", entry_point_group="ticketbench.methods")


@dataclass(frozen=True)
class PruningMethod:
    """A registered method; calling it validates the hyperparameters first."""

    name: str
    fn: Callable
    hparams_cls: type
    trains: bool = True  # False: needs no training on its source (ctx.train is not provided)
    base: str | None = None  # method whose ticket (same source task, same sparsity) this one transforms
    citation: str = ""
    # (hparams, ladder) -> the target sparsities its tickets will have; None: exactly the ladder.
    yields: Callable | None = None
    # Whether its tickets can follow an N:M `find.pattern` (else the plan refuses the pattern for it).
    patterns: bool = False
    # "data-free", "calibration" (reads source data, never trains) or "training-based"; None: from `trains`.
    family_name: str | None = None
    # (ctx, hparams) -> {name: score}, higher = keep: a score-based method's scores, for allocators (OWL).
    scores: Callable | None = None
    # It fine-tunes once per ladder sparsity (GMP, soft movement), for `bench.cost`'s estimate.
    trains_per_sparsity: bool = False
    # Its tickets remove whole attention heads and FFN neurons (`tickets.structured`): exportable smaller.
    structured: bool = False
    # What the paper publishes besides the mask: None (θ0 ⊙ m itself, or a ticket rewound to θ0 as in IMP),
    # or e.g. "a trained network" — the matrix still rewinds the mask to θ0, and the leaderboard says so.
    publishes: str | None = None

    @property
    def family(self) -> str:
        return self.family_name or ("training-based" if self.trains else "data-free")

    def target_sparsities(self, hparams: Any, ladder) -> tuple:
        """The sparsities this method's tickets will carry for `ladder` (checked before any search)."""
        if self.yields is None:
            return tuple(ladder)
        return tuple(sorted({round(float(s), 6) for s in self.yields(self.make_hparams(hparams), ladder)}))

    def make_hparams(self, hparams: Any = None):
        """Hyperparameters from None (defaults), a mapping (coerced, e.g. from YAML) or an instance."""
        cls = self.hparams_cls
        if hparams is None:
            return cls()
        if isinstance(hparams, dict):
            known = {f.name: f for f in dataclasses.fields(cls)}
            kwargs = {}
            for k, v in hparams.items():
                if k not in known:
                    raise ConfigError(f"method '{self.name}': unknown hyperparameter '{k}'{suggest(k, list(known))}")
                kwargs[k] = coerce_value(v, known[k].default, f"method '{self.name}': {k}")
            return cls(**kwargs)
        if not isinstance(hparams, cls):
            raise ConfigError(
                f"method '{self.name}': expected {cls.__name__} hyperparameters, found {type(hparams).__name__}"
            )
        _check_types(self.name, hparams)
        return hparams

    def __call__(self, ctx, hparams: Any = None) -> list:
        return self.fn(ctx, self.make_hparams(hparams))


def _check_types(method: str, hp) -> None:
    hints = typing.get_type_hints(type(hp))
    for f in dataclasses.fields(hp):
        value, want = getattr(hp, f.name), hints.get(f.name, type(f.default))
        origin = typing.get_origin(want) or want
        ok = isinstance(value, origin) if isinstance(origin, type) else True
        if origin is float and isinstance(value, int):
            ok = True
        if isinstance(value, bool) and origin is not bool:
            ok = False
        if not ok:
            raise ConfigError(
                f"method '{method}': hyperparameter {f.name} expects {getattr(origin, '__name__', origin)}, found {value!r}"
            )


FAMILIES = ("data-free", "calibration", "training-based")


def register_method(name: str, hparams_cls: type, *, trains: bool = True, base: str | None = None,
                    citation: str = "", yields: Callable | None = None, override: bool = False,
                    patterns: bool = False, family: str | None = None, scores: Callable | None = None,
                    trains_per_sparsity: bool = False, structured: bool = False, publishes: str | None = None):
    """Decorator registering `fn(ctx, hparams) -> list[Ticket]` as pruning method `name`.

    trains: the method fine-tunes on its source (ctx.train); base: name of the method whose ticket
    (found on the same source task, at each sparsity) it transforms — it then gets `ctx.base_ticket`
    and runs once per sparsity; citation: the paper, shown by `ticketbench methods`; yields:
    `(hparams, ladder) -> sparsities` when its tickets' sparsities are not the ladder's (IMP's
    fraction modes), so a plan asking for a sparsity no ticket will have fails before it starts;
    override: replace a method already registered under `name` (a built-in) — never done silently;
    patterns: its tickets follow an N:M `find.pattern` (`ctx.pattern`); family: data-free, calibration or
    training-based (default: from `trains`); scores: `(ctx, hparams) -> {name: score}` when it ranks
    weights by a score (allocators such as OWL use it); trains_per_sparsity: it fine-tunes once per
    ladder sparsity (cost estimates); structured: its tickets remove whole heads and FFN neurons;
    publishes: what its paper's output is when that is not the mask on θ0 ("a trained network")."""
    if family is not None and family not in FAMILIES:
        raise TypeError(f"method '{name}': family must be one of {', '.join(FAMILIES)}, found {family!r}")
    if not (dataclasses.is_dataclass(hparams_cls) and hparams_cls.__dataclass_params__.frozen):
        raise TypeError(f"method '{name}': hparams_cls must be a frozen dataclass")

    def wrap(fn: Callable) -> PruningMethod:
        method = PruningMethod(name, fn, hparams_cls, trains=trains, base=base, citation=citation, yields=yields,
                               patterns=patterns, family_name=family, scores=scores,
                               trains_per_sparsity=trains_per_sparsity, structured=structured, publishes=publishes)
        METHODS.register(name, method, override=override)
        return method

    return wrap


def get_method(name: str) -> PruningMethod:
    """The registered method `name` (unknown names get a one-line error with a suggestion)."""
    try:
        obj = METHODS.get(name)
    except TicketError:
        raise
    except Exception as e:  # Registry raises the base error type
        raise TicketError(str(e)) from None
    if not isinstance(obj, PruningMethod):
        raise TicketError(f"pruning method '{name}' was not registered with tickets.register_method")
    return obj
