"""Finding each item's ID, and filtering an input down to the items still to do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from agent_resume._errors import ArgumentTypeError
from agent_resume._records import normalize_id

__all__ = [
    "IdReader",
    "KeyFunc",
    "check_input",
    "check_items",
    "checked_ids",
    "id_batches",
    "id_getter",
    "key_func",
    "normalized_ids",
    "plain_ids",
    "raw_id_batches",
]

T = TypeVar("T")
KeyFunc = Callable[[Any], object]

_BATCH = 16384
_get_id_attr = attrgetter("id")
_get_id_key = itemgetter("id")


def check_items(items: object) -> None:
    """Refuse an input that is not a collection of items, before anything is read or written.

    Raises:
        ArgumentTypeError: ``items`` is a string or bytes (iterated character
            by character), a pandas ``DataFrame`` (iterated as its column
            names, which would pass for string IDs), or not iterable.
    """
    kind = type(items)
    if isinstance(items, (str, bytes, bytearray)):
        raise ArgumentTypeError(
            "items",
            items,
            f"`items` must be a collection of items, not a {kind.__name__} ({items!r:.60}), "
            "whose items would be its characters one by one; to run the lines of a JSONL file, read "
            "them first ([json.loads(line) for line in f]) or use `agent-resume run --items FILE`",
        )
    if kind.__name__ == "DataFrame" and kind.__module__.partition(".")[0] == "pandas":
        raise ArgumentTypeError(
            "items",
            items,
            "`items` is a pandas DataFrame, whose items would be its column names; pass "
            "its rows: df.to_dict('records') or df.itertuples(index=False)",
        )
    if not hasattr(items, "__iter__") and not hasattr(items, "__getitem__"):
        raise ArgumentTypeError(
            "items",
            items,
            "`items` must be an iterable of items, such as a list or a generator "
            f"(got {kind.__name__} {items!r:.60})",
        )


def check_input(items: object, key: KeyFunc | str | None) -> KeyFunc | None:
    """Check an input and its ``key=`` (:func:`check_items`) and return the ID reader (:func:`key_func`).

    Raises:
        ArgumentTypeError: ``items`` is not a collection of items, or ``key``
            is neither a function nor a field name.
    """
    check_items(items)
    return key_func(key)


def key_func(key: KeyFunc | str | None) -> KeyFunc | None:
    """The function that reads an item's ID, from what ``key=`` was given.

    A callable is that function; a field name (``"doc_id"``, as the CLI's
    ``--key``) reads ``item["doc_id"]`` from a mapping, else
    ``item.doc_id``; ``None`` leaves the default rule (:func:`id_getter`).

    Raises:
        ArgumentTypeError: ``key`` is none of those.
    """
    if key is None or callable(key):
        return key
    if isinstance(key, str) and key:
        return _FieldReader(key)
    raise ArgumentTypeError(
        "key",
        key,
        "`key` must be a function that returns an item's ID, or the name of the field "
        f"that holds it (got {type(key).__name__} {key!r:.60})",
    )


class _FieldReader:
    """Reads one named field of an item: a mapping's key, else an attribute."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, item: object) -> object:
        name = self.name
        if isinstance(item, Mapping):
            if name in item:
                return item[name]
        elif hasattr(item, name):
            return getattr(item, name)
        raise ArgumentTypeError(
            "items",
            item,
            f"`items`: an item of type {type(item).__name__} has no field {name!r}, "
            f"which key={name!r} reads its ID from ({item!r:.60})",
        )

    def __repr__(self) -> str:
        return f"key={self.name!r}"


def id_getter(item: object, key: KeyFunc | None) -> KeyFunc | None:
    """Choose how to read the ID of items shaped like ``item``.

    The rule: ``key(item)`` if given, else ``item.id``, else ``item["id"]``,
    else the item itself when it is a ``str`` (returned as ``None``).

    Raises:
        ArgumentTypeError: No rule applies to the item.
    """
    if key is not None:
        return key
    if hasattr(item, "id"):
        return _get_id_attr
    if isinstance(item, Mapping) and "id" in item:
        return _get_id_key
    if isinstance(item, str):
        return None
    raise ArgumentTypeError(
        "items",
        item,
        f"`items`: cannot find the ID of an item of type {type(item).__name__} ({item!r:.60}): "
        "give items an `id` attribute or an 'id' key, or pass key= to remaining()",
    )


def plain_ids(raw: list[Any]) -> bool:
    """Whether every ID is an ASCII ``str`` (one C pass): then it needs no normalising.

    ``str.isascii`` refuses anything that is not a ``str``, so this checks the
    types too; non-ASCII IDs and ints take the careful path (:func:`checked_ids`).
    """
    try:
        return all(map(str.isascii, raw))
    except TypeError:
        return False


def checked_ids(raw: list[Any]) -> list[str]:
    """Normalise raw IDs one by one (raises on a bad one)."""
    return [normalize_id(r, "item ID") for r in raw]


def id_batches(items: Sequence[T], key: KeyFunc | None) -> Iterator[tuple[list[T], list[str]]]:
    """Yield ``(items, normalised IDs)`` in batches of a sequence, the checks done in C."""
    for chunk, raw, checked in raw_id_batches(items, key):
        yield chunk, raw if checked else _checked_or_plain(raw)


def _checked_or_plain(raw: list[Any]) -> list[str]:
    if plain_ids(raw) and "" not in raw:
        return raw
    return checked_ids(raw)


def raw_id_batches(
    items: Sequence[T], key: KeyFunc | None
) -> Iterator[tuple[list[T], list[Any], bool]]:
    """Yield ``(items, IDs, checked)`` in batches of 16,384 of a sequence.

    The IDs are read by the rule of :func:`id_getter` but, unless ``checked``
    is true, not yet checked nor normalised: the caller checks those it keeps
    (with :func:`plain_ids`, falling back to :func:`checked_ids`). When the
    items are ``str``, the IDs list is the items list itself.
    """
    if not items:
        return
    getter = id_getter(items[0], key)
    for start in range(0, len(items), _BATCH):
        part = items[start : start + _BATCH]
        chunk = part if type(part) is list else list(part)
        if getter is None:
            yield chunk, chunk, False
            continue
        try:
            raw = list(map(getter, chunk))
        except (AttributeError, KeyError, TypeError):
            # Items of mixed shapes: read each by its own type's rule.
            yield chunk, [item_id for _, item_id in _one_by_one(chunk, key)], True
            continue
        yield chunk, raw, False


def normalized_ids(items: Iterable[T], key: KeyFunc | None) -> Iterator[tuple[T, str]]:
    """Yield ``(item, normalised ID)`` for every item, lazily for iterators.

    Lists and tuples are read in batches; any other iterable is read one item
    at a time, so a generator is never pulled ahead of the consumer.
    """
    if isinstance(items, (list, tuple)):
        for chunk, ids in id_batches(items, key):
            yield from zip(chunk, ids, strict=True)
        return
    yield from _one_by_one(items, key)


class IdReader:
    """Reads item IDs by the rule of :func:`id_getter`, choosing the rule once per item type."""

    __slots__ = ("_getter", "_key", "_kind")

    def __init__(self, key: KeyFunc | None) -> None:
        self._key = key
        self._kind: type | None = None
        self._getter: KeyFunc | None = None

    def __call__(self, item: object) -> str:
        """Return the item's normalised ID."""
        if type(item) is not self._kind:
            self._getter = id_getter(item, self._key)
            self._kind = type(item)
        raw = item if self._getter is None else self._getter(item)
        if type(raw) is str and raw and raw.isascii():
            return raw
        return normalize_id(raw, "item ID")


def _one_by_one(items: Iterable[T], key: KeyFunc | None) -> Iterator[tuple[T, str]]:
    read = IdReader(key)
    for item in items:
        yield item, read(item)
