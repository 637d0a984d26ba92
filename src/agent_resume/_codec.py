"""The conversation codec: chat messages to a versioned JSON document and back.

The document is ``{"conversation": 1, "messages": [...]}``. Messages are kept
as given, whatever their shape (OpenAI, Anthropic, tool calls, content
blocks, fields this library has never heard of), so a conversation saved
mid-way can be handed back to the same SDK on resume.
"""

from __future__ import annotations

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
    "CorruptConversationError",
    "Message",
    "Redactor",
    "load_conversation",
    "save_conversation",
]

CONVERSATION_FORMAT = 1
"""The version of the conversation document this library writes and reads."""

Message = dict[str, Any]
"""One chat message: a JSON-able dict."""

Redactor = Callable[[Message], Message]
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


class ConversationCodec:
    """Encodes chat messages into a versioned document and decodes them back.

    Encoding copies the messages, turning SDK objects with ``model_dump()``
    (an OpenAI ``ChatCompletionMessage``, Anthropic content blocks) into dicts
    wherever they sit, runs the redaction hook on each copy, and checks that
    the result is plain JSON: dicts with string keys, lists, strings, finite
    numbers, booleans and ``None``. Tuples come back as lists. Every string, including
    newlines, U+2028 and lone surrogates, comes back exactly, because the
    document is written as ASCII JSON.

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

    def encode(self, messages: Sequence[Any]) -> dict[str, Any]:
        """Return the versioned document for ``messages``.

        Args:
            messages: The conversation, oldest message first.

        Returns:
            ``{"conversation": 1, "messages": [...]}``, holding copies.

        Raises:
            ArgumentTypeError: ``messages`` is not a list, a message is not a
                dict or holds something JSON cannot carry (a set, an object, a
                non-string key; the error names where), or the hook returned
                something else than a dict.
            ArgumentValueError: A message holds NaN or an infinity.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise ArgumentTypeError(
                "messages",
                messages,
                f"`messages` must be a list of dicts (got {type(messages).__name__})",
            )
        out: list[Message] = []
        for index, raw in enumerate(messages):
            where = f"messages[{index}]"
            message = _plain(raw, where)
            if not isinstance(message, dict):
                raise ArgumentTypeError(
                    where, raw, f"`{where}` must be a dict (got {type(raw).__name__} {raw!r})"
                )
            if self.redact is not None:
                redacted = self.redact(message)
                if not isinstance(redacted, Mapping):
                    raise ArgumentTypeError(
                        "redact",
                        self.redact,
                        f"`redact` must return a dict (got {type(redacted).__name__} for {where})",
                    )
                message = _plain(redacted, where)
            out.append(message)
        return {"conversation": CONVERSATION_FORMAT, "messages": out}

    def decode(self, document: object, *, source: str = "<conversation>") -> list[Message]:
        """Return the messages of a document made by ``encode``.

        Args:
            document: The decoded JSON document.
            source: Where it came from, for error messages.

        Returns:
            The messages, as a new list of dicts.

        Raises:
            UnsupportedFormatError: The document was written by a newer version.
            CorruptConversationError: It is not a conversation document.
        """
        if not isinstance(document, dict) or "conversation" not in document:
            raise CorruptConversationError(source, "no 'conversation' version field")
        version = document["conversation"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptConversationError(source, f"bad version {version!r}")
        if version > CONVERSATION_FORMAT:
            raise UnsupportedFormatError(source, version, CONVERSATION_FORMAT)
        messages = document.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise CorruptConversationError(source, "'messages' is not a list of objects")
        return messages

    def dumps(self, messages: Sequence[Any]) -> bytes:
        """Return ``encode(messages)`` as UTF-8 JSON bytes (all ASCII, in fact)."""
        return json.dumps(self.encode(messages), allow_nan=False).encode("ascii")

    def loads(self, data: bytes | str, *, source: str = "<conversation>") -> list[Message]:
        """Return the messages of a document made by ``dumps``.

        Raises:
            UnsupportedFormatError: The document was written by a newer version.
            CorruptConversationError: It is not JSON, or not a conversation.
        """
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise CorruptConversationError(source, f"invalid JSON: {exc}") from None
        return self.decode(document, source=source)

    def save(self, path: str | os.PathLike[str], messages: Sequence[Any]) -> None:
        """Write ``messages`` to ``path`` atomically.

        The file is replaced in one step (temporary file, fsync, rename, fsync
        of the directory): a crash at any moment leaves the old conversation or
        the new one, never a mixture. Missing parent directories are created.
        Nothing is written when encoding fails.
        """
        data = self.dumps(messages)
        directory = os.path.dirname(os.path.abspath(os.fspath(path)))
        os.makedirs(directory, exist_ok=True)
        atomic_write(path, [data])

    def load(self, path: str | os.PathLike[str]) -> list[Message]:
        """Read the messages saved at ``path``.

        Raises:
            FileNotFoundError: Nothing was saved there.
            UnsupportedFormatError: The file was written by a newer version.
            CorruptConversationError: The file is not a conversation document.
        """
        with open(path, "rb") as f:
            data = f.read()
        return self.loads(data, source=os.fspath(path))


def save_conversation(
    path: str | os.PathLike[str],
    messages: Sequence[Any],
    *,
    redact: Redactor | None = None,
) -> None:
    """Save a conversation to ``path`` atomically (old or new, never a mixture).

    Args:
        path: The file to write; missing parent directories are created.
        messages: The chat messages, oldest first: dicts of any shape, or SDK
            message objects with ``model_dump()``.
        redact: Called with a copy of each message; returns what to store.

    Raises:
        ArgumentTypeError: A message is not a dict or holds something JSON
            cannot carry, or ``redact`` returned something else than a dict.
        ArgumentValueError: A message holds NaN or an infinity.
    """
    ConversationCodec(redact=redact).save(path, messages)


def load_conversation(path: str | os.PathLike[str]) -> list[Message]:
    """Load a conversation saved by ``save_conversation``.

    Args:
        path: The file.

    Returns:
        The messages, as dicts.

    Raises:
        FileNotFoundError: Nothing was saved there.
        UnsupportedFormatError: The file was written by a newer version.
        CorruptConversationError: The file is not a conversation document.
    """
    return ConversationCodec().load(path)
