"""The article's example: a batch loop that survives a crash, and its deadline form.

This is the seed API exactly as the original agent-resume article wrote it:
a ``JsonlStore``, ``AgentResume.resume_or_start`` and a loop over
``session.remaining(all_items)``. Run it twice: the second run skips every
item the first one finished. ``--crash-at N`` kills the process at item N, as
a crashed batch job would die; run it again to see it resume.

    python recipes/article_example.py --crash-at 30
    python recipes/article_example.py            # resumes at item 30
"""

import argparse
import os
import time
from dataclasses import dataclass

from agent_resume import AgentResume, Deadline, DeadlineExceeded, JsonlStore
from agent_resume.testing import Crash


@dataclass
class Item:
    id: str
    text: str


def process_item(item: Item) -> str:
    """Stand-in for the expensive LLM call."""
    time.sleep(0.002)
    return item.text.upper()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="./checkpoints/batch-job-42.jsonl")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--crash-at", type=int, default=None, help="SIGKILL at this item")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds (deadline form)")
    args = parser.parse_args(argv)
    all_items = [
        Item(id=f"item-{n:03d}", text=f"item number {n}") for n in range(1, args.items + 1)
    ]
    crash = Crash(at=args.crash_at)

    # The seed example, as written in the article.
    store = JsonlStore(path=args.checkpoint)
    agent = AgentResume(store=store)
    processed = 0
    with agent.resume_or_start(job_id="batch-job-42") as session:
        for item in session.remaining(all_items):
            crash()
            result = process_item(item)
            session.mark_done(item.id, result=result)
            processed += 1
    print(f"processed {processed} items; {session.stats.already_done} were done before")

    # The deadline form: stop cleanly when the time is up; the next run goes on.
    deadline = Deadline.from_now(seconds=args.deadline)
    store = JsonlStore(path=os.path.splitext(args.checkpoint)[0] + "-deadline.jsonl")
    try:
        with AgentResume(store=store).resume_or_start(job_id="batch-job-42-deadline") as session:
            for item in session.remaining(all_items):
                deadline.check_or_raise()
                session.mark_done(item.id, result=process_item(item))
    except DeadlineExceeded as exc:
        print(f"deadline reached after {exc.elapsed_seconds:.1f}s; run again to go on")
        return 1
    print(f"deadline form: done in {deadline.elapsed_seconds():.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
