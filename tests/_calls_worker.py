"""A worker process for the shared rate-limit tests: one arun over a shared store, calls through ctx.acall.

Usage: python _calls_worker.py STORE_URL BASE_URL N_ITEMS REQUESTS_PER_MINUTE

Prints the run's report as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import openai

from agent_resume import RateLimit, ResumableRun, Retry, RunConfig


async def main() -> None:
    url, base_url, n_items, rpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    client = openai.AsyncOpenAI(api_key="test", base_url=base_url, max_retries=0)

    async def process(item: str, ctx: Any) -> str:
        response = await ctx.acall(
            client.chat.completions.create,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"[item:{item}] go"}],
            max_tokens=20,
        )
        return str(response.choices[0].message.content)

    config = RunConfig(
        job_id="shared-limit",
        store=url,
        concurrency=8,
        progress=False,
        handle_signals=False,
        rate_limit=RateLimit(requests_per_minute=rpm, shared=True),
        retry=Retry(attempts=8, initial=0.02, maximum=0.5),
    )
    try:
        report = await ResumableRun(config).arun(process, [f"s{n}" for n in range(n_items)])
    finally:
        await client.close()
    print(json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
