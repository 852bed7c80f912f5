"""Exceptions that carry a message meant for the person running the command."""


class FeropsError(Exception):
    """A problem the user can fix; the CLI prints the message without a traceback.

    `kind` is what a stage records for its caller (ferops.stage: $FEROPS_EVENTS), so an
    orchestrator tells data from registry failures without reading the message.
    """

    kind = "user"


class DataError(FeropsError):
    """Input data is unreadable, inconsistent or fails validation."""

    kind = "data"
