"""Nightly sync with a time budget and a cursor: summarise new changes until the budget runs out.

The source is a change feed: every change to a document has a sequence number,
and each night brings new ones. The job keeps a cursor (a high-water mark) in
its state, with the checkpoint: every change up to the cursor is synced, so
the next night asks the source only for what came after it. Within a night,
changes already done are skipped, and no change is started that could not
finish before the deadline; a night that runs out of time is finished by the
next one.

The deadline is soft: at the budget the run stops admitting changes and lets
those in flight finish for up to ``--grace`` more seconds; one still running
then is cut and recorded as interrupted (no attempt used, its cost kept), to
be done first thing next night. The job also has a budget for its whole life,
``--job-budget`` dollars over every night, crashed runs included: a night
that starts with it spent syncs nothing and says why.

    python recipes/nightly_sync.py --night 1 --budget 2 --checkpoint /tmp/nightly.jsonl
    python recipes/nightly_sync.py --night 2 --checkpoint /tmp/nightly.jsonl
    python recipes/nightly_sync.py --base-url https://api.openai.com/v1 --api-key sk-...
"""

import argparse

from _llm import add_llm_arguments, make_llm, reply_text

from agent_resume import AgentResume, ResumableRun, RunConfig, open_store

JOB_ID = "nightly-sync"


def change_feed(night: int, per_night: int) -> list[dict]:
    """The source's changes as of this night, oldest first (night N holds N * per_night)."""
    return [
        {
            "id": f"change-{seq:06d}",
            "seq": seq,
            "text": f"Version {seq} of document {seq % 97} in the nightly export.",
        }
        for seq in range(1, night * per_night + 1)
    ]


def advance_cursor(checkpoint: str, feed: list[dict]) -> int:
    """Move the cursor past every change recorded done since it, and return it.

    The cursor only ever covers completions the checkpoint holds, so a crash
    at any moment loses nothing: a change past the cursor is either done (and
    skipped) or offered again.
    """
    with AgentResume(open_store(checkpoint)).resume_or_start(JOB_ID) as session:
        cursor = session.state.get("cursor", 0)
        for change in feed:
            if change["seq"] <= cursor:
                continue
            if not session.is_done(change["id"]):
                break
            cursor = change["seq"]
        if cursor != session.state.get("cursor", 0):
            session.set_state("cursor", cursor)  # recorded before it returns
        return cursor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/nightly-sync.jsonl")
    parser.add_argument("--night", type=int, default=1, help="which night's feed to read")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds for this run")
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds in-flight changes may finish after it"
    )
    parser.add_argument(
        "--job-budget", type=float, default=100.0, help="dollars for the job over every night"
    )
    parser.add_argument("--documents", type=int, default=600, help="new changes per night")
    add_llm_arguments(parser)
    args = parser.parse_args(argv)
    llm = make_llm(args)

    feed = change_feed(args.night, args.documents)
    cursor = advance_cursor(args.checkpoint, feed)
    changes = [c for c in feed if c["seq"] > cursor]  # only what came after the cursor
    print(f"cursor at change {cursor}: {len(changes)} changes to look at")

    def summarise(change, ctx):
        messages = [{"role": "user", "content": f"Summarise in one line: {change['text']}"}]
        response = ctx.call(llm.complete, messages)
        return {"summary": reply_text(response), "since": ctx.job_state.get("cursor", 0)}

    config = RunConfig(
        job_id=JOB_ID,
        store=args.checkpoint,
        time_budget=args.budget,  # soft: in-flight changes may finish within grace_period
        grace_period=args.grace,
        item_timeout=30,
        max_cost_usd=25.0,  # tonight's budget
        job_max_cost_usd=args.job_budget,  # every night's, crashed runs included
        concurrency=4,
        prices=llm.prices,
    )
    report = ResumableRun(config).run(summarise, changes)
    print(report)
    print(f"cursor now at change {advance_cursor(args.checkpoint, feed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
