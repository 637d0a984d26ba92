"""Calls under a binding rate limit: ctx.acall against a hand-written semaphore + SDK retries.

Both run, one after the other in this process, the same job on the same
provider simulator (``tests/provider_sim.py``: a real HTTP server on
127.0.0.1 and the real ``openai`` SDK), which enforces a requests-per-minute
limit with real 429s and ``retry-after``/``x-ratelimit-*`` headers and fails
5% of requests with a transient 5xx. The "minute" is scaled down ten times
(``--window`` seconds, 6 by default: the default limit of 120 requests per
window is 20 requests a second, 1,200 a real minute, which the run's
``RateLimit`` is given). The limit binds: 32 calls in flight of 20-150 ms
could go ten times faster.

Printed for each, after the first window (the first "minute"):

- the achieved request rate (requests the server admitted per second: its
  answers and its 5xx, which count against the limit too, not its 429s) as
  a fraction of the limit (target: at least 0.95 for agent-resume);
- 429s as a fraction of requests (target: at most 1%);
- mean attempts per success, every request counted (target: at most 1.07
  with 5% transient errors; 1/0.95 = 1.053 is the floor).

(b) bespokelabs-curator is not installed here; it is skipped.

Run: python bench/bench_calls.py [--items N] [--rpm N] [--window S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from agent_resume import RateLimit, ResumableRun, Retry, RunConfig
from provider_sim import ProviderSim, SimConfig


def _messages(item: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[item:{item}] summarise this ticket in one line"}]


async def with_agent_resume(sim: ProviderSim, items: list[str], rpm: int, window: float) -> None:
    client = openai.AsyncOpenAI(api_key="bench", base_url=sim.openai_url, max_retries=0)

    async def process(item: str, ctx: Any) -> str:
        response = await ctx.acall(
            client.chat.completions.create,
            model="gpt-4o-mini",
            messages=_messages(item),
            max_tokens=20,
        )
        return str(response.choices[0].message.content)

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            job_id="bench-calls",
            store=str(Path(tmp) / "ck.jsonl"),
            concurrency=32,
            progress=False,
            handle_signals=False,
            rate_limit=RateLimit(requests_per_minute=rpm * 60 / window),
            retry=Retry(attempts=8, initial=0.05, maximum=2.0),
        )
        report = await ResumableRun(config).arun(process, items)
    await client.close()
    assert report.done == len(items), report


async def with_semaphore(sim: ProviderSim, items: list[str]) -> None:
    """What people write by hand: a semaphore and the SDK's own retries."""
    client = openai.AsyncOpenAI(api_key="bench", base_url=sim.openai_url, max_retries=8)
    gate = asyncio.Semaphore(32)

    async def one(item: str) -> bool:
        async with gate:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=_messages(item), max_tokens=20
                )
            except openai.APIError:
                return False  # its retries ran out: the item is lost to this loop
            return True

    done = await asyncio.gather(*(one(item) for item in items))
    await client.close()
    lost = done.count(False)
    if lost:
        print(f"  (semaphore loop: {lost} items failed after the SDK's 8 retries)")


def figures(sim: ProviderSim, rpm: int, window: float, started: float) -> tuple[float, float, float]:
    log = sim.counts.log
    ok_all = sum(1 for _, status in log if status == 200)
    attempts = len(log) / max(ok_all, 1)
    after = [(at, status) for at, status in log if at >= started + window]
    # The server charges its limit for every request it admits (a 5xx too), not 429s.
    admitted = [at for at, status in after if status != 429]
    if len(admitted) < 2:
        return 0.0, 0.0, attempts
    rate = (len(admitted) - 1) / (admitted[-1] - admitted[0])
    limited = sum(1 for _, status in after if status == 429) / len(after)
    return rate / (rpm / window), limited, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--rpm", type=int, default=120, help="requests per window")
    parser.add_argument("--window", type=float, default=6.0, help="the simulated minute, in s")
    args = parser.parse_args()
    items = [f"b{n}" for n in range(args.items)]
    print(
        f"{args.items} items, limit {args.rpm} requests per {args.window:g} s window "
        f"({args.rpm / args.window:.0f}/s), 5% transient errors, 20-150 ms latency"
    )
    print(f"{'':<28}{'rate/limit':>12}{'429s':>10}{'attempts/ok':>14}{'wall':>9}")
    for name, runner in (("agent-resume ctx.acall", "ar"), ("semaphore + max_retries", "sem")):
        sim_config = SimConfig(
            rpm=args.rpm, window=args.window, transient=0.05, latency=(0.02, 0.15), seed=7
        )
        with ProviderSim(sim_config) as sim:
            started = time.monotonic()
            if runner == "ar":
                asyncio.run(with_agent_resume(sim, items, args.rpm, args.window))
            else:
                asyncio.run(with_semaphore(sim, items))
            wall = time.monotonic() - started
            fraction, limited, attempts = figures(sim, args.rpm, args.window, started)
        print(f"{name:<28}{fraction:>12.3f}{limited:>10.2%}{attempts:>14.3f}{wall:>8.1f}s")
    print("bespokelabs-curator: not installed here, skipped")


if __name__ == "__main__":
    main()
