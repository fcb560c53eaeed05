"""A closed stdout (`ticketbench tasks | head -1`) ends the command quietly, as it does for `cat`."""

from __future__ import annotations

import os
import sys

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
