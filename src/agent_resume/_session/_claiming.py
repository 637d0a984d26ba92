"""``remaining()`` on a shared store: claim batches of items under a lease.

Every worker materialises the input's IDs, enqueues them (idempotently, so
all workers may do it), then claims batches and yields the claimed items in
input order within a batch. While other workers hold leases on the rest, it
waits and claims again, so that the items of a worker that died come back
once its leases expire. It stops when nothing is pending.

Within one pass an item is yielded at most once by this worker, as with the
file stores: an item that failed goes back to the queue for the other
workers, and this worker offers it again in a later ``remaining()``.

The pass is written once as steps (:meth:`Claiming._claim`,
:meth:`Claiming._mine`, ...) driven two ways: :meth:`Claiming.iterate` waits
with ``time.sleep`` (a thread may block), :meth:`Claiming.aiterate` runs the
store's calls in a thread and waits with ``asyncio.sleep``, so that an event
loop keeps running the worker's own items meanwhile (they hold leases the
other workers wait for).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import TypeVar

from agent_resume._session._items import KeyFunc, normalized_ids
from agent_resume._session._rules import ItemRules, Strategy
from agent_resume.stores import SharedStore

__all__ = ["Claiming"]

T = TypeVar("T")


class Claiming(Strategy[T]):
    """Yield the items this worker claims from a shared store, until none is pending.

    Args:
        rules: The session's rules.
        store: The shared store.
        items: The job's items; every worker should give the same ones.
        key: How to read an item's ID.
        give_up: Asked before each wait for items other workers hold; when
            it returns true the pass ends instead of waiting.
    """

    def __init__(
        self,
        rules: ItemRules,
        store: SharedStore,
        items: Iterable[T],
        key: KeyFunc | None,
        give_up: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(rules, items, key)
        self.store = store
        self._give_up = give_up
        self._position: dict[str, int] = {}
        self._chosen: list[T] = []
        self._tried: set[str] = set()  # yielded in this pass, or not ours to run

    # -- the steps -------------------------------------------------------------

    def _materialise(self) -> list[str]:
        """Read the whole input once: the IDs to enqueue, repeats counted."""
        position = self._position
        chosen = self._chosen
        for item, item_id in normalized_ids(self.items, self.key):
            if item_id in position:
                self.rules.duplicate(item_id)
                continue
            position[item_id] = len(chosen)
            chosen.append(item)
        return list(position)

    def _exclude(self) -> list[str]:
        """The IDs this worker must not claim now: tried in this pass and not done."""
        self.rules.check_open()
        done = self.rules.done
        self._tried = {i for i in self._tried if i not in done}
        return list(self._tried)

    def _claim(self, exclude: list[str]) -> list[str]:
        return self.store.claim(self.store.batch_size, self.rules.max_attempts, exclude)

    def _pending(self, exclude: list[str]) -> int:
        return self.store.pending(self.rules.max_attempts, exclude)

    def _gives_up(self) -> bool:
        return self._give_up is not None and bool(self._give_up())

    def _mine(self, batch: list[str]) -> tuple[list[tuple[int, str]], list[str]]:
        """Split a claimed batch: ours in input order, and strangers to give back.

        Strangers were enqueued by a worker given another input.
        """
        position = self._position
        strangers = [i for i in batch if i not in position]
        self._tried.update(strangers)
        return sorted((position[i], i) for i in batch if i in position), strangers

    def _hand_out(self, index: int, item_id: str) -> T:
        self._tried.add(item_id)
        item = self._chosen[index]
        self.rules.handing_out(item, item_id)
        return item

    def _give_back(self, rest: list[tuple[int, str]]) -> None:
        # Items handed out stay leased until done, failed or the store closes
        # (they may be in flight); the rest go back to the queue at once.
        if rest and not self.rules.closed:
            self.store.release([i for _, i in rest])

    # -- the two drivers -------------------------------------------------------

    def iterate(self) -> Generator[T, None, None]:
        """Yield the claimed items; while others hold the rest, sleep and claim again."""
        ids = self._materialise()
        if not ids:
            return
        self.store.enqueue(ids)
        while True:
            exclude = self._exclude()
            batch = self._claim(exclude)
            if not batch:
                if self._pending(exclude) == 0 or self._gives_up():
                    return
                time.sleep(self.store.poll_seconds)
                continue
            mine, strangers = self._mine(batch)
            if strangers:
                self.store.release(strangers)
            yielded = 0
            try:
                for index, item_id in mine:
                    item = self._hand_out(index, item_id)
                    yielded += 1
                    yield item
            finally:
                self._give_back(mine[yielded:])

    async def aiterate(self) -> AsyncGenerator[T, None]:
        """The same for an event loop: store calls run in a thread, waits are ``asyncio.sleep``."""
        ids = self._materialise()
        if not ids:
            return
        await asyncio.to_thread(self.store.enqueue, ids)
        while True:
            exclude = self._exclude()
            batch = await asyncio.to_thread(self._claim, exclude)
            if not batch:
                if await asyncio.to_thread(self._pending, exclude) == 0 or self._gives_up():
                    return
                await asyncio.sleep(self.store.poll_seconds)
                continue
            mine, strangers = self._mine(batch)
            if strangers:
                await asyncio.to_thread(self.store.release, strangers)
            yielded = 0
            try:
                for index, item_id in mine:
                    item = self._hand_out(index, item_id)
                    yielded += 1
                    yield item
            finally:
                self._give_back(mine[yielded:])
