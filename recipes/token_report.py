"""Per-item token report: classify tickets, then write each item's tokens and cost to CSV.

Every attempt counts: completions, failed attempts (they cost money too) and
interrupted ones (cut by a deadline or a budget, or killed), read back from
the checkpoint with ``Ledger``.

python recipes/token_report.py --checkpoint /tmp/tickets.jsonl --csv /tmp/tokens.csv
"""

import argparse
import sys

from _llm import add_llm_arguments, make_llm, reply_text

from agent_resume import Ledger, ResumableRun, RunConfig, open_store


class FlakyTicket(Exception):
    """A ticket the classifier chokes on (``--fail-every``): a failed attempt, paid for."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/tickets.jsonl")
    parser.add_argument("--csv", default="-", help="where to write the report (- for stdout)")
    parser.add_argument("--tickets", type=int, default=25)
    parser.add_argument(
        "--fail-every", type=int, default=0, help="every Nth ticket fails after its call (0: none)"
    )
    parser.add_argument("--no-total", action="store_true", help="leave out the total row")
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
        n = int(ticket["id"].split("-")[1])
        if args.fail_every and n % args.fail_every == args.fail_every - 1:
            raise FlakyTicket(f"cannot parse the label of {ticket['id']}")
        return reply_text(response)

    config = RunConfig(
        job_id="ticket-labels",
        store=args.checkpoint,
        concurrency=4,
        prices=llm.prices,
        progress=False,
        retry=None,  # a failed ticket waits for the next run
    )
    report = ResumableRun(config).run(classify, tickets)
    print(report, file=sys.stderr)

    # The ledger sums every record of every item: completions, failed attempts,
    # and the calls of attempts that never recorded an outcome (interrupted, killed).
    store = open_store(args.checkpoint)
    try:
        ledger = Ledger.from_records(store.iter_records(), prices=llm.prices)
    finally:
        store.close()
    if args.csv == "-":
        ledger.write_csv(sys.stdout, total=not args.no_total)
    else:
        with open(args.csv, "w", newline="") as f:
            ledger.write_csv(f, total=not args.no_total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
