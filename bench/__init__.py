"""ticketbench: lottery-ticket transfer benchmarks for vision-and-language transformers."""

from bench.core import __version__

__all__ = ["__version__"]
