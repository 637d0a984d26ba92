"""The command line's exit codes and its one error type.

Every command reports a failure by raising :class:`CliError` (or an error of
the library, which ``_main`` maps to a code); nothing else leaves a command.
"""

from __future__ import annotations

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_JOB_ERROR",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "EXIT_WORK_LEFT",
    "CliError",
]

EXIT_OK = 0
EXIT_WORK_LEFT = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_JOB_ERROR = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A command-line error: printed as one line on stderr, exits with ``code``.

    Args:
        message: What went wrong, naming the flag or file and the value given.
        code: The exit code: :data:`EXIT_USAGE` (the default) for a bad flag
            or input file, :data:`EXIT_STORE` for a store that cannot be read,
            :data:`EXIT_JOB_ERROR` for a job that stopped on an error.

    Attributes:
        code: The exit code.
    """

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
