"""A worker process for the shared-store ``arun`` test: runs a job with ``arun`` and reports.

Usage: python _arun_worker.py STORE_URL N_ITEMS BATCH_SIZE CONCURRENCY

Prints one line, ``report {json}``: the run's done count, stop reason and what is left.
"""

from __future__ import annotations

import asyncio
import json
import sys

from agent_resume import ItemContext, ResumableRun, RunConfig
from agent_resume.stores import PostgresStore, SqliteStore


async def aprocess(item: str, ctx: ItemContext) -> str:
    await asyncio.sleep(0.01)
    return item


def main() -> None:
    url, n_items, batch, concurrency = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    if url.startswith("sqlite:///"):
        store: SqliteStore | PostgresStore = SqliteStore.from_url(
            url, batch_size=batch, lease_seconds=30
        )
    else:
        store = PostgresStore(url, batch_size=batch, lease_seconds=30)
    items = [f"item-{n:03d}" for n in range(n_items)]
    config = RunConfig(job_id="arun-shared", store=store, concurrency=concurrency, progress=False)
    report = asyncio.run(ResumableRun(config).arun(aprocess, items))
    summary = {"done": report.done, "stop_reason": report.stop_reason, "left": report.remaining}
    print("report", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
