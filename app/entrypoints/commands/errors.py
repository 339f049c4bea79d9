"""The error every subcommand raises for a failure the user can act on."""
from __future__ import annotations


class CommandError(Exception):
    """Printed as one line on stderr, with a non-zero exit; never a traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
