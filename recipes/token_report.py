"""Per-item token report: classify tickets, then write each item's tokens and cost to CSV.

python recipes/token_report.py --checkpoint /tmp/tickets.jsonl --csv /tmp/tokens.csv
"""

import argparse
import csv
import sys

from _llm import add_llm_arguments, make_llm, reply_text

from agent_resume import ResumableRun, RunConfig
from agent_resume.stores import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/tickets.jsonl")
    parser.add_argument("--csv", default="-", help="where to write the report (- for stdout)")
    parser.add_argument("--tickets", type=int, default=25)
    add_llm_arguments(parser)
    args = parser.parse_args(argv)
    llm = make_llm(args)

    tickets = [
        {"id": f"T-{n}", "body": f"Ticket {n}: the app crashes on login."}
        for n in range(args.tickets)
    ]

    def classify(ticket, ctx):
        messages = [
            {"role": "system", "content": "Label the ticket: bug, billing or question."},
            {"role": "user", "content": ticket["body"]},
        ]
        # One call through the run: its usage is recorded (and checkpointed) as it returns.
        response = ctx.call(llm.complete, messages)
        return reply_text(response)

    config = RunConfig(
        job_id="ticket-labels",
        store=args.checkpoint,
        concurrency=4,
        prices=llm.prices,
        progress=False,
    )
    report = ResumableRun(config).run(classify, tickets)
    print(report, file=sys.stderr)

    # Every completion record carries the item's usage: read them back for the report.
    rows = []
    for record in open_store(args.checkpoint).iter_records():
        if "id" not in record or "status" in record:
            continue
        usage = record.get("usage", {})
        rows.append(
            [
                record["id"],
                usage.get("calls", 0),
                usage.get("in", 0),
                usage.get("out", 0),
                usage.get("cost", ""),
            ]
        )
    header = ["item_id", "calls", "input_tokens", "output_tokens", "cost_usd"]
    if args.csv == "-":
        csv.writer(sys.stdout).writerows([header, *rows])
    else:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
