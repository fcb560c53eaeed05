"""Ticket sources (`<method>:<source task>`) and the on-disk ticket store.

Layout: `<root>/<method>__<source_task>/sparsity-0.50.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import TicketError
from bench.core.source import Source
from tickets.magnitude import check_sparsity
from tickets.registry import get_method
from tickets.ticket import Ticket


def parse_source(source: "str | Source") -> Source:
    """The `Source` a `method[:task]` string names, with its method checked against the registry."""
    src = Source.parse(source)
    if not src.is_dense:
        get_method(src.method)
    return src


def sparsity_label(sparsity: float) -> str:
    """'0.50' for two-decimal sparsities, more digits only when needed."""
    s = check_sparsity(sparsity)
    text = f"{s:.2f}"
    return text if abs(float(text) - s) < 1e-12 else f"{s:.6f}".rstrip("0")


class TicketStore:
    """Tickets of one backbone/search config under `root`."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, source: "str | Source", sparsity: float) -> Path:
        return self.root / Source.parse(source).key / f"sparsity-{sparsity_label(sparsity)}.safetensors"

    def put(self, ticket: Ticket) -> Path:
        """Save a ticket at the path its metadata (method, source task, target sparsity) names."""
        meta = ticket.metadata
        return ticket.save(self.path(meta["source"], meta["target_sparsity"]))

    def get(self, source: str, sparsity: float, fingerprint: str | None = None) -> Ticket:
        """The validated ticket of `source` at `sparsity`; a missing one names the search to run."""
        src = parse_source(source)
        if src.is_dense:
            raise TicketError("source 'dense' has no ticket: the dense model is fine-tuned without one")
        path = self.path(src, sparsity)
        if not path.exists():
            raise TicketError(
                f"no ticket for source '{source}' at sparsity {sparsity_label(sparsity)} ({path} is missing):"
                f" run `ticketbench find --sources {src}` first"
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
