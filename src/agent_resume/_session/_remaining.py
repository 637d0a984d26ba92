"""``remaining()`` on a store one process holds: one item at a time, or a list in batches.

Both strategies apply :class:`~agent_resume._session._rules.ItemRules`; they
differ only in how they walk the input. The batched one is the fast path for
lists and tuples without fingerprints: it filters 16,384 IDs at a time with
set operations done in C.

On a job with many items done, a probe into the done set waits on memory
(the set no longer fits the CPU's cache), and that wait is most of what
``remaining()`` costs. When the input's IDs increase and the IDs were done in
about the same order (a job that walks its input in order), a batch is
filtered instead against a small set of the done IDs between its first and
its last, cut from the done IDs in sorted order (``_DoneRanges``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Generator, Iterator, Sequence
from itertools import chain, compress, filterfalse, islice
from operator import gt, lt, not_
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
        self.ranges: _DoneRanges | None = None
        self.first = True

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
                todo, todo_ids, ids, ordered = self._split(chunk, raw, checked, marked)
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
                elif seen is None and (
                    _above(todo_ids, last) if ordered else _increasing(todo_ids, last)
                ):
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
        self, chunk: list[T], raw: list[Any], checked: bool, marked: dict[str, bool]
    ) -> tuple[list[T], list[str], list[str], bool]:
        """The items of a batch not done, their IDs, the batch's IDs, and whether they increase.

        An ID found done is a valid one (it was checked when marked), so only
        the IDs kept are checked; if one is not a plain ASCII ``str``, the
        whole batch is normalised and filtered again. The last value is true
        when the batch was cut by the done IDs in its range, whose check found
        the IDs kept in strictly increasing order (none repeats within it).
        """
        done = self.rules.done
        if not checked:
            try:
                todo, todo_ids, ordered = self._not_done(chunk, raw, marked)
                if plain_ids(todo_ids):  # "" passes: the caller finds it in its set
                    return todo, todo_ids, raw, ordered
            except TypeError:  # an unhashable or uncomparable ID: checked_ids names it
                pass
            raw = checked_ids(raw)
        self.ranges = None  # a batch not cut: the next ones are not either
        todo, todo_ids = _not_done(chunk, raw, done)
        return todo, todo_ids, raw, False

    def _not_done(
        self, chunk: list[T], raw: list[Any], marked: dict[str, bool]
    ) -> tuple[list[T], list[Any], bool]:
        """Filter a batch through the done IDs in its range if it can, else through the done set.

        The cut is sound when every ID kept lies in the range: the IDs kept
        increase, from no lower than the first ID to no higher than the last
        (a done ID out of the range would be kept, and break that). Then the
        last value is true: the IDs kept were found to increase.
        """
        if self.first:
            # Taken after `marked` was set up: an ID is either done before
            # now (in the ranges) or marked after (in `marked`). Only an
            # input whose first batch increases can be cut.
            self.first = False
            if _increasing(raw, None):
                self.ranges = _DoneRanges.of(self.rules)
        ranges = self.ranges
        if ranges is not None:
            near = ranges.around(raw)
            if near is not None:
                todo, todo_ids = _not_done(chunk, raw, near)
                if not todo_ids or (
                    raw[0] <= todo_ids[0]
                    and todo_ids[-1] <= raw[-1]
                    and _increasing(todo_ids, None)
                ):
                    if marked:  # done since the ranges were taken
                        todo, todo_ids = _not_done(todo, todo_ids, marked)
                    return todo, todo_ids, True
            self.ranges = None  # the input is not in the done IDs' order: for the rest too
        todo, todo_ids = _not_done(chunk, raw, self.rules.done)
        return todo, todo_ids, False

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


def _above(ids: list[str], last: str | None) -> bool:
    """Whether the first of ``ids`` (if any) is above ``last``."""
    return not ids or last is None or last < ids[0]


def _increasing(ids: list[str], last: str | None) -> bool:
    """Whether ``ids`` are in strictly increasing order, all above ``last``: none repeats."""
    if not ids:
        return True
    if last is not None and not last < ids[0]:
        return False
    return all(map(lt, ids, islice(ids, 1, None)))


def _not_done(chunk: list[T], ids: list[Any], done: Container[Any]) -> tuple[list[T], list[Any]]:
    # Comprehensions, not filterfalse(done.__contains__, ...): the interpreter's own
    # `not in` on a set costs less than calling the set's method per item.
    if chunk is ids:
        todo_ids = [item_id for item_id in ids if item_id not in done]
        return todo_ids, todo_ids
    keep = [item_id not in done for item_id in ids]
    return list(compress(chunk, keep)), list(compress(ids, keep))


# Below this many done IDs the done set fits in the CPU's cache and a probe
# costs no more than the cut would (measured: no gain at 100,000 done).
_RANGED_MIN = 1 << 18


class _DoneRanges:
    """The done IDs in sorted order, from which each batch takes those in its range.

    A batch of input IDs in strictly increasing order holds a done ID only if
    it lies between the batch's first ID and its last; those few make a set
    small enough to stay in the cache. Taken only when the IDs were done in
    increasing order, or nearly (at most one in 64 out of order, as a threaded
    run leaves them), so that sorting them costs about one pass over them.
    """

    __slots__ = ("_ordered", "_top")

    def __init__(self, ordered: list[str], top: int) -> None:
        self._ordered = ordered
        self._top = top

    @classmethod
    def of(cls, rules: ItemRules) -> _DoneRanges | None:
        """The ranges of the IDs done so far, or ``None`` where the done set serves as well.

        ``rules.done_order`` is only appended to (by other threads too): the
        IDs below its current length stay as they are, so when they already
        increase it is read in place, up to that length, and the session
        remembers how many were found in order (``rules.sorted_upto``): a
        later pass compares only the IDs done since.
        """
        done_order = rules.done_order
        top = len(done_order)
        if len(rules.done) < _RANGED_MIN or top < len(rules.done):
            return None  # few done, or an order that does not cover them all
        tail = done_order[max(rules.sorted_upto - 1, 0) : top]
        descents = sum(map(gt, tail, islice(tail, 1, None)))
        if descents == 0:
            rules.sorted_upto = top
            return cls(done_order, top)
        if descents > top >> 6:
            return None  # done in no particular order: sorting would cost more than it saves
        ordered = sorted(islice(done_order, top))
        return cls(ordered, len(ordered))

    def around(self, ids: list[Any]) -> set[str] | None:
        """The done IDs from ``ids[0]`` to ``ids[-1]``, or ``None`` if there are too many.

        Too many: more than the batch has IDs (its IDs do not increase, or
        sort apart from their input order, as ``item-9`` and ``item-10``);
        the caller then uses the done set. The caller also checks that the
        IDs it keeps lie in the range.

        Raises:
            TypeError: IDs that cannot be compared (the caller checks them).
        """
        low = bisect_left(self._ordered, ids[0], 0, self._top)
        high = bisect_right(self._ordered, ids[-1], low, self._top)
        if high - low > len(ids):
            return None
        return set(self._ordered[low:high])
