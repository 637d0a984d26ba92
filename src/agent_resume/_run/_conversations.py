"""Where a run keeps its items' saved conversations: in the store, in files, or in memory.

The store says where, through its capabilities (see :mod:`agent_resume.stores`):

- ``RunConfig.conversation_dir`` set: files in that directory, whatever the store;
- a :class:`~agent_resume.stores.ConversationStore` (SQLite, PostgreSQL,
  in-memory): in the store itself, so a conversation saved by a worker that
  dies is resumed by any worker that reaches the store;
- a :class:`~agent_resume.stores.ConversationDirStore` (the JSONL stores):
  files in the directory beside the checkpoint;
- any other store: a dict that lives as long as the store object.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from agent_resume._atomic import remove_with_leftovers
from agent_resume._codec import (
    ConversationCodec,
    ConversationLog,
    CorruptConversationError,
    Message,
)
from agent_resume.stores import ConversationDirStore, ConversationStore

__all__ = [
    "ConversationFiles",
    "Conversations",
    "MemoryConversations",
    "StoreConversations",
    "conversation_file",
    "conversations_for",
]

_CODEC = ConversationCodec()
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def conversation_file(item_id: str) -> str:
    """The file name of an item's saved conversation: readable, unique, safe on any OS."""
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    stem = _UNSAFE.sub("_", item_id)[:40].strip("._") or "item"
    return f"{stem}-{digest}.json"


class Conversations:
    """The saved conversations of one run's items (the base keeps nothing)."""

    def load(self, item_id: str) -> list[Message]:
        """The messages last saved for the item, or ``[]``."""
        return []

    def save(self, item_id: str, messages: Sequence[Any]) -> list[Message] | None:
        """Replace the item's saved conversation, atomically.

        Returns:
            The messages as a later :meth:`load` returns them, when that costs
            nothing more and shares no object with what this keeps to compare
            the next save with; ``None`` otherwise.
        """
        return None

    def forget(self, item_id: str, *, saved_here: bool) -> None:
        """Delete the item's saved conversation (the item is done).

        Args:
            item_id: The item.
            saved_here: Whether this run saved a conversation for the item.
        """


class ConversationFiles(Conversations):
    """One JSON Lines file per item in a directory, appended to as the conversation grows.

    Each item's file is saved through a ``ConversationLog``: a save whose
    messages extend what was saved appends only the new ones (the cost does
    not grow with the conversation); any other save replaces the file
    atomically.

    Args:
        directory: Where the files go; created on the first save.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        # The log of each item saved in this run, which remembers what is in its file.
        self._logs: dict[str, ConversationLog] = {}
        # Conversations saved by earlier runs, by file name; a temporary file
        # left by a save that was killed counts for the file it was replacing.
        self._saved: set[str] = set()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._saved = {f.split(".tmp-")[0] for f in os.listdir(directory)}

    def __repr__(self) -> str:
        return f"ConversationFiles({self.directory!r})"

    def load(self, item_id: str) -> list[Message]:
        """The messages in the item's file, or ``[]`` when it has none."""
        name = conversation_file(item_id)
        if name not in self._saved:
            return []
        try:
            return _CODEC.load(os.path.join(self.directory, name))
        except FileNotFoundError:
            return []

    def save(self, item_id: str, messages: Sequence[Any]) -> list[Message] | None:
        """Append the new messages to the item's file, or replace it atomically."""
        name = conversation_file(item_id)
        log = self._logs.get(item_id)
        if log is None:
            # A file from an earlier run is read once, to append after it.
            earlier: list[Message] | None = None if name in self._saved else []
            log = ConversationLog(os.path.join(self.directory, name), _CODEC, saved=earlier)
            self._logs[item_id] = log
        log.save(messages)
        self._saved.add(name)
        return None  # read back from the file if asked for: the log keeps its own copy

    def forget(self, item_id: str, *, saved_here: bool) -> None:
        """Delete the item's file and the temporary files of saves that were killed."""
        self._logs.pop(item_id, None)
        if not saved_here and not self._saved:
            return
        name = conversation_file(item_id)
        if saved_here or name in self._saved:
            remove_with_leftovers(os.path.join(self.directory, name))
            self._saved.discard(name)


class StoreConversations(Conversations):
    """Conversations kept by the store itself (one row per message in SQL stores).

    As with ``ConversationLog``: a save whose messages begin with what is
    stored writes only the messages after it; any other save (the history
    was edited, shortened or summarised) replaces the stored ones, in one
    transaction. What is stored for each item is remembered after the first
    load or save, so a save does not read the conversation back.

    Args:
        store: A store with the ``"conversations"`` capability.
    """

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        # The stored messages of each item this run loaded or saved, as plain values.
        self._stored: dict[str, list[Message]] = {}

    def __repr__(self) -> str:
        return f"StoreConversations({self.store!r})"

    def load(self, item_id: str) -> list[Message]:
        """The messages the store holds for the item, or ``[]``."""
        lines = self.store.load_conversation(item_id) or []
        source = f"the conversation of {item_id!r} in {self.store!r}"
        messages = [_CODEC.decode_line(line, source=source) for line in lines]
        # A copy of its own: a message edited in place by the caller must not
        # read as unchanged at the next save.
        self._stored[item_id] = copy.deepcopy(messages)
        return messages

    def save(self, item_id: str, messages: Sequence[Any]) -> list[Message] | None:
        """Append the messages after the stored ones to the store, or replace them."""
        stored = self._stored.get(item_id)
        if stored is None:
            try:
                stored = self._stored[item_id] = self.load(item_id)
            except CorruptConversationError:
                stored = []  # an unreadable row is replaced, as a corrupt file is
        n = len(stored)
        head = messages[:n]
        if len(messages) >= n and (head if isinstance(head, list) else list(head)) == stored:
            # The usual agent loop: compared in C, only the new messages are encoded.
            new = [_CODEC.plain(m, f"messages[{n + i}]") for i, m in enumerate(messages[n:])]
            start = n
        else:
            plain = _CODEC.plain_messages(messages)
            start = n if plain[:n] == stored else 0
            new = plain[start:]
        self.store.save_conversation(item_id, [_CODEC.encode_line(m) for m in new], start=start)
        # Copies of their own (a plain message may be the caller's own dict).
        self._stored[item_id] = [*stored[:start], *copy.deepcopy(new)]
        return None  # read back from the store if asked for

    def forget(self, item_id: str, *, saved_here: bool) -> None:
        """Forget what was stored: the store deleted it with the completion, in one transaction."""
        self._stored.pop(item_id, None)


class MemoryConversations(Conversations):
    """Conversations in a dict of this process.

    Args:
        kept: The dict, item ID to messages (shared by the runs of one store object).
    """

    def __init__(self, kept: dict[str, list[Message]]) -> None:
        self._kept = kept
        self._lock = threading.Lock()

    def load(self, item_id: str) -> list[Message]:
        """A copy of the messages kept for the item, or ``[]``."""
        with self._lock:
            return copy.deepcopy(self._kept.get(item_id, []))

    def save(self, item_id: str, messages: Sequence[Any]) -> list[Message] | None:
        """Keep a decoded copy of the messages."""
        decoded = _CODEC.decode(_CODEC.encode(messages))
        with self._lock:
            self._kept[item_id] = decoded
        return None  # copied from what is kept if asked for

    def forget(self, item_id: str, *, saved_here: bool) -> None:
        """Drop the item's messages."""
        if not self._kept:
            return  # nothing kept at all, the common case: no lock to take
        with self._lock:
            self._kept.pop(item_id, None)


# Conversations of stores with no place of their own live as long as their store object.
_MEMORY: weakref.WeakKeyDictionary[Any, dict[str, list[Message]]] = weakref.WeakKeyDictionary()


def conversations_for(conversation_dir: str | os.PathLike[str] | None, store: Any) -> Conversations:
    """Where a run on ``store`` keeps its items' conversations.

    Args:
        conversation_dir: ``RunConfig.conversation_dir``; when set, it wins.
        store: The run's store (open).
    """
    if conversation_dir is not None:
        return ConversationFiles(os.path.expanduser(os.fspath(conversation_dir)))
    if isinstance(store, ConversationStore):
        return StoreConversations(store)
    if isinstance(store, ConversationDirStore):
        return ConversationFiles(store.conversation_dir())
    try:
        kept = _MEMORY.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced
        kept = {}
    return MemoryConversations(kept)
