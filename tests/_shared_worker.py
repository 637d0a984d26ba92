"""A worker process for the multi-worker tests: runs a job on a shared store and reports.

Usage: python _shared_worker.py STORE_URL N_ITEMS LEASE_SECONDS SLEEP_SECONDS [DURABILITY]

Prints ``got ID`` when an item is handed out, ``done ID True|False`` after
``mark_done``, and finally ``stats {json}``; every line is flushed at once.
"""

from __future__ import annotations

import json
import sys
import time

from agent_resume import AgentResume
from agent_resume.stores import PostgresStore, SqliteStore


def main() -> None:
    url, n_items, lease, pause = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
    )
    durability = sys.argv[5] if len(sys.argv) > 5 else "flush"
    if url.startswith("sqlite:///"):
        store: SqliteStore | PostgresStore = SqliteStore.from_url(
            url, lease_seconds=lease, batch_size=5, durability=durability
        )
    else:
        store = PostgresStore(url, lease_seconds=lease, batch_size=5, durability=durability)
    items = [f"item-{n:04d}" for n in range(n_items)]
    with AgentResume(store).resume_or_start("shared-job") as session:
        for item in session.remaining(items):
            print("got", item, flush=True)
            time.sleep(pause)
            recorded = session.mark_done(item, result={"worker": store.worker_id})
            print("done", item, recorded, flush=True)
        stats = {
            "worker": store.worker_id,
            "late": store.late_completions,
            "reconnects": getattr(store, "reconnects", 0),
            "done": session.stats.done,
        }
    print("stats", json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
