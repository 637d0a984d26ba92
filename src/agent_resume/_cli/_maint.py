"""``repair``, ``compact`` and ``retry``: the commands that change a checkpoint."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent_resume._cli._exits import EXIT_STORE, CliError
from agent_resume._cli._targets import (
    check_store_file,
    inspect_store,
    job_max_attempts,
    quarantined_ids,
    reading,
    store_url,
)
from agent_resume._errors import StoreError
from agent_resume._records import normalize_id
from agent_resume._render import masked_url
from agent_resume._session._agent import AgentResume
from agent_resume.stores._jsonl_maint import compact as compact_file
from agent_resume.stores._jsonl_maint import repair as repair_file

__all__ = ["register"]

_STORE_HELP = "a .jsonl path, a .db path, sqlite:///path.db or postgresql://..."


def register(sub: Any) -> None:
    """Add the ``repair``, ``compact`` and ``retry`` subcommands."""
    p = sub.add_parser(
        "repair",
        help="rewrite a JSONL checkpoint without its torn or corrupt lines",
        description="Validate a JSONL checkpoint and rewrite it without its torn or "
        "corrupt lines. Valid lines are kept byte for byte; the old file is kept as "
        "PATH.bak-<time>. A file with nothing to drop is left untouched.",
    )
    p.add_argument("path", help="the .jsonl checkpoint")
    p.add_argument(
        "--dry-run", action="store_true", help="report what would be dropped, change nothing"
    )
    p.set_defaults(func=repair)

    p = sub.add_parser(
        "compact",
        help="rewrite a JSONL checkpoint with only the latest record per item",
        description="Rewrite a JSONL checkpoint keeping the header, each item's latest "
        "record and the run records; the old file is kept as PATH.bak-<time>.",
    )
    p.add_argument("path", help="the .jsonl checkpoint")
    p.set_defaults(func=compact)

    p = sub.add_parser(
        "retry",
        help="release failed or quarantined items so that the next run tries them again",
        description="Release items so that the next run offers them again, with their "
        "attempt count reset. With no selection, the quarantined items are released.",
    )
    p.add_argument("store", help=_STORE_HELP)
    p.add_argument("--failed", action="store_true", help="every item with failed attempts")
    p.add_argument("--quarantined", action="store_true", help="the quarantined items (the default)")
    p.add_argument("--ids", nargs="+", metavar="ID", default=[], help="these items")
    p.add_argument("--job-id", help="the job, for an original-format file without a header")
    p.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="failed attempts after which an item counts as quarantined "
        "(default: what the last run recorded, else 3)",
    )
    p.set_defaults(func=retry)


def _jsonl(path: str, command: str) -> str:
    if not path.endswith(".jsonl"):
        raise CliError(
            f"{command} works on JSONL checkpoints (got {path!r}); SQLite and PostgreSQL "
            "stores keep themselves consistent"
        )
    store_url(path)  # refuses URLs of other kinds
    check_store_file(path)
    return path


def _too_deep(path: str) -> StoreError:
    return StoreError(f"{path}: a record is nested too deeply to read")


def repair(args: argparse.Namespace) -> int:
    """``agent-resume repair PATH``."""
    path = _jsonl(args.path, "repair")
    try:
        result = repair_file(path, dry_run=args.dry_run)
    except RecursionError:
        raise _too_deep(path) from None
    out = sys.stdout
    out.write(
        f"{result.path}: {result.lines:,} lines read, {result.kept:,} records kept, "
        f"{len(result.dropped):,} bad\n"
    )
    for line_number, reason in result.dropped:
        out.write(f"  line {line_number}: {reason}\n")
    if result.backup is not None:
        out.write(f"rewritten; the old file is kept as {result.backup}\n")
    elif result.dropped:
        out.write("dry run: nothing changed\n")
    else:
        out.write("nothing to repair\n")
    return 0


def compact(args: argparse.Namespace) -> int:
    """``agent-resume compact PATH``."""
    path = _jsonl(args.path, "compact")
    try:
        result = compact_file(path)
    except RecursionError:
        raise _too_deep(path) from None
    sys.stdout.write(
        f"{result.path}: {result.lines_before:,} lines before, {result.lines_after:,} after"
        + (f", {result.dropped_corrupt:,} corrupt dropped" if result.dropped_corrupt else "")
        + f"\nthe old file is kept as {result.backup}\n"
    )
    return 0


def retry(args: argparse.Namespace) -> int:
    """``agent-resume retry STORE``."""
    view = inspect_store(args.store)
    job_id = args.job_id or view.job_id
    if job_id is None:
        raise CliError(
            f"{masked_url(args.store)} records no job ID (an original-format file); give --job-id"
        )
    if args.job_id and view.job_id and args.job_id != view.job_id:
        raise CliError(
            f"{masked_url(args.store)} holds job {view.job_id!r}, not {args.job_id!r}", EXIT_STORE
        )
    failures = view.state.failures
    max_attempts = job_max_attempts(view.state, args.max_attempts)
    wanted: list[str] = []
    if args.failed:
        wanted += list(failures)
    if args.quarantined or not (args.failed or args.ids):
        wanted += quarantined_ids(view.state, max_attempts)
    skipped: list[str] = []
    for raw in args.ids:
        item_id = normalize_id(raw, "--ids")
        (wanted if item_id in failures else skipped).append(item_id)
    wanted = list(dict.fromkeys(wanted))
    out = sys.stdout
    for item_id in skipped:
        out.write(f"skipped {item_id}: it has no failed attempt to release\n")
    if not wanted:
        out.write("nothing to release\n")
        return 0
    with (
        reading(view.store),
        AgentResume(view.store).resume_or_start(job_id, max_attempts=max_attempts) as s,
    ):
        released = s.retry(wanted)
    out.write(f"released {len(released):,} item(s); the next run tries them again\n")
    for item_id in released[:20]:
        out.write(f"  {item_id}\n")
    if len(released) > 20:
        out.write(f"  ... and {len(released) - 20:,} more\n")
    return 0
