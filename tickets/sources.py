"""Ticket sources (`<method>:<source task>`) and the on-disk ticket store.

Layout: `<root>/<method>__<source_task>/sparsity-0.50.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import TicketbenchError, TicketError
from bench.io import safe_name
from tickets.magnitude import check_sparsity
from tickets.ticket import Ticket

DENSE = "dense"
DEFAULT_TASK = "pretrain"  # methods named without a task (pretrained_magnitude, random) work on θ0


def parse_source(source: str) -> tuple[str, str]:
    """'imp:vqa' -> ('imp', 'vqa'); 'pretrained_magnitude' -> ('pretrained_magnitude', 'pretrain');
    'dense' -> ('dense', 'none'). Method names are checked against the registry."""
    from tickets.registry import get_method

    if not isinstance(source, str) or not source:
        raise TicketError(f"invalid ticket source {source!r}: expected <method>[:<source task>]")
    if source == DENSE:
        return DENSE, "none"
    method, _, task = source.partition(":")
    task = task or DEFAULT_TASK
    try:
        safe_name(method, "ticket source method")
        safe_name(task, "ticket source task")
    except TicketbenchError as e:
        raise TicketError(str(e)) from None
    if ":" in task or "__" in method or "__" in task:
        raise TicketError(f"invalid ticket source '{source}': expected <method>[:<source task>]")
    get_method(method)
    return method, task


def sparsity_label(sparsity: float) -> str:
    """'0.50' for two-decimal sparsities, more digits only when needed."""
    s = check_sparsity(sparsity)
    text = f"{s:.2f}"
    return text if abs(float(text) - s) < 1e-12 else f"{s:.6f}".rstrip("0")


class TicketStore:
    """Tickets of one backbone/search config under `root`."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, method: str, source_task: str, sparsity: float) -> Path:
        safe_name(method, "method")
        safe_name(source_task, "source task")
        return self.root / f"{method}__{source_task}" / f"sparsity-{sparsity_label(sparsity)}.safetensors"

    def put(self, ticket: Ticket) -> Path:
        """Save a ticket at the path its metadata (method, source task, target sparsity) names."""
        meta = ticket.metadata
        method, task = parse_source(meta["source"])
        return ticket.save(self.path(method, task, meta["target_sparsity"]))

    def get(self, source: str, sparsity: float, fingerprint: str | None = None) -> Ticket:
        """The validated ticket of `source` at `sparsity`; a missing one names the search to run."""
        method, task = parse_source(source)
        if method == DENSE:
            raise TicketError("source 'dense' has no ticket: the dense model is fine-tuned without one")
        path = self.path(method, task, sparsity)
        if not path.exists():
            raise TicketError(
                f"no ticket for source '{source}' at sparsity {sparsity_label(sparsity)} ({path} is missing):"
                f" run the '{method}' search on source '{task}' first (ticketbench find)"
            )
        ticket = Ticket.load(path)
        if fingerprint is not None and ticket.fingerprint != fingerprint:
            raise TicketError(
                f"{path}: ticket is for backbone '{ticket.backbone}' (fingerprint {ticket.fingerprint}),"
                f" expected fingerprint {fingerprint}"
            )
        if abs(ticket.metadata["target_sparsity"] - sparsity) > 1e-9:
            raise TicketError(f"{path}: ticket target sparsity {ticket.metadata['target_sparsity']} is not {sparsity}")
        return ticket

    def ls(self) -> list[dict]:
        """One row per ticket file (sorted by path); an unreadable file gets a row with 'error'."""
        rows = []
        for path in sorted(self.root.glob("*__*/sparsity-*.safetensors")):
            try:
                t = Ticket.load(path)
            except TicketError as e:
                rows.append({"path": str(path), "error": str(e)})
                continue
            m = t.metadata
            rows.append({
                "path": str(path), "source": m["source"], "method": m["method"],
                "source_task": m.get("source_task", ""), "target_sparsity": m["target_sparsity"],
                "sparsity": t.sparsity, "round": m["round"], "weights": m["weights"], "backbone": m["backbone"],
                "fingerprint": t.fingerprint, "content_hash": t.content_hash,
            })
        return rows
