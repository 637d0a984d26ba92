"""Where checkpoints live: pick a store, or let :func:`open_store` pick one from a URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agent_resume._errors import ArgumentTypeError, ArgumentValueError, CheckpointWarning
from agent_resume._render import masked_url
from agent_resume.stores._jsonl import JsonlStore, ResultJsonlStore
from agent_resume.stores._memory import InMemoryStore
from agent_resume.stores._protocol import (
    ConversationDirStore,
    ConversationStore,
    Durability,
    OnePassStore,
    SharedStore,
    SkimmingStore,
    Store,
    StoreDescription,
)

if TYPE_CHECKING:
    from agent_resume.stores._postgres import PostgresStore
    from agent_resume.stores._sqlite import SqliteStore

__all__ = [
    "CheckpointWarning",
    "ConversationDirStore",
    "ConversationStore",
    "Durability",
    "InMemoryStore",
    "JsonlStore",
    "OnePassStore",
    "PostgresStore",
    "ResultJsonlStore",
    "SharedStore",
    "SkimmingStore",
    "SqliteStore",
    "Store",
    "StoreDescription",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The SQL stores load on first use, so that importing agent_resume never
    # imports sqlite3 or psycopg; PostgresStore raises MissingExtraError when
    # built without psycopg.
    if name == "SqliteStore":
        from agent_resume.stores._sqlite import SqliteStore

        return SqliteStore
    if name == "PostgresStore":
        from agent_resume.stores._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(target: str | os.PathLike[str] | Store, *, results: bool = True) -> Store:
    """Build a store from a path, a URL or a store.

    - ``memory:`` gives an :class:`InMemoryStore`;
    - a path ending in ``.jsonl`` gives a :class:`ResultJsonlStore`, or a
      :class:`JsonlStore` when ``results`` is false;
    - ``sqlite:///path.db`` gives a ``SqliteStore``; ``postgresql://...`` a
      ``PostgresStore``;
    - a store is returned as it is.

    Raises:
        ArgumentValueError: The target is none of these.
        ArgumentTypeError: The target is neither a string, a path nor a store.
    """
    kind = store_kind(target)
    if kind == "store":
        assert isinstance(target, Store)
        return target
    assert isinstance(target, (str, os.PathLike))
    text = os.fspath(target)
    if kind == "memory":
        return InMemoryStore()
    if kind == "sqlite":
        from agent_resume.stores._sqlite import SqliteStore

        store: Store = SqliteStore.from_url(text)
        return store
    if kind == "postgresql":
        from agent_resume.stores._postgres import PostgresStore

        shared: Store = PostgresStore(text)
        return shared
    return ResultJsonlStore(text) if results else JsonlStore(text)


def store_kind(target: object) -> str:
    """Say which store ``open_store(target)`` builds, without building it.

    Returns:
        ``"store"``, ``"memory"``, ``"sqlite"``, ``"postgresql"`` or ``"jsonl"``.

    Raises:
        ArgumentValueError: The target is none of these.
        ArgumentTypeError: The target is neither a string, a path nor a store.
    """
    if isinstance(target, Store):
        return "store"
    if not isinstance(target, (str, os.PathLike)):
        raise ArgumentTypeError(
            "store",
            target,
            f"`store` must be a path, a URL or a Store, got {type(target).__name__}",
        )
    text = os.fspath(target)
    if not isinstance(text, str):
        raise ArgumentTypeError(
            "store", target, f"`store` must be a str path, not bytes (got {text!r})"
        )
    if text == "memory:":
        return "memory"
    if text.startswith("sqlite://"):
        return "sqlite"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if text.endswith(".jsonl"):
        return "jsonl"
    shown = masked_url(text)
    raise ArgumentValueError(
        "store",
        shown,
        f"`store` must be a .jsonl path, sqlite:///path.db or postgresql://... (got {shown!r})",
    )
