"""Exceptions that carry a message meant for the person running the command."""


class FeropsError(Exception):
    """A problem the user can fix; the CLI prints the message without a traceback."""


class DataError(FeropsError):
    """Input data is unreadable, inconsistent or fails validation."""
