"""ticketbench's public Python API: run a study, load its results, load a ticket and apply it.

    import ticketbench
    out = ticketbench.run("smoke", out="/tmp/smoke", overrides=["finetune.steps=20"])
    results = ticketbench.load_results(out)        # the last plan's results; .frame: one row per run

    ticket = ticketbench.load_ticket("runs/toyland/tickets/<hash>/imp__vqa/sparsity-0.70.safetensors")
    ticketbench.apply_ticket(ticket, model)         # your transformers BERT: pruned weights set to 0

The command line (`ticketbench ...`) and this API share one implementation (the `bench`, `tickets` and
`reports` packages); errors are `ticketbench.TicketbenchError` subclasses with one-line messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from bench import __version__
from bench.core.errors import ConfigError, DataError, TicketbenchError, TicketError

if TYPE_CHECKING:
    from torch import nn

    from bench.config import Config
    from reports.store import Results
    from tickets import Ticket

__all__ = [
    "ConfigError", "DataError", "TicketError", "TicketbenchError", "__version__", "apply_ticket",
    "export_ticket", "load_config", "load_results", "load_ticket", "run",
]


def load_config(config: "str | Path | None" = None, overrides: Iterable[str] = ()) -> "Config":
    """A config by preset name (`smoke`, `toyland`, ...) or YAML path, with `section.key=value`
    overrides; every value is validated (one-line ConfigError)."""
    from bench.config import load_config as _load

    return _load(str(config) if config is not None else None, list(overrides))


def run(config: "str | Path | Config | None" = None, out: "str | Path | None" = None,
        overrides: Iterable[str] = (), stages: Iterable[str] | None = None, quiet: bool = True,
        **subset) -> Path:
    """Run the pipeline (world → pretrain → find → matrix → report, resumable) and return the output
    directory. `subset` takes the CLI's shorthands as keywords, each `matrix.<name>=value`: tasks,
    sources, sparsities (lists), seeds, workers, executor, ray_address."""
    from bench.config import Config, apply_overrides
    from bench.pipeline import STAGES, run_pipeline

    cfg = apply_overrides(config, list(overrides)) if isinstance(config, Config) else load_config(config, overrides)
    # The subset keywords become matrix overrides inside run_pipeline, as on the command line.
    return Path(run_pipeline(cfg, out=str(out) if out is not None else None, stages=list(stages or STAGES),
                             quiet=quiet, **subset))


def load_results(out: "str | Path", plan: str | None = None, plans: "list[str] | None" = None) -> "Results":
    """The results object of an output directory: the last plan run there (or `plan`, or several
    `plans`, `["all"]` for every one), with `.frame` — one row per finished run (backbone, source,
    sparsity, task, metric, value, seed, dense_value, relative, ...) — `.plans`, `.config` and the
    counts of `.failed` and `.pending` runs. Runs of different plans are never pooled."""
    from reports.store import load_results as _load

    return _load(Path(out), plan=plan, plans=plans)


def load_ticket(path: "str | Path") -> "Ticket":
    """A ticket file (`.safetensors`), fully validated; bad files are a one-line TicketError."""
    from tickets import Ticket

    return Ticket.load(path)


def apply_ticket(ticket: "Ticket | str | Path", model: "nn.Module") -> dict[str, "nn.Parameter"]:
    """Zero the weights `ticket` prunes in `model`, in place; returns {ticket name: parameter}.

    `model` is a ticketbench backbone (checked against the ticket's fingerprint) or your own
    transformers model of the same architecture (`BertModel`, `BertForSequenceClassification`, ...):
    each mask is matched to the one parameter whose name ends with the mask's name and has its shape.
    To keep the pruned weights at zero while training, pass the result to `tickets.MaskEnforcer`.
    """
    from tickets.tools import apply_to_model

    return apply_to_model(load_ticket(ticket) if isinstance(ticket, (str, Path)) else ticket, model)


def export_ticket(ticket: "str | Path", out: "str | Path", theta0: "str | Path | None" = None) -> Path:
    """Write θ0 ⊙ m as a transformers model folder (`save_pretrained`) plus its tokenizer
    (`ticketbench tickets export`)."""
    from bench.backbones.export import export_ticket as _export

    return _export(ticket, out, theta0)
