"""Where the command line writes: stdout, stderr as one line per message, ``-o FILE``.

Lone surrogates in IDs or results (they come from checkpoints written by other
tools) are written as ``\\udc80`` escapes, a valid JSON escape, so ``--json``
and ``export`` output still reads back, rather than raising
``UnicodeEncodeError``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

from agent_resume._cli._exits import CliError

__all__ = ["PROG", "STDIO", "one_line", "open_output", "quiet_streams", "show_progress_logs"]

PROG = "agent-resume"
STDIO = "-"
"""The file name that means standard input, or standard output for ``export -o``."""

_LOGGER = "agent_resume"


def one_line(message: str) -> str:
    """``message`` with every run of whitespace, newlines included, made one space."""
    return " ".join(message.split())


class OneLineHandler(logging.Handler):
    """The library's log records as one line each on stderr.

    Records below ``WARNING`` (the progress lines of ``run``) are written as
    ``agent-resume: <message>``; warnings and errors as
    ``agent-resume: warning: <message>``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = one_line(record.getMessage())
            level = "" if record.levelno < logging.WARNING else "warning: "
            sys.stderr.write(f"{PROG}: {level}{text}\n")
        except Exception:  # pragma: no cover - as logging.Handler.handleError
            self.handleError(record)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(f"{PROG}: warning: {one_line(str(message))}\n")


@contextlib.contextmanager
def quiet_streams() -> Iterator[None]:
    """While a command runs: one line per warning or log record, and output that never fails.

    The library's logger gets a :class:`OneLineHandler` unless the process
    has set up logging itself.
    """
    restore: list[tuple[io.TextIOWrapper, str]] = []  # type: ignore[type-arg,unused-ignore]
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors != "backslashreplace":
            restore.append((stream, stream.errors or "strict"))
            stream.reconfigure(errors="backslashreplace")
    logger = logging.getLogger(_LOGGER)
    handler = None
    if not logger.handlers and not logging.getLogger().handlers:
        handler = OneLineHandler()
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            # The command line owns the process: every warning is shown, as one line.
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        for stream, errors in restore:
            stream.reconfigure(errors=errors)


@contextlib.contextmanager
def show_progress_logs(enabled: bool) -> Iterator[None]:
    """Let the library's progress lines (``INFO``) through to stderr while a run runs.

    Only when the command line's own handler is the one in place: a process
    that configured logging itself decides for itself.
    """
    logger = logging.getLogger(_LOGGER)
    ours = bool(logger.handlers) and all(isinstance(h, OneLineHandler) for h in logger.handlers)
    if not enabled or not ours:
        yield
        return
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def open_output(path: str | None) -> Iterator[TextIO]:
    """The text stream a command writes to: stdout for ``None`` or ``-``, else the file.

    Raises:
        CliError: The file cannot be created or written.
    """
    if path is None or path == STDIO:
        yield sys.stdout
        return
    try:
        f = open(path, "w", encoding="utf-8", errors="backslashreplace", newline="")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot write the output file {path}: {exc.strerror or exc}") from None
    try:
        with f:
            yield f
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise CliError(f"cannot write the output file {path}: {exc.strerror or exc}") from None
