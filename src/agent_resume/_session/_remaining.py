"""``remaining()`` on a store one process holds: one item at a time, or a list in batches.

Both strategies apply :class:`~agent_resume._session._rules.ItemRules`; they
differ only in how they walk the input. The batched one is the fast path for
lists and tuples without fingerprints: it filters 16,384 IDs at a time with
set operations done in C.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from itertools import chain, compress, filterfalse
from operator import not_
from typing import TypeVar

from agent_resume._records import normalize_id
from agent_resume._session._items import KeyFunc, id_batches, normalized_ids
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
    """A list or tuple, without fingerprints: the rules applied to a batch at a time in C."""

    def __init__(self, rules: ItemRules, items: Sequence[T], key: KeyFunc | None) -> None:
        super().__init__(rules, items, key)
        self.sequence = items

    def iterate(self) -> Generator[T, None, None]:
        """Yield the items still to do, in input order, lazily."""
        # Items marked done during the pass land in `marked` (through the
        # session's watchers): the lazy re-check at yield time skips those
        # marked after their batch was filtered, and a later repeat of one the
        # pass already handed out is still counted as a repeat.
        rules = self.rules
        is_done = rules.done.__contains__
        marked: set[str] = set()
        is_marked = marked.__contains__
        seen: set[str] = set()
        kept_ids: list[list[str]] = []
        careful = False
        rules.watchers.append(marked)
        try:
            for chunk, ids in id_batches(self.sequence, self.key, check_empty=False):
                rules.check_open()
                if marked:
                    for item_id in filter(is_marked, ids):
                        if item_id in seen:
                            rules.duplicate(item_id)
                if chunk is ids:
                    todo_ids = list(filterfalse(is_done, ids))
                    todo: list[T] = todo_ids  # type: ignore[assignment]
                else:
                    keep = list(map(not_, map(is_done, ids)))
                    todo_ids = list(compress(ids, keep))
                    todo = list(compress(chunk, keep))
                if careful:
                    todo, todo_ids = self._drop_duplicates(todo, todo_ids, seen)
                else:
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
                    yield from filterfalse(is_marked, todo)
                else:
                    yield from compress(todo, map(not_, map(is_marked, todo_ids)))
        finally:
            rules.watchers.remove(marked)

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
