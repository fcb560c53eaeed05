"""Calibration statistics of the inputs of a model's linear layers (what `SearchContext.calib_fn`
returns), collected with forward pre-hooks; shared by the runner and `tickets.testing`."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from bench.core.errors import TicketError
from tickets.search import InputStats


def linear_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Linear]:
    """The nn.Linear owning each weight name (`….weight`), by the model's module names."""
    modules = dict(model.named_modules())
    out = {}
    for n in names:
        owner = modules.get(n.rsplit(".", 1)[0]) if n.endswith(".weight") else None
        if not isinstance(owner, nn.Linear):
            raise TicketError(f"calibration: '{n}' is not the weight of an nn.Linear (calibration methods prune "
                              "linear layers only; drop it with find.exclude)")
        out[n] = owner
    return out


def collect_input_stats(model: nn.Module, names: Iterable[str], run: Callable[[], int], hessian: bool = False) -> dict:
    """{name: InputStats} of the inputs reaching the nn.Linear of each weight in `names` while `run()`
    does the forward passes (without gradients) and returns how many examples it fed."""
    owners = linear_modules(model, names)
    acc = {n: {"sq": None, "h": None, "tokens": 0} for n in owners}

    def hook_for(n):
        def hook(_module, inputs):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to("cpu", torch.float64)
            a = acc[n]
            a["sq"] = (x * x).sum(0) if a["sq"] is None else a["sq"] + (x * x).sum(0)
            if hessian:
                a["h"] = x.T @ x if a["h"] is None else a["h"] + x.T @ x
            a["tokens"] += x.shape[0]
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in owners.items()]
    try:
        with torch.no_grad():
            samples = run()
    finally:
        for h in handles:
            h.remove()
    return {n: InputStats(sq_sum=a["sq"] if a["sq"] is not None else torch.zeros(owners[n].in_features,
                                                                                  dtype=torch.float64),
                          tokens=a["tokens"], samples=int(samples), hessian=a["h"])
            for n, a in acc.items()}
