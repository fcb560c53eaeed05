"""What a pruning method gets from the runner: θ0, a training callable and the search settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import Tensor

from bench.core.source import Source
from tickets.ticket import Ticket


def derived_seed(seed: int, *parts) -> int:
    """A seed for one piece of a search (e.g. one sparsity) that does not depend on the others."""
    import hashlib

    return int(hashlib.sha256(repr((int(seed),) + parts).encode()).hexdigest()[:8], 16)


def copy_weights(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Deep copy (detached clones) so no tensor is shared with live parameters."""
    return {n: t.detach().clone() for n, t in weights.items()}


def ones_masks(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    import torch

    return {n: torch.ones(t.shape, dtype=torch.bool) for n, t in weights.items()}


@dataclass
class TrainResult:
    """One source fine-tuning: trained prunable weights, weights at `rewind_step` if asked, metrics."""

    weights: dict[str, Tensor]
    rewind: Optional[dict[str, Tensor]] = None
    metrics: dict = field(default_factory=dict)


# train(start_weights, masks, on_grads=None): fine-tune the model whose prunable weights are
# start_weights ⊙ masks (masks enforced) on the source task and return a TrainResult. With
# `on_grads(weights, grads)` it is called after every backward pass (masked gradients, before the
# optimizer step) with the live prunable weights and gradients (read them, do not keep them); a
# truthy return stops training there (movement pruning and early-bird tickets use it).
TrainFn = Callable[..., TrainResult]
# score_fn(weights, masks, batch=None): gradients of the source loss w.r.t. the prunable weights at
# weights ⊙ masks (name → tensor), for gradient-based methods such as SNIP. Each call takes the next
# seeded batch; `batch=k` takes the k-th again (GraSP differences two gradients on one batch).
ScoreFn = Callable[..., dict]
# flow_fn(weights, masks): data-free gradients dR/dw of the synaptic flow R = 1ᵀ f(1), the network
# evaluated on an all-ones input with every parameter replaced by its absolute value (SynFlow).
FlowFn = Callable[[dict, dict], dict]


@dataclass
class InputStats:
    """What calibration methods read of the inputs X (tokens × in_features) reaching one nn.Linear:
    `sq_sum[j]` = Σ_tokens x_j² (‖X_j‖₂², Wanda / RIA), `hessian` = Σ_tokens x xᵀ (float64, only when
    asked for: SparseGPT), over `tokens` token positions of `samples` calibration examples."""

    sq_sum: Tensor
    tokens: int
    samples: int
    hessian: Optional[Tensor] = None


# calib_fn(weights, masks, names, *, samples, seed, hessian=False) -> {name: InputStats}: a forward
# pass without gradients (eval mode) over `samples` examples of the search's source (its task's train
# split, or the pre-training corpus) drawn with `seed`, with the prunable weights set to
# weights ⊙ masks, collecting the inputs of the nn.Linear owning each weight in `names`. Calling it
# again with already-pruned weights gives the inputs a layer sees after the layers before it were
# pruned (SparseGPT's sequential pass).
CalibFn = Callable[..., dict]


@dataclass
class SearchContext:
    """Everything a method needs; the runner builds it, tests build it around a toy model.

    meta: include/exclude patterns ('include', 'exclude'), 'model_numel' (whole-model parameter
    count, for the whole-model sparsity), 'train_steps' (optimizer steps of one `train` call, for
    gradual pruning schedules) and anything else to record in the tickets.
    """

    backbone: str
    fingerprint: str
    theta0: dict[str, Tensor]
    train: TrainFn
    source: str
    sparsities: tuple[float, ...]
    seed: int = 0
    rewind_step: int = 0
    base_ticket: Optional[Ticket] = None
    meta: dict = field(default_factory=dict)
    score_fn: Optional[ScoreFn] = None
    # A TicketStore (or None): methods with long searches store tickets as they find them and resume
    # from the stored ones (IMP stores each round when it ends).
    store: Optional[Any] = None
    flow_fn: Optional[FlowFn] = None
    calib_fn: Optional[CalibFn] = None
    # find.pattern: "unstructured" or "N:M" (N kept of every M consecutive inputs of each output row)
    pattern: str = "unstructured"

    def make_ticket(self, masks: dict, *, method: str, hparams: Any, target_sparsity: float,
                    source: str | None = None, **kw) -> Ticket:
        """A ticket for this search with the context's backbone, seed and patterns filled in."""
        import dataclasses

        hp = dataclasses.asdict(hparams) if dataclasses.is_dataclass(hparams) else dict(hparams or {})
        return Ticket.build(
            masks,
            backbone=self.backbone,
            fingerprint=self.fingerprint,
            source=source or str(Source(method, self.source)),
            method=method,
            source_task=kw.pop("source_task", self.source),
            hparams=hp,
            target_sparsity=target_sparsity,
            seed=kw.pop("seed", self.seed),
            include=self.meta.get("include", ()),
            exclude=self.meta.get("exclude", ()),
            model_numel=self.meta.get("model_numel"),
            pattern=kw.pop("pattern", self.pattern),
            **kw,
        )
