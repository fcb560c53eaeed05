"""Lottery tickets: the portable ticket format, exact magnitude pruning, mask enforcement,
the pruning-method registry (`tickets.methods`) and ticket tools."""

import tickets.methods  # noqa: E402,F401 - registers the built-in methods (imp, omp, ...)
from tickets.enforce import MaskEnforcer
from tickets.fingerprint import prunable_fingerprint
from tickets.magnitude import global_magnitude_masks, layerwise_magnitude_masks
from tickets.registry import METHODS, PruningMethod, get_method, register_method
from tickets.search import SearchContext, TrainResult
from tickets.select import select_prunable
from tickets.sources import TicketStore, parse_source
from tickets.ticket import Ticket

# `tickets.methods` is the registry (name → PruningMethod); the built-in implementations live in
# the `tickets.methods` package, which the line below shadows on purpose after importing it.
methods = METHODS

__all__ = [
    "METHODS", "MaskEnforcer", "PruningMethod", "SearchContext", "Ticket", "TicketStore", "TrainResult",
    "get_method", "global_magnitude_masks", "layerwise_magnitude_masks", "methods", "parse_source",
    "prunable_fingerprint", "register_method", "select_prunable",
]
