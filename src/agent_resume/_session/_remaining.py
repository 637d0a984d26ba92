"""``remaining()`` on a store one process holds: one item at a time, or a list in batches.

Both strategies apply :class:`~agent_resume._session._rules.ItemRules`; they
differ only in how they walk the input. The batched one is the fast path for
lists and tuples without fingerprints: it filters 16,384 IDs at a time with
set operations done in C.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from itertools import chain, compress, filterfalse, islice
from operator import lt, not_
from typing import Any, TypeVar, cast

from agent_resume._records import normalize_id
from agent_resume._session._items import (
    KeyFunc,
    checked_ids,
    normalized_ids,
    plain_ids,
    raw_id_batches,
)
from agent_resume._session._rules import ItemRules, Strategy

__all__ = ["Batched", "OneByOne"]

T = TypeVar("T")


class OneByOne(Strategy[T]):
    """Any input, one item at a time; a generator is never pulled ahead of the caller."""

    def iterate(self) -> Generator[T, None, None]:
        """Yield the items still to do, in input order, lazily."""
        rules = self.rules
        done = rules.done
        failures = rules.failures
        seen: set[str] = set()
        for item, item_id in normalized_ids(self.items, self.key):
            if item_id in seen:
                rules.duplicate(item_id)
                continue
            if item_id in done and rules.skip_done(item, item_id):
                continue
            seen.add(item_id)
            if failures and item_id in failures and rules.is_quarantined(item_id):
                continue
            rules.check_open()
            if rules.is_done(item_id):  # marked meanwhile, from another thread
                continue
            rules.handing_out(item, item_id)
            yield item


class Batched(Strategy[T]):
    """A list or tuple, without fingerprints: the rules applied to a batch at a time in C.

    Per batch of 16,384: the done filter over the raw IDs (an ID found done
    was valid when it was marked, so only the IDs kept are checked), the
    duplicate check, then the kept items are handed out through a C iterator
    (``chain.from_iterable`` over per-batch filters), so that no Python frame
    runs per item.

    The duplicate check costs one comparison per kept ID while the IDs found
    to do are in strictly increasing order (IDs in increasing order cannot
    repeat: zero-padded counters, keys read in order); at the first ID out of
    order the pass builds the set of the IDs kept so far and checks every
    later batch through one ``set.update``, which costs about three times as
    much.
    """

    def __init__(self, rules: ItemRules, items: Sequence[T], key: KeyFunc | None) -> None:
        super().__init__(rules, items, key)
        self.sequence = items

    def iterate(self) -> Iterator[T]:
        """Yield the items still to do, in input order, lazily."""
        return chain.from_iterable(self._batches())

    def _batches(self) -> Generator[Iterator[T], None, None]:
        # Items marked done during the pass land in `marked` (through the
        # session's watchers): the lazy re-check at yield time skips those
        # marked after their batch was filtered, and a later repeat of one the
        # pass already handed out is still counted as a repeat.
        rules = self.rules
        marked: dict[str, bool] = {}
        is_marked = marked.get  # a C method called per item: cheaper than set.__contains__
        # `seen` is None while the IDs kept are strictly increasing (`last` is
        # the greatest); `kept_ids` holds them, to build `seen` from when needed.
        seen: set[str] | None = None
        last: str | None = None
        kept_ids: list[list[str]] = []
        careful = False
        rules.watchers.append(marked)
        try:
            for chunk, raw, checked in raw_id_batches(self.sequence, self.key):
                rules.check_open()
                todo, todo_ids, ids = self._split(chunk, raw, checked)
                if marked:
                    again = list(filter(is_marked, ids))
                    if again:
                        if seen is None:
                            seen = set(chain.from_iterable(kept_ids))
                        for item_id in again:
                            if item_id in seen:
                                rules.duplicate(item_id)
                if careful:
                    assert seen is not None  # built when the first repeat was found
                    todo, todo_ids = self._drop_duplicates(todo, todo_ids, seen)
                elif seen is None and _increasing(todo_ids, last):
                    if todo_ids:
                        if not todo_ids[0]:  # the least of all: only ever first
                            normalize_id("", "item ID")  # raises: no item is done under ""
                        last = todo_ids[-1]
                        kept_ids.append(todo_ids)
                else:
                    if seen is None:
                        seen = set(chain.from_iterable(kept_ids))
                    before = len(seen)
                    seen.update(todo_ids)
                    if len(seen) - before != len(todo_ids):
                        # A repeated ID: rebuild what was seen before this batch
                        # and check every later batch one ID at a time.
                        careful = True
                        seen.clear()
                        seen.update(chain.from_iterable(kept_ids))
                        kept_ids.clear()
                        todo, todo_ids = self._drop_duplicates(todo, todo_ids, seen)
                    else:
                        kept_ids.append(todo_ids)
                    if "" in seen:
                        normalize_id("", "item ID")  # raises: no item can be done under ""
                if rules.failures:
                    pairs = [
                        (item, item_id)
                        for item, item_id in zip(todo, todo_ids, strict=True)
                        if not rules.is_quarantined(item_id)
                    ]
                    todo = [pair[0] for pair in pairs]
                    todo_ids = [pair[1] for pair in pairs]
                if todo is todo_ids:
                    yield cast("Iterator[T]", filterfalse(is_marked, todo_ids))
                else:
                    yield compress(todo, map(not_, map(is_marked, todo_ids)))
        finally:
            rules.watchers.remove(marked)

    def _split(
        self, chunk: list[T], raw: list[Any], checked: bool
    ) -> tuple[list[T], list[str], list[str]]:
        """The items of a batch not done, their IDs, and the batch's IDs.

        An ID found done is a valid one (it was checked when marked), so only
        the IDs kept are checked; if one is not a plain ASCII ``str``, the
        whole batch is normalised and filtered again.
        """
        done = self.rules.done
        if not checked:
            try:
                todo, todo_ids = _not_done(chunk, raw, done)
                if plain_ids(todo_ids):  # "" passes: the caller finds it in its set
                    return todo, todo_ids, raw
            except TypeError:  # an unhashable ID: checked_ids names it
                pass
            raw = checked_ids(raw)
        todo, todo_ids = _not_done(chunk, raw, done)
        return todo, todo_ids, raw

    def _drop_duplicates(
        self, todo: list[T], todo_ids: list[str], seen: set[str]
    ) -> tuple[list[T], list[str]]:
        kept: list[T] = []
        kept_ids: list[str] = []
        for item, item_id in zip(todo, todo_ids, strict=True):
            if item_id in seen:
                self.rules.duplicate(item_id)
                continue
            seen.add(item_id)
            kept.append(item)
            kept_ids.append(item_id)
        return kept, kept_ids


def _increasing(ids: list[str], last: str | None) -> bool:
    """Whether ``ids`` are in strictly increasing order, all above ``last``: none repeats."""
    if not ids:
        return True
    if last is not None and not last < ids[0]:
        return False
    return all(map(lt, ids, islice(ids, 1, None)))


def _not_done(chunk: list[T], ids: list[Any], done: set[str]) -> tuple[list[T], list[Any]]:
    # Comprehensions, not filterfalse(done.__contains__, ...): the interpreter's own
    # `not in` on a set costs less than calling the set's method per item.
    if chunk is ids:
        todo_ids = [item_id for item_id in ids if item_id not in done]
        return todo_ids, todo_ids
    keep = [item_id not in done for item_id in ids]
    return list(compress(chunk, keep)), list(compress(ids, keep))
