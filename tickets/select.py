"""Which parameters a ticket covers: the backbone's default prunable set, adjusted by regexes."""

from __future__ import annotations

import re

from torch import nn

from bench.core.errors import ConfigError, TicketError


def _compile(patterns, what: str) -> list[re.Pattern]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ConfigError(f"{what} pattern {p!r} is not a valid regex: {e}") from None
    return out


def select_prunable(model: nn.Module, include=(), exclude=()) -> list[tuple[str, nn.Parameter]]:
    """The model's `prunable_parameters()` plus parameters matching an `include` regex, minus `exclude`.

    Order: the default set in its own order, then added parameters in `named_parameters()` order.
    An include pattern that matches no parameter is an error (it is almost always a typo).
    """
    if not hasattr(model, "prunable_parameters"):
        raise TicketError(f"{type(model).__name__} has no prunable_parameters(): it cannot carry a ticket")
    selected = list(model.prunable_parameters())
    names = {n for n, _ in selected}
    for pat in _compile(include, "include"):
        matched = False
        for n, p in model.named_parameters():
            if pat.search(n):
                matched = True
                if n not in names:
                    selected.append((n, p))
                    names.add(n)
        if not matched:
            raise ConfigError(f"include pattern {pat.pattern!r} matches no parameter of {type(model).__name__}")
    excl = _compile(exclude, "exclude")
    selected = [(n, p) for n, p in selected if not any(x.search(n) for x in excl)]
    if not selected:
        raise TicketError("the prunable set is empty after include/exclude patterns")
    return selected
