"""The tickets of a results store as the reports see them (`TicketView`): kept here, apart from
`reports.store`, because reading a ticket imports torch and reading results must not
(`ticketbench.load_results`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.core.layout import Layout
from reports.store import SPARSITY_DECIMALS
from tickets import Ticket


@dataclass
class TicketView:
    """What the reports need of a ticket: its source label, sparsity and boolean keep-masks."""

    path: Path
    source: str
    method: str
    sparsity: float
    backbone: str
    masks: dict  # name -> bool tensor (True = weight kept)


def iter_tickets(out_dir: str | Path, searches=None) -> Iterator[TicketView]:
    """Every ticket under `<out>/tickets/<search id>/<method>__<task>/sparsity-<s>.safetensors` (only
    the searches named, when given: one plan's), validated by `tickets.Ticket.load` (a corrupt file is
    a one-line TicketError naming it). The ladder sparsity is the ticket's target sparsity; the label
    its source ('imp:vqa')."""
    for path in Layout(out_dir).ticket_files(None if searches is None else list(searches)):
        t = Ticket.load(path)
        meta = t.metadata
        dir_method = path.parent.name.partition("__")[0]
        yield TicketView(path, str(meta.get("source") or dir_method), str(meta.get("method") or dir_method),
                         round(float(meta["target_sparsity"]), SPARSITY_DECIMALS), str(meta.get("backbone", "")),
                         t.masks)
