"""The ``agent-resume`` command line (also ``python -m agent_resume``).

Each subcommand lives in a small module (``_cli_status``, ``_cli_maint``,
``_cli_run``, ``_cli_demo``); this one builds the parser, runs the command and
turns errors into one line on stderr and an exit code:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     ``run``/``demo``: the run ended with work left (failed or quarantined
      items, or it stopped early on a budget, its time or a signal)
2     usage error: bad flags, a bad TOML file or items file, a function that
      cannot be imported, a value out of range, a missing extra
3     store error: no such checkpoint, locked, held by another job, written by
      a newer version, unreadable
4     the job stopped on an error: ``--fail-fast`` and the function raised, or
      an item changed under ``--on-change error``
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    MissingExtraError,
    StoreError,
)
from agent_resume._version import __version__

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_JOB_ERROR",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "EXIT_WORK_LEFT",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_WORK_LEFT = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_JOB_ERROR = 4
EXIT_INTERRUPTED = 130

PROG = "agent-resume"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every subcommand."""
    from agent_resume._cli import _demo as _cli_demo
    from agent_resume._cli import _maint as _cli_maint
    from agent_resume._cli import _run as _cli_run
    from agent_resume._cli import _status as _cli_status

    parser = _Parser(
        prog=PROG,
        description="Resumable LLM batch jobs: inspect, report on, repair and run "
        "checkpointed jobs.",
        epilog="Exit codes: 0 ok, 1 work left after a run, 2 usage error, 3 store error, "
        "4 the job stopped on an error, 130 interrupted. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _cli_status.register(sub)
    _cli_maint.register(sub)
    _cli_run.register(sub)
    _cli_demo.register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when ``None``.
    """
    from agent_resume._cli._run import JobError
    from agent_resume._cli._targets import CliError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except JobError as exc:
        return _fail(str(exc), EXIT_JOB_ERROR)
    except (ArgumentTypeError, ArgumentValueError, MissingExtraError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        return _fail(str(exc), EXIT_STORE)
    except AgentResumeError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_JOB_ERROR)
    except BrokenPipeError:
        # `agent-resume report x.jsonl | head`: the reader left; that is not an error.
        # Point stdout at devnull so that the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return code
