"""The process around a command: a closed stdout (`ticketbench tasks | head -1`) ends it quietly, as it
does for `cat`; a distributed launch (torchrun) is refused before anything is written."""

from __future__ import annotations

import os
import sys

from bench.core.errors import ConfigError

SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def stdout_closed() -> int:
    """Call on BrokenPipeError: point stdout at /dev/null, so the interpreter's final flush does not
    print "Exception ignored ... BrokenPipeError", and return the exit status to use."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no file descriptor (captured in tests): nothing to flush
        pass
    return SIGPIPE_STATUS


def refuse_distributed_launch() -> None:
    """Under `torchrun` (WORLD_SIZE > 1) every rank would run the whole pipeline, each writing the same
    stores: refuse before anything is written. The runner's parallelism is over pairs and searches."""
    world_size = os.environ.get("WORLD_SIZE", "1").strip()
    if world_size.isdigit() and int(world_size) > 1:
        raise ConfigError(f"launched with WORLD_SIZE={world_size} (torchrun?): every rank would run the whole "
                          "pipeline; start one process instead and parallelise over pairs with --workers N "
                          "(one per GPU) or --executor ray")
