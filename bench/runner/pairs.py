"""`PairSpec`: one fine-tuning run of the transfer matrix (a ticket from a source, fine-tuned on a task).

A run's identity (`run_id`) hashes everything its result depends on — the effective fine-tune config,
the ticket's *content* hash and the weights it starts from (`ticket_weights`: reinit / shuffle
controls share their base ticket's masks but not its weights), θ0's hash, the target task, the
content digest of its data (`data_hash`: train and evaluation examples and labels, `Study.data_digest`), the
evaluation split, the seed and the backbone — and nothing else: so a changed ticket or checkpoint is
never served from the cache, and two sources whose tickets are identical (IMP's first round and
one-shot magnitude pruning after the same fine-tuning) are one run, trained once and reported under
each source's name (the plan's manifest maps every cell to its run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import TicketbenchError
from bench.core.identity import KEY_SCHEMA
from bench.core.io import safe_name, short_hash


@dataclass(frozen=True)
class PairSpec:
    """One (ticket, target task, seed) fine-tuning run; `config` is the effective fine-tune config."""

    backbone: str
    source: str  # "imp:vqa", "omp:gqa", "pretrained_magnitude", "random", "reinit:pretrain", "dense", …
    method: str  # ticket search method ("imp", "omp", …; "dense" for the dense model)
    source_task: str  # task the ticket was found on ("" when the source has none, e.g. random, dense)
    sparsity: float  # 0.0 for dense
    task: str
    seed: int
    ticket_path: str | None
    ticket_hash: str | None
    theta0_hash: str
    split: str
    data_hash: str  # `Study.data_digest(task)`: a fixed loader or annotation is a new run, not a stale cache hit
    config: dict = field(default_factory=dict, hash=False)  # identity-bearing settings as plain data (hashed)
    # How the ticket's kept weights start, from its metadata ({} = θ0's own; hashed): the controls'
    # weight transform (reinit with its initialiser, shuffle) and its seed.
    ticket_weights: dict = field(default_factory=dict, hash=False)
    steps_factor: int = 1  # > 1: the dense convergence reference (its steps are in `config`, hashed)
    task_version: int = 1  # the task's loader + metric version (tasks.yaml; hashed, recorded)
    # The search replicate the ticket came from (find.seeds). Not hashed: the ticket's content is, so
    # replicates whose tickets differ are distinct runs, and identical ones (a deterministic method) one run.
    search_seed: int = 0
    # What the worker needs, as typed values (not re-parsed from `config`): the effective TrainSettings
    # and the study (Config, output dir, θ0 dir) to load data and weights from.
    settings: Any = field(default=None, hash=False, compare=False)
    study: Any = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        # Names end up in paths and file names: refuse anything that could leave the output directory.
        for attr in ("backbone", "source", "method", "task", "split"):
            safe_name(getattr(self, attr), f"pair {attr}")
        if self.source_task:
            safe_name(self.source_task, "pair source_task")
        if (
            not isinstance(self.sparsity, (int, float))
            or not (0.0 <= self.sparsity < 1.0)
            or math.isnan(self.sparsity)
        ):
            raise TicketbenchError(f"pair sparsity: expected a number in [0, 1), found {self.sparsity!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TicketbenchError(f"pair seed: expected an integer, found {self.seed!r}")
        if self.ticket_path is not None and not self.ticket_hash:
            raise TicketbenchError(
                f"pair ticket {self.ticket_path}: a ticket needs its content hash (ticket_hash)"
            )
        if not self.theta0_hash:
            raise TicketbenchError(f"pair {self.label}: theta0_hash is empty (the run id must cover θ0)")
        if not self.data_hash or not isinstance(self.data_hash, str):
            raise TicketbenchError(f"pair {self.label}: data_hash is empty (the run id must cover the task's data)")
        if not isinstance(self.config, dict):
            raise TicketbenchError(f"pair config: expected a dict, found {type(self.config).__name__}")
        if not isinstance(self.search_seed, int) or isinstance(self.search_seed, bool) or self.search_seed < 0:
            raise TicketbenchError(f"pair search_seed: expected an integer ≥ 0, found {self.search_seed!r}")
        if not isinstance(self.steps_factor, int) or isinstance(self.steps_factor, bool) or self.steps_factor < 1:
            raise TicketbenchError(f"pair steps_factor: expected an integer ≥ 1, found {self.steps_factor!r}")

    @property
    def run_id(self) -> str:
        """Content hash naming `runs/<run_id>/`."""
        return short_hash(
            {
                "schema": KEY_SCHEMA,
                "task_version": self.task_version,
                "config": self.config,
                "ticket_hash": self.ticket_hash,
                "ticket_weights": self.ticket_weights,
                "theta0_hash": self.theta0_hash,
                "data_hash": self.data_hash,
                "task": self.task,
                "split": self.split,
                "seed": self.seed,
                "backbone": self.backbone,
            }
        )

    @property
    def label(self) -> str:
        """Short human-readable name for progress bars and summaries."""
        steps = f" {self.steps_factor}×steps" if self.steps_factor != 1 else ""
        rep = f" search_seed={self.search_seed}" if self.search_seed else ""
        return f"{self.source}→{self.task} s={self.sparsity:g} seed={self.seed}{rep}{steps}"

    def identity(self) -> dict[str, Any]:
        """The record fields that describe this pair (the run store writes them into every record)."""
        return {
            "run_id": self.run_id,
            "backbone": self.backbone,
            "source": self.source,
            "method": self.method,
            "source_task": self.source_task,
            "sparsity": float(self.sparsity),
            "task": self.task,
            "task_version": self.task_version,
            "seed": self.seed,
            "search_seed": self.search_seed,
            "split": self.split,
            "steps_factor": self.steps_factor,
            "ticket": {
                "path": self.ticket_path,
                "content_hash": self.ticket_hash,
                "sparsity": float(self.sparsity),
                **({"weights": self.ticket_weights} if self.ticket_weights else {}),  # a control's transform
            },
            "theta0_hash": self.theta0_hash,
            "data_hash": self.data_hash,
            "config": self.config,
        }
