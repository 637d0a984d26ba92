"""Reading a JSONL checkpoint: a fast path for plain completions, a careful one for the rest.

Lines are split on ``\\n`` only. The plain completion line
``{"id": "...", "ts": N}`` (the original format) is recognised by one regular
expression over a whole block of lines. So is any other completion, by its
head (``id``, ``ts``, then ``attempt``, ``stop``, ``turns``, ``seconds``, ``fp``
in the writer's order) and a line that ends in ``}``: its usage and result are
not decoded for a resume, and not checked either, except in strict mode, which
checks a usage by a pattern of flat JSON and decodes a result. The pattern
matches each whole line, newline to newline, so a block is read this way only
when it has as many matches as lines; it is built for the block's shape (with
fingerprints or without, with call records or without), the shape of the block
before it first, so each byte of a block is scanned by one pattern and a few
substring searches. A ``call`` record (one LLM call's usage) is
recognised by its head and skipped, since the job's state has no use for it
(in strict mode its usage is checked by the same pattern; a call line naming
``"id"`` anywhere is decoded, lest it hide a completion). Any other line
(failures, releases, run records, a line naming ``"status"``) is read with
:func:`json.loads`, in its place: a block holding a few such lines among
completions and calls reads the runs of lines between them on the fast path.

A line longer than a block is gathered piece by piece and joined once, so
reading it costs time linear in its length. Blank lines are skipped silently.
A line nested deeper than :data:`~agent_resume._records.MAX_DEPTH` is skipped
as corrupt, so no line can overflow the reader's stack.

A file without a header is read as a checkpoint of the original format only
when its first record is a checkpoint record (an ``"id"`` or ``"run"`` with an
integer ``"ts"``); anything else (an items file, a checkpoint of the Rust
agent-resume, any other JSON) raises :class:`NotACheckpointError`.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

from agent_resume._errors import (
    CheckpointWarning,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsupportedFormatError,
)
from agent_resume._records import FORMAT_VERSION, MAX_DEPTH, JobState, nested_too_deep

__all__ = [
    "CheckpointWarning",
    "LoadResult",
    "check_checkpoint_record",
    "check_header",
    "load",
    "read_records",
]

_BLOCK: Final = 1 << 20
_MAX_WARNINGS: Final = 10
# A plain completion exactly as this library writes it, no escapes in the ID,
# anchored between two newlines (the block is searched with one prepended).
_PLAIN = re.compile(rb'\n\{"id": "([^"\\\x00-\x1f]+)", "ts": -?(?:0|[1-9]\d*)\}(?=\n)')
# A completion as this library writes it, with its optional fields in the
# writer's order; the usage, a flat object, is checked to be valid JSON but
# not decoded (the state needs the ID and the fingerprint only). Strings
# allow JSON's escapes; numbers are JSON's. Anything else (a result, a
# failure, a release) takes the careful path.
#
# Written for the speed of the standard ``re`` engine, each the same language as
# the plain form: an optional part is ``(?:X|)``, not ``(?:X)?`` (a branch with
# an empty alternative is cheaper than a repeat), and an integer is
# ``(?!0\d)\d+``, not ``(?:0|[1-9]\d*)`` (``\d`` is ASCII in a bytes pattern).
_STR = rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_INT = rb"-?(?!0\d)\d+"
_NUM = _INT + rb"(?:\.\d+|)(?:[eE][-+]?\d+|)"
_SCALAR = rb"(?:" + _STR + rb"|" + _NUM + rb"|true|false|null)"
_FLAT = rb"\{(?:" + _STR + rb": " + _SCALAR + rb"(?:, " + _STR + rb": " + _SCALAR + rb")*|)\}"
# The optional fields a completion carries before its fingerprint, in the writer's order.
_EXTRA = (
    rb'(?:, "attempt": '
    + _INT
    + rb'|)(?:, "stop": '
    + _STR
    + rb'|)(?:, "turns": '
    + _INT
    + rb'|)(?:, "seconds": '
    + _NUM
    + rb"|)"
)
# A completion's head: its ID (no escapes), time and optional fields, in the writer's order.
_HEAD = rb'\{"id": "([^"\\\x00-\x1f]+)", "ts": ' + _INT + _EXTRA
_FP = rb'(?:, "fp": "([^"\\\x00-\x1f]*")|)'
_DONE_TAIL = rb'(?:, "usage": ' + _FLAT + rb"|)\}"
_DONE_BODY = _HEAD + _FP + _DONE_TAIL
_DONE_LINE = re.compile(_DONE_BODY)
# The same head, then a usage or a result left undecoded up to the line's
# closing brace: what the default (not strict) mode reads at resume.
_LAZY_TAIL = rb'(?:, "(?:usage|result)": [^\n]*\}|\})'
_LAZY_BODY = _HEAD + _FP + _LAZY_TAIL
_LAZY_LINE = re.compile(_LAZY_BODY)
# A ``call`` record (one LLM call's usage, written as ``ctx.call`` returns) as
# this library writes it. The job's state ignores these records, so a resume
# only has to recognise them: by their head in the default mode (the line must
# not name an "id", which would make it a completion), in full in strict mode.
_CALL_HEAD = rb'\{"call": ' + _STR + rb'(?:, "a": ' + _STR + rb'|), "ts": ' + _INT + rb', "usage": '
_CALL_LINE = re.compile(_CALL_HEAD + rb"\{[^\n]*\}")
_CALL_STRICT_LINE = re.compile(_CALL_HEAD + _FLAT + rb"\}")
_CALL_START: Final = b'{"call": '


def _block_pattern(strict: bool, fps: bool, calls: bool) -> re.Pattern[bytes]:
    """The pattern of a whole line of a block read on the fast path, of one shape.

    Each match is one whole line: it begins at the newline before the line (the
    block is searched with one prepended) and ends before the newline after it,
    so a block is all such lines exactly when it has as many matches as lines.
    ``fps``: completions may carry a fingerprint, captured in a second group
    (empty when absent); without it a line with a fingerprint does not match.
    ``calls``: ``call`` lines match too, with every group empty.
    """
    head = _HEAD + (_FP if fps else b"")
    if strict:
        line = head + _DONE_TAIL
        call = _CALL_HEAD + _FLAT + rb"\}"
    else:
        line = head + _LAZY_TAIL
        call = _CALL_HEAD + rb"\{[^\n]*\}"
    if calls:
        line = rb"(?:" + line + rb"|" + call + rb")"
    return re.compile(rb"\n" + line + rb"(?=\n)")


# Indexed by (strict, fps, calls).
_BLOCK_PATTERNS: Final = {
    (strict, fps, calls): _block_pattern(strict, fps, calls)
    for strict in (False, True)
    for fps in (False, True)
    for calls in (False, True)
}
# A line that begins as neither a completion nor a call record (the block is searched with
# a newline prepended, so a match's start is the line's offset in the block).
_OTHER_START = re.compile(rb'\n(?!\{"id": |\{"call": )')
_BLANK: Final = b" \t\r"
# What a torn first write of this library (or of the original format) begins with.
_OUR_STARTS: Final = (b'{"agent_resume": ', b'{"id": ', b'{"run": ')


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
        size: The byte length of the file as read, a torn tail included.
    """

    header: dict[str, Any] | None
    state: JobState
    good_length: int = 0
    torn_tail: bool = False
    bad_lines: list[BadLine] = field(default_factory=list)
    lines: int = 0
    size: int = 0


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_blank(raw: bytes) -> bool:
    """Whether a line holds nothing but spaces, tabs and carriage returns."""
    return not raw.strip(_BLANK)


# json.loads's own decoder settings (strict strings, no hooks), its scanner alone.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """Decode one line into a record, or return why it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 at byte {exc.start}"
    try:
        # The decoder's scanner, called directly, reads a value that fills the
        # line; json.loads (its wrappers cost a third as much again) reads the
        # rest: whitespace around it, or nothing to read, with its own message.
        try:
            record, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            record = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    except RecursionError:
        return f"nested more than {MAX_DEPTH} levels deep"
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if nested_too_deep(record, raw):
        return f"nested more than {MAX_DEPTH} levels deep"
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


def check_checkpoint_record(record: dict[str, Any], path: str) -> None:
    """Refuse a headerless file whose first record is not a checkpoint record.

    Raises:
        NotACheckpointError: The record has no integer ``"ts"``, or neither an
            ``"id"`` nor a ``"run"``.
    """
    ts = record.get("ts")
    if (type(ts) is int and ("id" in record or "run" in record)) or "agent_resume" in record:
        return  # a checkpoint record, or a header out of its place (kept, not used)
    if "turn" in record and "completed_items" in record:
        reason = (
            "it is a checkpoint of the Rust agent-resume (lines of turn, state and "
            "completed_items), which this library neither reads nor appends to"
        )
    elif "id" in record:
        reason = (
            'its first record has an "id" but no integer "ts": it looks like an items '
            "file; pass the checkpoint's path as the store"
        )
    else:
        keys = ", ".join(sorted(record)[:5])
        reason = f"its first record is not a checkpoint record (keys: {keys or 'none'})"
    raise NotACheckpointError(path, reason)


def _check_unknown_content(path: str, first_bad: bytes | None, tail: bytes) -> None:
    """Refuse a headerless file with content but no record, unless it is one torn first write."""
    if first_bad is not None:
        raise NotACheckpointError(
            path, f"no line is a checkpoint record; the first starts {first_bad[:40]!r}"
        )
    if not tail.strip(b"\0"):
        return  # empty, blank, or zero-filled by a crash
    whole = parse_line(tail)
    if isinstance(whole, dict):
        # A write torn just before its newline, or a one-line file of something else.
        check_checkpoint_record(whole, path)
        return
    for start in _OUR_STARTS:
        if tail.startswith(start) or start.startswith(tail):
            return
    raise NotACheckpointError(path, f"it holds no checkpoint record; it starts {tail[:40]!r}")


class _Loader:
    """Folds a checkpoint's lines into a :class:`LoadResult`."""

    def __init__(
        self,
        path: str,
        strict: bool = False,
        consume: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        self.path = path
        self.strict = strict
        self.consume = consume
        self.state = JobState(job_id="")
        self.result = LoadResult(header=None, state=self.state)
        self.line_number = 0
        self.offset = 0
        self.seen_first = False  # the first non-blank line (the header's place) was read
        self.known = False  # a header or a checkpoint record was seen
        self.first_bad: bytes | None = None
        self.last_bad_at_end = False
        # What the lines of the last block read by pattern may hold: fingerprints, call records.
        self.shape = (False, False)

    def line(self, raw: bytes) -> None:
        """Read one whole line (without its newline)."""
        self.line_number += 1
        at = self.offset
        self.offset += len(raw) + 1
        if is_blank(raw):
            self.last_bad_at_end = False  # a bad line before a blank one is not a torn write
            return
        if self.consume is None and (self._completion(raw) or self._call(raw)):
            return
        record = parse_line(raw)
        if not isinstance(record, dict):
            self.result.bad_lines.append(BadLine(self.line_number, at, record))
            self.last_bad_at_end = True
            self.seen_first = True
            if not self.known and self.first_bad is None:
                self.first_bad = raw
            return
        self.last_bad_at_end = False
        if not self.seen_first:
            self.seen_first = True
            if "agent_resume" in record:
                check_header(record, self.path)
                self.result.header = record
                self.state.job_id = str(record.get("job_id", ""))
                created = record.get("created")
                self.state.created = created if isinstance(created, int) else None
                self.known = True
                return
        if not self.known:
            check_checkpoint_record(record, self.path)
            self.known = True
            self.first_bad = None
        self.state.apply(record)
        if self.consume is not None and "agent_resume" not in record:
            self.consume(record)

    def block(self, data: bytes) -> None:
        """Read a run of whole lines, ``data`` ending in a newline."""
        if not self.seen_first or not self.known:
            # Up to the header (or the first record of a headerless file), line by line.
            start = 0
            while start < len(data) and not (self.seen_first and self.known):
                end = data.index(b"\n", start)
                self.line(data[start:end])
                start = end + 1
            if start == len(data):
                return
            data = data[start:]
        if self.consume is not None:
            # Every record is decoded for the consumer: no pattern to skip any.
            for raw in data.split(b"\n")[:-1]:
                self.line(raw)
            return
        if self._fast(data):
            return
        if not self.strict:
            others = _other_lines(data)
            if len(others) * 4 <= data.count(b"\n"):
                # A few lines of other kinds (failures, run records) among
                # completions and calls: each is read in full in its place, and
                # the runs of lines between them on the fast path, in file order.
                start = 0
                for begin in others:
                    if begin > start:
                        self._segment(data[start:begin])
                    end = data.index(b"\n", begin)
                    self.line(data[begin:end])
                    start = end + 1
                if start < len(data):
                    self._segment(data[start:])
                return
        for raw in data.split(b"\n")[:-1]:
            self.line(raw)

    def _segment(self, data: bytes) -> None:
        if not self._fast(data):
            for raw in data.split(b"\n")[:-1]:
                self.line(raw)

    def _fast(self, data: bytes) -> bool:
        """Read whole lines all on a fast path (see the module docstring); ``False`` if one is not."""
        count = data.count(b"\n")
        buf = b"\n" + data
        if b', "usage": ' not in data and b', "result": ' not in data:
            ids = _PLAIN.findall(buf)
            if len(ids) == count:
                return self._add_done(ids) and self._skipped(count, len(data))
        # In the default mode a completion's usage and result are neither decoded
        # nor checked here: the readers that need them do both (status, report,
        # results(), repair). A line naming a status anywhere is read in full, lest
        # one hide after them. Strict mode checks every line in full: the usage by
        # pattern, a result decoded (on the careful path).
        if (b', "result": ' if self.strict else b'"status"') in data or not (
            data.isascii() or _is_utf8(data)
        ):
            return False
        # The block is matched with the shape of the last block read this way (a
        # file's blocks are alike); only when that fails is this block searched
        # for what its lines may hold, and matched again if it holds more.
        fps, calls = self.shape
        found = _BLOCK_PATTERNS[self.strict, fps, calls].findall(buf)
        if len(found) != count:
            more_fps, more_calls = b', "fp": "' in data, _CALL_START in data
            if (fps or not more_fps) and (calls or not more_calls):
                return False  # the pattern tried already allows all that
            fps, calls = more_fps, more_calls
            found = _BLOCK_PATTERNS[self.strict, fps, calls].findall(buf)
            if len(found) != count:
                return False
            self.shape = (fps, calls)
        if calls:
            # Call lines matched with empty groups: the state has no use for them.
            found = [m for m in found if m[0]] if fps else list(filter(None, found))
            # In the default mode a call line is matched by its head only: one
            # naming "id" anywhere (which could make it a completion) sends the
            # block line by line. Each completion names "id" once, at its head.
            if len(found) != count and not self.strict and data.count(b'"id"') != len(found):
                return False
        if not self._add_done([m[0] for m in found] if fps else found):
            return False
        if fps:
            self._add_fingerprints(found)
        return self._skipped(count, len(data))

    def _skipped(self, lines: int, size: int) -> bool:
        """Count ``lines`` whole lines of ``size`` bytes read on a fast path; ``True``."""
        self.line_number += lines
        self.offset += size
        self.last_bad_at_end = False
        return True

    def _completion(self, raw: bytes) -> bool:
        """Read a completion line by its pattern (see :meth:`block`); ``False`` if it is not one."""
        if not self.strict:
            match = _lazy_completion(raw)
        elif b', "result": ' in raw:
            return False
        else:
            match = _DONE_LINE.fullmatch(raw)
            if match is not None and not (raw.isascii() or _is_utf8(raw)):
                return False
        if match is None:
            return False
        state = self.state
        item_id = match[1].decode("utf-8")
        state.done.add(item_id)
        state.done_order.append(item_id)
        state.failures.pop(item_id, None)
        if match[2] is not None:
            state.fingerprints[item_id] = match[2][:-1].decode("utf-8")
        self.last_bad_at_end = False
        self.seen_first = True
        if not self.known:
            self.known = True  # an ID with an integer "ts": a checkpoint record
            self.first_bad = None
        return True

    def _call(self, raw: bytes) -> bool:
        """Recognise a ``call`` line by its pattern (see :meth:`block`); ``False`` if it is not one.

        The job's state ignores call records, so one recognised is skipped.
        Only once the file is known to be a checkpoint: a headerless file
        must begin with a completion or a run record.
        """
        if not self.known or not raw.startswith(_CALL_START):
            return False
        if self.strict:
            match = _CALL_STRICT_LINE.fullmatch(raw)
        else:
            match = None if b'"id"' in raw else _CALL_LINE.fullmatch(raw)
        if match is None or not (raw.isascii() or _is_utf8(raw)):
            return False
        self.last_bad_at_end = False
        return True

    def _add_done(self, ids: list[bytes]) -> bool:
        """Mark raw IDs done; ``False`` (nothing changed) if one is not UTF-8."""
        if not ids:
            return True  # a run of call records only
        try:
            # One decode for the whole block: IDs hold no newline, so split is exact.
            text = b"\n".join(ids).decode("utf-8")
        except UnicodeDecodeError:
            return False
        done = text.split("\n")
        self.state.done.update(done)
        self.state.done_order += done
        failures = self.state.failures
        if failures:
            for item_id in done:
                failures.pop(item_id, None)
        return True

    def _add_fingerprints(self, found: list[tuple[bytes, bytes]]) -> None:
        # The group holds the fingerprint and its closing quote: empty when absent.
        fingerprints = self.state.fingerprints
        for raw_id, fp in found:
            if fp:
                fingerprints[raw_id.decode("utf-8")] = fp[:-1].decode("utf-8")

    def finish(self, tail: bytes, strict: bool) -> LoadResult:
        """Settle the torn tail, refuse a file that is not a checkpoint, report bad lines."""
        result = self.result
        bad = result.bad_lines
        result.lines = self.line_number
        result.good_length = self.offset
        result.size = self.offset + len(tail)
        if tail:
            result.torn_tail = True
            result.lines += 1
        elif self.last_bad_at_end:
            last = bad.pop()
            result.torn_tail = True
            result.good_length = last.offset
            if not bad and self.first_bad is not None:
                # The only bad line is the last one: judge it as a torn tail.
                tail, self.first_bad = self.first_bad, None
        if not self.known:
            _check_unknown_content(self.path, self.first_bad, tail)
        if result.torn_tail:
            warnings.warn(
                CheckpointWarning(
                    f"{self.path}: ignoring a torn last line at byte {result.good_length}; "
                    "it is cut off before the next write"
                ),
                stacklevel=4,
            )
        _report_bad(bad, self.path, strict)
        self.state.bad_lines = len(bad)
        return result


def _other_lines(data: bytes) -> list[int]:
    """Where the lines of ``data`` that no fast path reads begin, in order.

    Those are lines that begin as neither a completion nor a call record, and
    lines naming ``"status"`` anywhere (read in full, lest a status hide in them).
    """
    size = len(data)
    starts = {m.start() for m in _OTHER_START.finditer(b"\n" + data)}
    at = data.find(b'"status"')
    while at != -1:
        begin = data.rfind(b"\n", 0, at) + 1
        starts.add(begin)
        end = data.find(b"\n", at)
        at = data.find(b'"status"', end)
    return sorted(start for start in starts if start < size)


def skip_bom(f: IO[bytes]) -> int:
    """Step past a UTF-8 byte order mark at the file's start; return its length (0 or 3).

    An editor (Notepad, an IDE set to "UTF-8 with BOM") that saved the file
    put one before the header, which then read as a corrupt line: the job's
    ID and format were lost, and the file passed for an original-format one.
    """
    head = f.read(len(codecs.BOM_UTF8))
    if head == codecs.BOM_UTF8:
        return len(head)
    f.seek(-len(head), io.SEEK_CUR)
    return 0


def iter_blocks(f: IO[bytes], tail: list[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    """Yield ``(long_line, block)`` pairs over a file; put the bytes after its last newline in ``tail``.

    ``long_line`` is a whole line (without its newline) that began in an
    earlier block, or ``None``; ``block`` is a run of whole lines ending in a
    newline, possibly empty. A line longer than a block is gathered in
    pieces and joined once, so the cost stays linear in its length.
    """
    pieces: list[bytes] = []
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        end = block.rfind(b"\n") + 1
        if not end:
            pieces.append(block)
            continue
        long_line = None
        start = 0
        if pieces:
            start = block.index(b"\n") + 1
            pieces.append(block[: start - 1])
            long_line = b"".join(pieces)
            pieces = []
        if start == 0 and end == len(block):
            yield long_line, block
        else:
            yield long_line, block[start:end]
            if end < len(block):
                pieces.append(block[end:])
    tail.append(b"".join(pieces))


def load(
    f: IO[bytes],
    path: str,
    *,
    strict: bool = False,
    consume: Callable[[dict[str, Any]], object] | None = None,
) -> LoadResult:
    """Load a checkpoint's state from a binary file positioned at its start.

    Args:
        f: The file.
        path: Its path, for messages.
        strict: Raise on a corrupt line instead of skipping it with a warning.
        consume: Called with every record :func:`read_records` would give a
            reader (each decoded in full; not the header, a bad line or a
            torn tail), in file order, as the state is folded: one read
            serves both. An error it raises ends the load.

    Raises:
        CorruptCheckpointError: A middle line is bad and ``strict`` is true.
        UnsupportedFormatError: The header names a newer format.
        NotACheckpointError: The file is not a checkpoint (see the module docstring).
    """
    loader = _Loader(path, strict, consume)
    loader.offset = skip_bom(f)  # offsets stay the file's own: a torn tail is cut where it is
    tail: list[bytes] = []
    for long_line, data in iter_blocks(f, tail):
        if long_line is not None:
            loader.line(long_line)
        if data:
            loader.block(data)
    return loader.finish(tail[0], strict)


def _report_bad(bad: list[BadLine], path: str, strict: bool) -> None:
    if not bad:
        return
    if strict:
        first = bad[0]
        raise CorruptCheckpointError(path, first.line_number, first.reason)
    for line in bad[:_MAX_WARNINGS]:
        warnings.warn(
            CheckpointWarning(f"{path}:{line.line_number}: skipped a corrupt line ({line.reason})"),
            stacklevel=5,
        )
    if len(bad) > _MAX_WARNINGS:
        warnings.warn(
            CheckpointWarning(
                f"{path}: skipped {len(bad)} corrupt lines in all; "
                f"run `agent-resume repair {path}` to rewrite the file without them"
            ),
            stacklevel=5,
        )


def _lazy_completion(raw: bytes) -> re.Match[bytes] | None:
    """A completion line matched as the default (not strict) mode reads it, else ``None``.

    Its head is matched (the ID, without escapes, in the first group; the
    fingerprint with its closing quote, if any, in the second); its usage or
    result is neither decoded nor checked. A line naming ``"status"``
    anywhere is never one.
    """
    if b'"status"' in raw:
        return None
    match = _LAZY_LINE.fullmatch(raw)
    if match is None or not (raw.isascii() or _is_utf8(raw)):
        return None
    return match


def read_records(
    f: IO[bytes], path: str, *, bodies: bool = True
) -> Iterator[tuple[int, dict[str, Any] | str, bytes]]:
    """Yield ``(line_number, record or reason, raw line)`` for every non-blank line, torn tail included.

    Blank lines are counted but not yielded. A torn last line (no ``\\n``) is
    yielded with the reason ``"torn last line"``.

    With ``bodies`` false, a completion line that a resume reads by its
    pattern (its ID without escapes, its usage or result undecoded) is given
    as ``{"id": ...}`` alone, without decoding the line: for readers that
    need to know an item was done, not what it spent.

    Raises:
        NotACheckpointError: The file has no header and its first record is not a
            checkpoint record (raised before that record is yielded).
        UnsupportedFormatError: The header names a newer format.
    """
    line_number = 0
    known = False
    unknown: list[bytes] = []  # the bad lines before any record, while none is known
    last_bad = False
    tail: list[bytes] = []
    skip_bom(f)
    for long_line, data in iter_blocks(f, tail):
        lines = data.split(b"\n")
        lines.pop()
        if long_line is not None:
            lines.insert(0, long_line)
        for raw in lines:
            line_number += 1
            if is_blank(raw):
                last_bad = False
                continue
            if not bodies and known:
                match = _lazy_completion(raw)
                if match is not None:
                    last_bad = False
                    yield line_number, {"id": match[1].decode("utf-8")}, raw
                    continue
            record = parse_line(raw)
            last_bad = not isinstance(record, dict)
            if not known:
                if last_bad:
                    if len(unknown) < 2:
                        unknown.append(raw)
                elif line_number == 1 and "agent_resume" in record:
                    check_header(record, path)  # type: ignore[arg-type]
                    known = True
                else:
                    check_checkpoint_record(record, path)  # type: ignore[arg-type]
                    known = True
            yield line_number, record, raw
    if not known:
        if not tail[0] and last_bad and len(unknown) == 1:
            _check_unknown_content(path, None, unknown[0])  # the only line, torn
        else:
            _check_unknown_content(path, unknown[0] if unknown else None, tail[0])
    if tail[0]:
        yield line_number + 1, "torn last line", tail[0]
