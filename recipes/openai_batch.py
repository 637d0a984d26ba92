"""An LLM batch runner with the OpenAI SDK, on any OpenAI-compatible endpoint.

Reads prompts from a JSONL file (``{"id": ..., "prompt": ...}`` per line),
asks the model for each with up to ``--concurrency`` requests in flight, within
the provider's rate limits (``--rpm``, ``--tpm``; read from its headers when not
given), retrying its transient errors, and checkpoints every answer with its
token usage and cost. Stop it at any time
(Ctrl-C finishes the requests in flight); run it again to go on. The run stops
admitting prompts once ``--max-cost-usd`` is spent.

    export OPENAI_API_KEY=sk-...
    python recipes/openai_batch.py --input prompts.jsonl --model gpt-4o-mini
    python recipes/openai_batch.py --base-url http://localhost:8000/v1 --model my-local-model
    agent-resume export checkpoints/openai-batch.jsonl > answers.jsonl
"""

import argparse
import asyncio
import json
import os
from typing import Any

from openai import AsyncOpenAI

from agent_resume import ItemContext, RateLimit, ResumableRun, Retry, RunConfig, RunReport


def read_prompts(path: str | None, count: int) -> list[dict[str, Any]]:
    if path is None:  # a sample input, so the recipe runs as it is
        return [
            {"id": f"q-{n:03d}", "prompt": f"Name a use of the number {n}."} for n in range(count)
        ]
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input", help="JSONL of {id, prompt}; a sample of --count prompts if omitted"
    )
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--checkpoint", default="checkpoints/openai-batch.jsonl")
    parser.add_argument("--job-id", default="openai-batch")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-cost-usd", type=float, default=5.0)
    parser.add_argument("--item-timeout", type=float, default=120.0)
    parser.add_argument("--call-timeout", type=float, default=60.0)
    parser.add_argument("--rpm", type=float, help="the provider's requests per minute")
    parser.add_argument("--tpm", type=float, help="the provider's tokens per minute")
    args = parser.parse_args(argv)

    config = RunConfig(
        job_id=args.job_id,
        store=args.checkpoint,  # a ResultJsonlStore: answers are kept with the checkpoint
        concurrency=args.concurrency,
        item_timeout=args.item_timeout,
        max_cost_usd=args.max_cost_usd,
        max_attempts=3,
        progress=False,
        # Limits left unset are read from the provider's x-ratelimit-* headers.
        rate_limit=RateLimit(requests_per_minute=args.rpm, tokens_per_minute=args.tpm),
        retry=Retry(attempts=6, initial=0.5, maximum=30.0),
        call_timeout=args.call_timeout,
    )
    prompts = read_prompts(args.input, args.count)

    async def run() -> RunReport:
        # max_retries=0: the run retries, so that every 429 reaches its limiter.
        async with AsyncOpenAI(
            base_url=args.base_url, api_key=args.api_key, max_retries=0
        ) as client:

            async def answer(item: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
                # A permit from the limiter, a timeout, retries, and the usage recorded.
                response = await ctx.acall(
                    client.chat.completions.create,
                    model=args.model,
                    messages=[{"role": "user", "content": item["prompt"]}],
                )
                return {
                    "answer": response.choices[0].message.content,
                    "model": response.model,
                    "cost_usd": ctx.usage.cost_usd,
                }

            return await ResumableRun(config).arun(answer, prompts)

    report = asyncio.run(run())
    print(report.format())
    return 0 if report.completed and not report.remaining else 1


if __name__ == "__main__":
    raise SystemExit(main())
