"""A child process for the kill test: a run whose calls go through ctx.acall, killed from outside.

Usage: python _calls_child.py STORE BASE_URL N_ITEMS CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import openai

from agent_resume import ResumableRun, Retry, RunConfig


async def main() -> None:
    store, base_url, n_items, concurrency = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    client = openai.AsyncOpenAI(api_key="test", base_url=base_url, max_retries=0)

    async def process(item: str, ctx: Any) -> str:
        # Two calls an item, so that attempts die between their calls too.
        for turn in range(2):
            await ctx.acall(
                client.chat.completions.create,
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"[item:{item}] turn {turn}"}],
                max_tokens=20,
            )
        return item

    config = RunConfig(
        job_id="killed",
        store=store,
        concurrency=concurrency,
        progress=False,
        retry=Retry(attempts=8, initial=0.02, maximum=0.5),
    )
    try:
        await ResumableRun(config).arun(process, [f"k{n}" for n in range(n_items)])
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
