"""The ``agent-resume`` command line (also ``python -m agent_resume``).

Each subcommand lives in a module of its own (``_status``, ``_maint``,
``_run``, ``_demo``); this one builds the parser, runs the command and turns
every error into one line on stderr and an exit code:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     ``run``/``demo``: the run ended with work left (failed or quarantined
      items, or it stopped early on a budget, its time or a signal)
2     usage error: bad flags, a bad TOML file or items file, a function that
      cannot be imported, a value out of range, a missing extra, an output
      file that cannot be written
3     store error: no such checkpoint, not a checkpoint (a directory, not a
      database), locked, held by another job, written by a newer version,
      unreadable
4     the job stopped on an error: ``--fail-fast`` and the function raised, a
      hook raised, or an item changed under ``--on-change error``
70    internal error: a bug in agent-resume (the one line names the
      exception; ``AGENT_RESUME_DEBUG=1`` shows the traceback)
130   interrupted (Ctrl-C)
====  ==========================================================================

Warnings and log lines of the library reach stderr as one line each, prefixed
``agent-resume: warning:``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agent_resume._cli import _batch, _demo, _maint, _run, _status
from agent_resume._cli._exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_JOB_ERROR,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    EXIT_WORK_LEFT,
    CliError,
)
from agent_resume._cli._output import PROG, one_line, quiet_streams
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    MissingExtraError,
    StoreError,
)
from agent_resume._version import __version__

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_JOB_ERROR",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "EXIT_WORK_LEFT",
    "build_parser",
    "main",
]

DEBUG_ENV = "AGENT_RESUME_DEBUG"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{PROG}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Resumable LLM batch jobs: inspect, report on, repair and run "
        "checkpointed jobs.",
        epilog="Exit codes: 0 ok, 1 work left after a run, 2 usage error, 3 store error, "
        "4 the job stopped on an error, 70 internal error, 130 interrupted. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _status.register(sub)
    _maint.register(sub)
    _run.register(sub)
    _demo.register(sub)
    _batch.register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")
    return code


def error_code(exc: BaseException) -> int | None:
    """The exit code an error maps to, or ``None`` for one the command line does not expect."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, (ArgumentTypeError, ArgumentValueError, MissingExtraError)):
        return EXIT_USAGE
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, AgentResumeError):
        return EXIT_JOB_ERROR
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, AgentResumeError) and error_code(exc) == EXIT_JOB_ERROR:
        return f"{type(exc).__name__}: {exc}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when ``None``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    with quiet_streams():
        try:
            code: int = args.func(args)
        except KeyboardInterrupt as exc:
            # A second Ctrl-C during a run says what it cost ("... 2 item(s) in flight
            # not recorded"); a bare one says interrupted.
            return _fail(str(exc) or "interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `agent-resume report x.jsonl | head`: the reader left; that is not an error.
            # Point stdout at devnull so that the interpreter's final flush stays quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
        except Exception as exc:
            known = error_code(exc)
            if known is not None:
                return _fail(_message(exc), known)
            if os.environ.get(DEBUG_ENV):
                raise
            return _fail(
                f"internal error: {type(exc).__name__}: {exc} (a bug in agent-resume: "
                f"please report it; {DEBUG_ENV}=1 shows the traceback)",
                EXIT_INTERNAL,
            )
        return code
