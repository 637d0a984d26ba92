"""An LLM batch runner with the OpenAI SDK, on any OpenAI-compatible endpoint.

Reads prompts from a JSONL file (``{"id": ..., "prompt": ...}`` per line),
asks the model for each with up to ``--concurrency`` requests in flight, and
checkpoints every answer with its token usage and cost. Stop it at any time
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

from agent_resume import ItemContext, ResumableRun, RunConfig, RunReport


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
    args = parser.parse_args(argv)

    config = RunConfig(
        job_id=args.job_id,
        store=args.checkpoint,  # a ResultJsonlStore: answers are kept with the checkpoint
        concurrency=args.concurrency,
        item_timeout=args.item_timeout,
        max_cost_usd=args.max_cost_usd,
        max_attempts=3,
        progress=False,
    )
    prompts = read_prompts(args.input, args.count)

    async def run() -> RunReport:
        async with AsyncOpenAI(
            base_url=args.base_url, api_key=args.api_key, max_retries=2
        ) as client:

            async def answer(item: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
                response = await client.chat.completions.create(
                    model=args.model,
                    messages=[{"role": "user", "content": item["prompt"]}],
                    timeout=ctx.deadline.remaining_seconds(),
                )
                usage = ctx.record_usage(response)  # tokens and cost, per item and for the run
                return {
                    "answer": response.choices[0].message.content,
                    "model": response.model,
                    "cost_usd": usage.cost_usd,
                }

            return await ResumableRun(config).arun(answer, prompts)

    report = asyncio.run(run())
    print(report.format())
    return 0 if report.completed and not report.remaining else 1


if __name__ == "__main__":
    raise SystemExit(main())
