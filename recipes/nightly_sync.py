"""Nightly sync with a time budget: summarise documents until the budget runs out.

Each night the job picks up where the last one stopped; items already done are
skipped, and no item is started that could not finish before the deadline.

    python recipes/nightly_sync.py --budget 2 --checkpoint /tmp/nightly.jsonl
    python recipes/nightly_sync.py --base-url https://api.openai.com/v1 --api-key sk-...
"""

import argparse
from datetime import date

from _llm import add_llm_arguments, make_llm, reply_text

from agent_resume import ResumableRun, RunConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/nightly-sync.jsonl")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds for this run")
    parser.add_argument("--documents", type=int, default=600)
    add_llm_arguments(parser)
    args = parser.parse_args(argv)
    llm = make_llm(args)

    documents = [
        {"id": f"doc-{n:04d}", "text": f"Document {n} of the nightly export."}
        for n in range(args.documents)
    ]

    def summarise(doc, ctx):
        messages = [{"role": "user", "content": f"Summarise in one line: {doc['text']}"}]
        response = llm.complete(messages)
        ctx.record_usage(response)
        return {"summary": reply_text(response)}

    config = RunConfig(
        job_id=f"nightly-sync-{date.today():%Y-%m-%d}",
        store=args.checkpoint,
        time_budget=args.budget,
        item_timeout=30,
        max_cost_usd=25.0,
        concurrency=4,
        prices=llm.prices,
    )
    report = ResumableRun(config).run(summarise, documents)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
