"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class TicketbenchError(Exception):
    """An error caused by the user's input (config, data, ticket, checkpoint); its message is one line."""

    exit_code = 2


class ConfigError(TicketbenchError):
    """A config file, override or option is invalid."""


class DataError(TicketbenchError):
    """A dataset file is missing or malformed (the message names file, line/field, expected vs found)."""


class TicketError(TicketbenchError):
    """A ticket file is corrupt, inconsistent, or does not fit the model it is applied to."""


class CheckpointError(TicketbenchError):
    """A checkpoint is missing, unsafe (needs pickle code) or has the wrong keys."""


class RunFailed(TicketbenchError):
    """A single fine-tuning run failed (e.g. non-finite loss); the matrix records it and goes on."""
