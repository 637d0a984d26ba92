"""``Session.remaining()`` on a shared store: claim batches of items under a lease.

Every worker materialises the input's IDs, enqueues them (idempotently, so
all workers may do it), then claims batches and yields the claimed items in
input order within a batch. While other workers hold leases on the rest, it
waits and claims again, so that the items of a worker that died come back
once its leases expire. It stops when nothing is pending.

Within one pass an item is yielded at most once by this worker, as with the
file stores: an item that failed goes back to the queue for the other
workers, and this worker offers it again in a later ``remaining()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from agent_resume._errors import StoreClosedError
from agent_resume._session._items import KeyFunc, normalized_ids

if TYPE_CHECKING:
    from agent_resume._session._session import Session
    from agent_resume.stores._protocol import SharedStore

__all__ = ["claimed_items"]

T = TypeVar("T")


def claimed_items(session: Session, items: Iterable[T], key: KeyFunc | None) -> Iterator[T]:
    """Yield the items this worker claims, until no item of the job is pending.

    Args:
        session: An open session whose store is a shared store.
        items: The job's items; every worker should give the same ones.
        key: How to read an item's ID, as for ``remaining()``.
    """
    store: SharedStore = session.store  # type: ignore[assignment]
    position: dict[str, int] = {}
    chosen: list[T] = []
    for item, item_id in normalized_ids(items, key):
        if item_id in position:
            session._duplicate(item_id)
            continue
        position[item_id] = len(chosen)
        chosen.append(item)
    if not chosen:
        return
    store.enqueue(list(position))
    fingerprinter = session._fingerprinter
    done = session._done
    tried: set[str] = set()  # yielded in this pass, or not ours to run
    while True:
        if session.closed:
            raise StoreClosedError(f"the session for job {session.job_id!r} is closed")
        tried = {i for i in tried if i not in done}
        exclude = list(tried)
        batch = store.claim(store.batch_size, session.max_attempts, exclude)
        if not batch:
            if store.pending(session.max_attempts, exclude) == 0:
                return
            time.sleep(store.poll_seconds)
            continue
        strangers = [i for i in batch if i not in position]
        if strangers:  # enqueued by a worker given another input
            store.unclaim(strangers)
            tried.update(strangers)
        mine = sorted((position[i], i) for i in batch if i in position)
        yielded = 0
        try:
            for index, item_id in mine:
                tried.add(item_id)
                item = chosen[index]
                if fingerprinter is not None:
                    session._pending_fp[item_id] = fingerprinter(item)
                yielded += 1
                yield item
        finally:
            # Items handed out stay leased until done, failed or the store closes
            # (they may be in flight); the rest go back to the queue at once.
            rest = [i for _, i in mine[yielded:]]
            if rest and not session.closed:
                store.unclaim(rest)
