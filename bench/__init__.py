"""ticketbench: lottery-ticket transfer benchmarks for vision-and-language transformers."""

__version__ = "0.1.0"
