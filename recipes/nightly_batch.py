"""A nightly job in batch mode: half the price, and an online fallback that keeps the deadline.

The night's tickets go to OpenAI's Batch API in one submission. If the batch
has not finished by the deadline minus a margin, it is cancelled, the answers
it already has are recorded, and the rest runs online, so the job ends on
time. Run it again (after a crash, or tomorrow with the same job ID) and it
polls the batch it left in flight instead of submitting a second one.

Needs the `openai` package and an endpoint: `--base-url` (the default is
OpenAI's, with `OPENAI_API_KEY`).
"""

import argparse
import os
from datetime import date

import openai

from agent_resume import ItemContext, ResumableRun, RunConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/nightly-batch.jsonl")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "unset"))
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--tickets", type=int, default=40)
    parser.add_argument("--budget", type=float, default=8 * 3600, help="seconds for the night")
    parser.add_argument("--margin", type=float, default=None, help="cancel this long before")
    parser.add_argument("--poll-interval", type=float, default=30.0)
    args = parser.parse_args(argv)

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
    tickets = [
        {"id": f"ticket-{n}", "text": f"Ticket {n}: the export failed"} for n in range(args.tickets)
    ]

    def request(ticket: dict[str, str]) -> dict[str, object]:
        return {
            "model": args.model,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": f"Summarise: {ticket['text']}"}],
        }

    def summarise_online(ticket: dict[str, str], ctx: ItemContext) -> str:
        # The same request, made online through the run: rate limits, retries, accounting.
        response = ctx.call(client.chat.completions.create, **request(ticket))
        return response.choices[0].message.content or ""

    config = RunConfig(
        job_id=f"nightly-batch-{date.today().isoformat()}",
        store=args.checkpoint,
        time_budget=args.budget,
        max_cost_usd=40.0,
        concurrency=8,
        progress=False,
    )
    report = ResumableRun(config).run_batch(
        request=request,
        items=tickets,
        client=client,
        parse=lambda ticket, body: body["choices"][0]["message"]["content"],
        fallback=summarise_online,
        poll_interval=args.poll_interval,
        batch_margin=args.margin,
    )
    print(report)
    return 0 if report.remaining == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
