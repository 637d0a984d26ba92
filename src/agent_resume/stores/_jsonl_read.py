"""Reading a JSONL checkpoint: a fast path for plain completions, a careful one for the rest.

Lines are split on ``\\n`` only. The plain completion line
``{"id": "...", "ts": N}`` (the original format, and what most of a checkpoint
is) is recognised by one regular expression over a whole block of lines; any
block holding something else is read line by line with :func:`json.loads`.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

from agent_resume._errors import CheckpointWarning, CorruptCheckpointError, UnsupportedFormatError
from agent_resume._records import FORMAT_VERSION, JobState

__all__ = ["CheckpointWarning", "LoadResult", "load", "read_records"]

_BLOCK: Final = 1 << 20
_MAX_WARNINGS: Final = 10
# A plain completion exactly as this library writes it, no escapes in the ID,
# anchored between two newlines (the block is searched with one prepended).
_PLAIN = re.compile(rb'\n\{"id": "([^"\\\x00-\x1f]+)", "ts": -?\d+\}(?=\n)')


@dataclass
class BadLine:
    """A line that could not be read."""

    line_number: int
    offset: int
    reason: str


@dataclass
class LoadResult:
    """What loading a checkpoint found.

    Attributes:
        header: The header record, or ``None`` for a headerless (original) file.
        state: The job state (its ``job_id`` is the header's, or ``""``).
        good_length: The byte length up to the end of the last whole line.
        torn_tail: Whether a torn last line follows ``good_length``.
        bad_lines: The corrupt lines in the middle of the file.
        lines: The number of lines read.
    """

    header: dict[str, Any] | None
    state: JobState
    good_length: int = 0
    torn_tail: bool = False
    bad_lines: list[BadLine] = field(default_factory=list)
    lines: int = 0


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """Decode one line into a record, or return why it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 at byte {exc.start}"
    try:
        record = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if "id" in record:
        item_id = record["id"]
        if type(item_id) is int:
            record["id"] = item_id = str(item_id)
        if type(item_id) is not str or not item_id:
            return f"bad item ID {item_id!r:.40}"
        status = record.get("status")
        if status is not None and not isinstance(status, str):
            return f"bad status {status!r:.40}"
    return record


def check_header(record: dict[str, Any], path: str) -> None:
    """Refuse a header written by a newer major version of the format."""
    version = record.get("agent_resume")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise UnsupportedFormatError(path, version, FORMAT_VERSION)


def load(f: IO[bytes], path: str, *, strict: bool = False) -> LoadResult:
    """Load a checkpoint's state from a binary file positioned at its start.

    Raises:
        CorruptCheckpointError: A middle line is bad and ``strict`` is true.
        UnsupportedFormatError: The header names a newer format.
    """
    state = JobState(job_id="")
    result = LoadResult(header=None, state=state)
    done = state.done
    apply = state.apply
    bad = result.bad_lines
    offset = 0
    line_number = 0
    carry = b""
    last_bad_at_end = False
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if not cut:
            continue
        data = data[:cut]
        if line_number == 0:
            # The header is read on its own, so that blocks stay on the fast path.
            end = data.index(b"\n") + 1
            record = parse_line(data[: end - 1])
            line_number = 1
            if isinstance(record, dict) and "agent_resume" in record:
                check_header(record, path)
                result.header = record
                state.job_id = str(record.get("job_id", ""))
                created = record.get("created")
                state.created = created if isinstance(created, int) else None
            elif isinstance(record, dict):
                apply(record)
            else:
                bad.append(BadLine(1, 0, record))
            last_bad_at_end = not isinstance(record, dict)
            offset = end
            data = data[end:]
            if not data:
                continue
        count = data.count(b"\n")
        ids = _PLAIN.findall(b"\n" + data)
        if len(ids) == count:
            try:
                # One decode for the whole block: IDs hold no newline, so split is exact.
                done.update(b"\n".join(ids).decode("utf-8").split("\n"))
            except UnicodeDecodeError:
                pass
            else:
                line_number += count
                offset += len(data)
                last_bad_at_end = False
                continue
        start = 0
        for raw in data.split(b"\n")[:-1]:
            line_number += 1
            record = parse_line(raw)
            if isinstance(record, dict):
                apply(record)
                last_bad_at_end = False
            else:
                bad.append(BadLine(line_number, offset + start, record))
                last_bad_at_end = True
            start += len(raw) + 1
        offset += len(data)
    result.lines = line_number
    result.good_length = offset
    if carry:
        result.torn_tail = True
        result.lines += 1
    elif last_bad_at_end:
        tail = bad.pop()
        result.torn_tail = True
        result.good_length = tail.offset
    if result.torn_tail:
        warnings.warn(
            CheckpointWarning(
                f"{path}: ignoring a torn last line at byte {result.good_length}; "
                "it is cut off before the next write"
            ),
            stacklevel=3,
        )
    _report_bad(bad, path, strict)
    state.bad_lines = len(bad)
    return result


def _report_bad(bad: list[BadLine], path: str, strict: bool) -> None:
    if not bad:
        return
    if strict:
        first = bad[0]
        raise CorruptCheckpointError(path, first.line_number, first.reason)
    for line in bad[:_MAX_WARNINGS]:
        warnings.warn(
            CheckpointWarning(f"{path}:{line.line_number}: skipped a corrupt line ({line.reason})"),
            stacklevel=4,
        )
    if len(bad) > _MAX_WARNINGS:
        warnings.warn(
            CheckpointWarning(
                f"{path}: skipped {len(bad)} corrupt lines in all; "
                f"run `agent-resume repair {path}` to rewrite the file without them"
            ),
            stacklevel=4,
        )


def read_records(f: IO[bytes], path: str) -> Iterator[tuple[int, dict[str, Any] | str, bytes]]:
    """Yield ``(line_number, record or reason, raw line)`` for every line, torn tail included.

    A torn last line (no ``\\n``) is yielded with the reason ``"torn last line"``.
    """
    line_number = 0
    carry = b""
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        data = carry + block
        lines = data.split(b"\n")
        carry = lines.pop()
        for raw in lines:
            line_number += 1
            yield line_number, parse_line(raw), raw
    if carry:
        yield line_number + 1, "torn last line", carry
