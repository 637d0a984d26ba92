"""The conversation codec: chat messages to JSON Lines and back, appended cheaply.

A conversation file is JSON Lines: a header line with the format version,
then one message a line, oldest first::

    {"conversation":2}
    {"role":"user","content":"hi"}
    {"role":"assistant","content":"hello"}

Saving a longer conversation appends only its new messages, so a save costs
the same at message 500 as at message 10; a crash mid-append leaves a
readable prefix (the torn last line is dropped on load, as in checkpoints).
Two other formats are read too: conversation-codec's (the Rust crate: one
JSON value a line, no header) and the whole-document files of earlier
agent-resume versions (``{"conversation": 1, "messages": [...]}``).

Messages are kept as given, whatever their shape (OpenAI, Anthropic, tool
calls, content blocks, fields this library has never heard of, and values
that are not objects at all), so a conversation saved mid-way can be handed
back to the same SDK on resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent_resume._atomic import atomic_write
from agent_resume._errors import (
    ArgumentTypeError,
    ArgumentValueError,
    StoreError,
    UnsupportedFormatError,
)

__all__ = [
    "CONVERSATION_FORMAT",
    "ConversationCodec",
    "ConversationLog",
    "CorruptConversationError",
    "Message",
    "Redactor",
    "decode_line",
    "encode_line",
    "load_conversation",
    "save_conversation",
]

CONVERSATION_FORMAT = 2
"""The version of the conversation format this library writes (and the newest it reads).

Version 2 is JSON Lines with a header line; version 1 was one JSON document
with every message in a ``"messages"`` list (only objects). Both are read.
"""

HEADER = b'{"conversation":2}\n'
"""The first line of a conversation file of this version."""

Message = Any
"""One chat message: usually a JSON object (a dict), but any JSON value is kept."""

Redactor = Callable[[Any], Any]
"""A hook that gets a copy of each message on save and returns what to store."""


class CorruptConversationError(StoreError, ValueError):
    """A saved conversation could not be read: not JSON, or not a conversation document.

    Attributes:
        path: Where the conversation came from (a file, or ``"<conversation>"``).
        reason: What was wrong.
    """

    def __init__(self, path: str, reason: str) -> None:
        self._args = (path, reason)
        super().__init__(f"{path}: not a readable conversation ({reason})")
        self.path = path
        self.reason = reason


def _sdk_dump(value: object) -> Any:
    # SDK objects (OpenAI's and Anthropic's messages and content blocks are
    # pydantic models) become the dicts the same SDK accepts back.
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json", exclude_unset=True)
    return None


def _plain(value: Any, where: str) -> Any:
    """Return a copy of ``value`` made of plain JSON types, or say where it is not."""
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise ArgumentValueError(where, value, f"`{where}` must be a finite number (got {value!r})")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentTypeError(
                    where,
                    key,
                    f"keys of `{where}` must be strings (got {type(key).__name__} {key!r})",
                )
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    dumped = _sdk_dump(value)
    if isinstance(dumped, dict):
        return _plain(dumped, where)
    raise ArgumentTypeError(
        where, value, f"`{where}` cannot be stored as JSON (got {type(value).__name__} {value!r})"
    )


def _dumps(value: Any) -> str:
    # ASCII JSON: every string, U+2028 and lone surrogates included, comes back
    # exactly, and no raw newline can end up inside a line.
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


class ConversationCodec:
    """Encodes chat messages for storage and decodes them back.

    Encoding copies the messages, turning SDK objects with ``model_dump()``
    (an OpenAI ``ChatCompletionMessage``, Anthropic content blocks) into dicts
    wherever they sit, runs the redaction hook on each copy, and checks that
    the result is plain JSON: dicts with string keys, lists, strings, finite
    numbers, booleans and ``None``. Tuples come back as lists. Every string,
    including newlines, U+2028 and lone surrogates, comes back exactly,
    because everything is written as ASCII JSON.

    Three layers, for three uses:

    - one message: ``encode_line`` / ``decode_line`` (a store that keeps one
      row per message uses these);
    - a whole conversation as one JSON value: ``encode`` / ``decode``;
    - files: ``save`` (atomic replace), ``append`` (only new messages),
      ``load``, and ``dumps`` / ``loads`` for the file's bytes.

    Args:
        redact: Called with a copy of each message on encode; returns the
            message to store (the caller's messages are never changed).
            Decoding does not undo it: what was redacted stays redacted.
    """

    def __init__(self, *, redact: Redactor | None = None) -> None:
        if redact is not None and not callable(redact):
            raise ArgumentTypeError(
                "redact", redact, f"`redact` must be callable or None (got {redact!r})"
            )
        self.redact = redact

    def __repr__(self) -> str:
        return f"ConversationCodec(redact={self.redact!r})"

    # -- one message -----------------------------------------------------------

    def plain(self, message: Any, where: str = "message") -> Any:
        """Return the stored form of one message: a redacted, plain-JSON copy.

        Args:
            message: A dict of any shape, an SDK object with ``model_dump()``,
                or any other JSON value.
            where: How to name the message in errors, e.g. ``"messages[3]"``.

        Returns:
            The copy to store.

        Raises:
            ArgumentTypeError: The message holds something JSON cannot carry
                (a set, an object, a non-string key; the error names where),
                or the hook turned a dict into something else than a dict.
            ArgumentValueError: The message holds NaN or an infinity.
        """
        copy = _plain(message, where)
        if self.redact is None:
            return copy
        redacted = self.redact(copy)
        if isinstance(copy, dict) and not isinstance(redacted, Mapping):
            raise ArgumentTypeError(
                "redact",
                self.redact,
                f"`redact` must return a dict for a dict message "
                f"(got {type(redacted).__name__} for {where})",
            )
        return _plain(redacted, where)

    def encode_line(self, message: Any) -> str:
        """Return one message as one line of JSON (ASCII, without the newline).

        Args:
            message: The message; see ``plain``.

        Returns:
            The line, redacted if the codec has a hook.
        """
        return _dumps(self.plain(message))

    @staticmethod
    def decode_line(line: str | bytes, *, source: str = "<line>") -> Any:
        """Return the message on one line made by ``encode_line`` (or by conversation-codec).

        Args:
            line: The line; surrounding whitespace and the newline are ignored.
            source: Where it came from, for error messages.

        Raises:
            CorruptConversationError: The line is not JSON (a blank line is
                not a message either).
        """
        try:
            return json.loads(line)
        except ValueError as exc:
            raise CorruptConversationError(source, f"invalid JSON: {exc}") from None

    # -- a whole conversation as one JSON value -------------------------------

    def encode(self, messages: Sequence[Any]) -> dict[str, Any]:
        """Return the versioned document for ``messages``, one JSON value.

        Args:
            messages: The conversation, oldest message first.

        Returns:
            ``{"conversation": 2, "messages": [...]}``, holding copies.

        Raises:
            ArgumentTypeError: ``messages`` is not a list, a message holds
                something JSON cannot carry (the error names where), or the
                hook returned something else than a dict for a dict.
            ArgumentValueError: A message holds NaN or an infinity.
        """
        return {"conversation": CONVERSATION_FORMAT, "messages": self.plain_messages(messages)}

    def decode(self, document: object, *, source: str = "<conversation>") -> list[Any]:
        """Return the messages of a document made by ``encode`` (version 1 or 2).

        Args:
            document: The decoded JSON document.
            source: Where it came from, for error messages.

        Returns:
            The messages, as a new list.

        Raises:
            UnsupportedFormatError: The document was written by a newer version.
            CorruptConversationError: It is not a conversation document.
        """
        if not isinstance(document, dict) or "conversation" not in document:
            raise CorruptConversationError(source, "no 'conversation' version field")
        version = _version(document["conversation"], source)
        messages = document.get("messages")
        if not isinstance(messages, list) or (
            version == 1 and not all(isinstance(m, dict) for m in messages)
        ):
            raise CorruptConversationError(source, "'messages' is not a list of objects")
        return list(messages)

    def plain_messages(self, messages: Sequence[Any]) -> list[Any]:
        """Return the stored form of every message (see ``plain``), naming each in errors.

        Raises:
            ArgumentTypeError: ``messages`` is not a list, or a message cannot
                be stored.
            ArgumentValueError: A message holds NaN or an infinity.
        """
        _check_list(messages)
        return [self.plain(m, f"messages[{i}]") for i, m in enumerate(messages)]

    # -- files -------------------------------------------------------------------

    def dumps(self, messages: Sequence[Any]) -> bytes:
        """Return the bytes of a conversation file holding ``messages`` (ASCII JSON Lines)."""
        return _file_bytes(self.plain_messages(messages))

    def loads(self, data: bytes | str, *, source: str = "<conversation>") -> list[Any]:
        """Return the messages of a conversation file's bytes, in any of the three formats.

        Blank lines are skipped. A last line without its newline that is not
        whole JSON is a write cut short and is dropped; in this version's
        format (with a header line) a last line without its newline is always
        dropped, since every save ends its lines.

        Raises:
            UnsupportedFormatError: The file was written by a newer version.
            CorruptConversationError: A line is not JSON, or the file is not
                a conversation.
        """
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        return _parse(data, source).messages

    def save(self, path: str | os.PathLike[str], messages: Sequence[Any]) -> None:
        """Write ``messages`` to ``path`` atomically, replacing what was there.

        The file is replaced in one step (temporary file, fsync, rename, fsync
        of the directory): a crash at any moment leaves the old conversation or
        the new one, never a mixture. Missing parent directories are created.
        Nothing is written when encoding fails.
        """
        data = self.dumps(messages)
        _write_whole(path, data)

    def append(self, path: str | os.PathLike[str], messages: Sequence[Any]) -> None:
        """Add ``messages`` at the end of the conversation at ``path``.

        Only the new messages are written (and synced), so the cost does not
        grow with the conversation. A missing or empty file is created with a
        header; a conversation-codec file (no header) stays one; a file of
        the old whole-document format is rewritten once in this format. A
        torn last line left by an earlier crash is cut off first. A crash
        during the append leaves the conversation before it, or with some of
        the new messages: never a broken file.

        Raises:
            ArgumentTypeError: A message cannot be stored (nothing is written).
            ArgumentValueError: A message holds NaN or an infinity.
            UnsupportedFormatError: The file was written by a newer version.
            CorruptConversationError: The file is not a conversation.
        """
        plain = self.plain_messages(messages)
        append_plain(path, plain)

    def load(self, path: str | os.PathLike[str]) -> list[Any]:
        """Read the messages saved at ``path`` (any of the three formats).

        Raises:
            FileNotFoundError: Nothing was saved there.
            UnsupportedFormatError: The file was written by a newer version.
            CorruptConversationError: The file is not a conversation.
        """
        with open(path, "rb") as f:
            data = f.read()
        return self.loads(data, source=os.fspath(path))


def _check_list(messages: object) -> None:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ArgumentTypeError(
            "messages",
            messages,
            f"`messages` must be a list of messages (got {type(messages).__name__})",
        )


def _version(version: object, source: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptConversationError(source, f"bad version {version!r}")
    if version > CONVERSATION_FORMAT:
        raise UnsupportedFormatError(source, version, CONVERSATION_FORMAT)
    return version


def _lines(plain: Sequence[Any]) -> bytes:
    return b"".join(_dumps(m).encode("ascii") + b"\n" for m in plain)


def _file_bytes(plain: Sequence[Any]) -> bytes:
    return HEADER + _lines(plain)


class _Parsed:
    """A conversation file, read: its messages, its kind and where its good bytes end."""

    __slots__ = ("good_length", "kind", "messages")

    def __init__(self, messages: list[Any], kind: str, good_length: int) -> None:
        self.messages = messages
        self.kind = kind  # "jsonl" (with header), "plain" (conversation-codec), "document"
        self.good_length = good_length


def _is_header(value: object) -> bool:
    if not (isinstance(value, dict) and len(value) == 1 and "conversation" in value):
        return False
    version = value["conversation"]
    return isinstance(version, int) and not isinstance(version, bool)


def _is_document(value: object) -> bool:
    return isinstance(value, dict) and "conversation" in value and "messages" in value


def _parse(data: bytes, source: str) -> _Parsed:
    """Read a conversation file in any format (see ``ConversationCodec.loads``)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # the bytes after the last newline: b"" or a line cut short
    good_length = len(data) - len(tail)
    kind = ""
    values: list[Any] = []

    def take(value: Any, number: int) -> None:
        nonlocal kind
        if not kind:
            if _is_document(value):
                kind = "document"
            elif _is_header(value):
                kind = "jsonl"
                if _version(value["conversation"], source) == 1:
                    raise CorruptConversationError(source, "'messages' is not a list of objects")
                return
            else:
                kind = "plain"
        elif kind == "document":
            raise CorruptConversationError(source, f"line {number}: text after the document")
        values.append(value)

    for number, raw in enumerate(lines, 1):
        if raw.strip():
            take(ConversationCodec.decode_line(raw, source=f"{source}:{number}"), number)
    if tail.strip() and kind != "jsonl":
        # A last line without its newline: whole JSON is kept (other tools,
        # and the old document format, may not end their last line); anything
        # else is a write cut short, and dropped. This version's format ends
        # every line it writes, so there such a line is always dropped.
        try:
            value = json.loads(tail)
        except ValueError:
            pass
        else:
            take(value, len(lines) + 1)
            if kind != "jsonl":
                good_length = len(data)
    if kind == "document":
        return _Parsed(ConversationCodec().decode(values[0], source=source), kind, good_length)
    return _Parsed(values, kind or "jsonl", good_length)


def _write_whole(path: str | os.PathLike[str], data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    atomic_write(path, [data])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def append_plain(
    path: str | os.PathLike[str],
    plain: Sequence[Any],
    *,
    if_missing: Sequence[Any] | None = None,
) -> None:
    """Append messages already in their stored form (see ``ConversationCodec.plain``).

    The primitive under ``ConversationCodec.append`` and ``ConversationLog``:
    the file's format is checked from its first line and its last bytes
    only, so the cost does not grow with the file.

    Args:
        path: The conversation file; created (with its directory) if missing.
        plain: The messages to add, as plain JSON values.
        if_missing: What to write instead when the file does not exist
            (``plain`` when ``None``): a caller that knows the earlier
            messages gives them all, so a deleted file is not recreated with
            only the new ones.
    """
    source = os.fspath(path)
    try:
        fd = os.open(source, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        _write_whole(path, _file_bytes(plain if if_missing is None else if_missing))
        return
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, len(HEADER), 0)
        if size == 0:
            kind = "empty"
        elif head == HEADER:
            kind = "jsonl"
        else:
            kind = ""
        if kind == "":
            # Another format, or a header written otherwise: read the whole
            # file once. A conversation-codec file stays one; any other is
            # rewritten in this format.
            data = _read_all(fd)
            parsed = _parse(data, source)
            if parsed.kind != "plain":
                os.close(fd)
                fd = -1
                _write_whole(path, _file_bytes([*parsed.messages, *plain]))
                return
            good = parsed.good_length
            prefix = b"\n" if good and not data[:good].endswith(b"\n") else b""
        else:
            good = size if kind == "empty" else _end_of_last_line(fd, size)
            prefix = HEADER if good == 0 else b""
        if good < size:
            os.ftruncate(fd, good)  # a torn line left by a crash
        try:
            _write_all(fd, prefix + _lines(plain))
            os.fsync(fd)
        except BaseException:
            # Leave the file as it was: no half-written line for the next reader.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, good)
            raise
    finally:
        if fd >= 0:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _end_of_last_line(fd: int, size: int) -> int:
    """Return the offset just after the last newline of the file (0 if none)."""
    end = size
    step = 4096
    while end > 0:
        start = max(0, end - step)
        block = os.pread(fd, end - start, start)
        at = block.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


class ConversationLog:
    """One conversation file saved again and again as it grows, appending when it can.

    ``save(messages)`` writes only ``messages[len(saved):]`` when ``messages``
    begins with what was saved last (the usual agent loop, which appends to
    its list), and replaces the file atomically otherwise (the history was
    edited, shortened or summarised). The comparison is by value for dicts,
    lists and other plain values; an SDK object (``model_dump()``) that is the
    very object saved last is taken as unchanged.

    Args:
        path: The conversation file.
        codec: The codec for new messages (its redaction hook applies).
        saved: The messages already in the file, if the caller has read them;
            ``None`` reads the file on the first ``save`` or ``messages``.
    """

    __slots__ = ("_codec", "_plain", "_raw", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        codec: ConversationCodec | None = None,
        *,
        saved: Sequence[Any] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._codec = codec or ConversationCodec()
        self._plain: list[Any] | None = None if saved is None else list(saved)
        self._raw: list[Any] = [] if saved is None else list(saved)

    def __repr__(self) -> str:
        return f"ConversationLog({self.path!r})"

    @property
    def messages(self) -> list[Any]:
        """The messages in the file, as saved (a copy: editing it changes nothing saved)."""
        return copy.deepcopy(self._saved())

    def _saved(self) -> list[Any]:
        if self._plain is None:
            try:
                self._plain = self._codec.load(self.path)
            except FileNotFoundError:
                self._plain = []
            self._raw = list(self._plain)
        return self._plain

    def _unchanged(self, messages: Sequence[Any], saved: list[Any]) -> bool:
        """Whether ``messages`` begins with the ``saved`` messages."""
        if len(messages) < len(saved):
            return False
        head = messages[: len(saved)]
        if (head if isinstance(head, list) else list(head)) == saved:
            return True  # compared in C: plain dicts and values, the usual case
        raw = self._raw
        for i, stored in enumerate(saved):
            message = messages[i]
            if message is raw[i] and not isinstance(message, (dict, list)):
                continue
            if type(message) is type(stored) and message == stored:
                continue
            if self._codec.plain(message, f"messages[{i}]") != stored:
                return False
        return True

    def save(self, messages: Sequence[Any]) -> None:
        """Save the conversation so far: append the new messages, or replace the file.

        Args:
            messages: The whole conversation, oldest first.

        Raises:
            ArgumentTypeError: A message cannot be stored; nothing is written.
            ArgumentValueError: A message holds NaN or an infinity.
            UnsupportedFormatError: The file was written by a newer version
                (it is left as it is). A corrupt file is replaced.
        """
        _check_list(messages)
        try:
            saved = self._saved()
        except CorruptConversationError:
            # An unreadable file is replaced, as a whole save always did; a
            # file of a newer version (UnsupportedFormatError) is not touched.
            saved = self._plain = self._raw = []
        if saved and self._unchanged(messages, saved):
            start = len(saved)
            new = [
                self._codec.plain(m, f"messages[{start + i}]")
                for i, m in enumerate(messages[start:])
            ]
            plain = [*saved, *new]
            if new:
                append_plain(self.path, new, if_missing=plain)
            # Kept as copies of their own: a plain message may be the caller's
            # dict, and one it edits in place must not read as unchanged.
            self._plain = [*saved, *copy.deepcopy(new)]
        else:
            plain = self._codec.plain_messages(messages)
            _write_whole(self.path, _file_bytes(plain))
            self._plain = copy.deepcopy(plain)
        self._raw = list(messages)


def encode_line(message: Any, *, redact: Redactor | None = None) -> str:
    """Return one message as one line of JSON, as conversation-codec's ``encode_line``.

    Args:
        message: A dict of any shape, an SDK object with ``model_dump()``, or
            any other JSON value.
        redact: Called with a copy of the message; returns what to store.

    Returns:
        ASCII JSON, without the newline.
    """
    return ConversationCodec(redact=redact).encode_line(message)


def decode_line(line: str | bytes) -> Any:
    """Return the message on one line, as conversation-codec's ``decode_line``.

    Raises:
        CorruptConversationError: The line is not JSON.
    """
    return ConversationCodec.decode_line(line)


def save_conversation(
    path: str | os.PathLike[str],
    messages: Sequence[Any],
    *,
    redact: Redactor | None = None,
) -> None:
    """Save a conversation to ``path`` atomically (old or new, never a mixture).

    To save a growing conversation again and again cheaply, use
    ``ConversationLog`` (or ``ConversationCodec.append``) instead: this
    function rewrites the whole file.

    Args:
        path: The file to write; missing parent directories are created.
        messages: The chat messages, oldest first: dicts of any shape, SDK
            message objects with ``model_dump()``, or other JSON values.
        redact: Called with a copy of each message; returns what to store.

    Raises:
        ArgumentTypeError: A message holds something JSON cannot carry, or
            ``redact`` returned something else than a dict for a dict.
        ArgumentValueError: A message holds NaN or an infinity.
    """
    ConversationCodec(redact=redact).save(path, messages)


def load_conversation(path: str | os.PathLike[str]) -> list[Any]:
    """Load a conversation saved by agent-resume (any version) or by conversation-codec.

    Args:
        path: The file.

    Returns:
        The messages.

    Raises:
        FileNotFoundError: Nothing was saved there.
        UnsupportedFormatError: The file was written by a newer version.
        CorruptConversationError: The file is not a conversation.
    """
    return ConversationCodec().load(path)
