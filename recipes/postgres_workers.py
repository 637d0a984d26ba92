"""Run one job on many machines: start this script anywhere, as often as you like.

Every copy given the same DSN and job shares the work: items are claimed in
batches under a lease, a copy that dies loses its leases after
``--lease`` seconds and the others finish its items, and each item is
recorded done exactly once.

    export AGENT_RESUME_PG_DSN=postgresql://user:pass@db-host:5432/jobs
    python recipes/postgres_workers.py --items 1000 &
    python recipes/postgres_workers.py --items 1000 &   # on this or another machine

Replace ``process_item`` with the LLM call of your job.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from agent_resume import AgentResume
from agent_resume.stores import PostgresStore


def process_item(item: dict[str, object]) -> dict[str, object]:
    """Stand-in for an expensive LLM call."""
    time.sleep(random.uniform(0.001, 0.005))
    return {"summary": f"processed {item['id']}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("AGENT_RESUME_PG_DSN"))
    parser.add_argument("--job", default="recipe-job")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--lease", type=float, default=30.0, help="lease in seconds")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set AGENT_RESUME_PG_DSN")

    store = PostgresStore(args.dsn, lease_seconds=args.lease)
    items = [{"id": f"doc-{n:05d}", "text": f"document {n}"} for n in range(args.items)]
    with AgentResume(store).resume_or_start(args.job, max_attempts=3) as session:
        for item in session.remaining(items):
            try:
                result = process_item(item)
            except Exception as exc:
                session.mark_failed(item["id"], exc)  # another worker may retry it
                continue
            session.mark_done(item["id"], result=result)
        stats = session.stats
    print(
        f"worker {store.worker_id}: done {stats.done}, failed {stats.failed}, "
        f"late completions ignored {store.late_completions}"
    )


if __name__ == "__main__":
    main()
