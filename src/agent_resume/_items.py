"""Finding each item's ID, and filtering an input down to the items still to do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from agent_resume._errors import ArgumentTypeError
from agent_resume._records import normalize_id

__all__ = ["KeyFunc", "id_getter", "normalized_ids"]

T = TypeVar("T")
KeyFunc = Callable[[Any], object]

_BATCH = 4096
_get_id_attr = attrgetter("id")
_get_id_key = itemgetter("id")


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
        f"cannot find the ID of an item of type {type(item).__name__} ({item!r:.60}): "
        "give items an `id` attribute or an 'id' key, or pass key= to remaining()",
    )


def _ids_of(chunk: list[Any], getter: KeyFunc | None) -> list[str]:
    raw: list[Any] = chunk if getter is None else list(map(getter, chunk))
    kinds = set(map(type, raw))
    if kinds == {str} and "" not in raw and all(map(str.isascii, raw)):
        return raw
    return [normalize_id(r, "item ID") for r in raw]


def normalized_ids(items: Iterable[T], key: KeyFunc | None) -> Iterator[tuple[T, str]]:
    """Yield ``(item, normalised ID)`` for every item, lazily for iterators.

    Lists and tuples are read in batches, with the type checks done in C;
    any other iterable is read one item at a time, so a generator is never
    pulled ahead of the consumer.
    """
    getter: KeyFunc | None
    if isinstance(items, (list, tuple)):
        if not items:
            return
        getter = id_getter(items[0], key)
        for start in range(0, len(items), _BATCH):
            chunk = list(items[start : start + _BATCH])
            try:
                ids = _ids_of(chunk, getter)
            except (AttributeError, KeyError, TypeError):
                yield from _one_by_one(chunk, key)
                continue
            yield from zip(chunk, ids, strict=True)
        return
    yield from _one_by_one(items, key)


def _one_by_one(items: Iterable[T], key: KeyFunc | None) -> Iterator[tuple[T, str]]:
    kind: type | None = None
    getter: KeyFunc | None = None
    for item in items:
        if type(item) is not kind:
            getter = id_getter(item, key)
            kind = type(item)
        raw = item if getter is None else getter(item)
        if type(raw) is str and raw and raw.isascii():
            yield item, raw
        else:
            yield item, normalize_id(raw, "item ID")
