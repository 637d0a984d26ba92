"""A child process for the job-budget tests: a job whose items call a loopback provider.

Usage: python _budget_child.py CHECKPOINT [options as KEY=VALUE]

Each item makes ``calls`` calls (default 3) through ``ctx.call`` with the
real ``openai`` SDK against a provider simulator started in this process,
with ``latency`` seconds per call, and prints ``CALLED <item> <n>`` after
each. ``job_cost``/``job_tokens`` set the job budgets, ``model`` the model
(``sim-model`` has a price of $1,000 per million tokens in and out, so a
call of ~12 tokens in and 20 out costs about $0.03); ``unknown`` sets
``on_unknown_price``; ``max_turns`` sets ``stop=MaxTurns(n)`` and makes the
item loop until ``ctx.should_stop()`` (saving its conversation each turn).
The run's report is printed as ``REPORT <json>``.
"""

import json
import sys

import openai

from agent_resume import MaxTurns, PriceTable, ResumableRun, RunConfig
from provider_sim import ProviderSim, SimConfig

PRICES = PriceTable({"sim-model": {"input": 1000.0, "output": 1000.0}})


def main() -> None:
    path = sys.argv[1]
    opts = dict(arg.split("=", 1) for arg in sys.argv[2:])
    latency = float(opts.get("latency", "0.05"))
    calls = int(opts.get("calls", "3"))
    model = opts.get("model", "sim-model")
    items = [f"t{k:03d}" for k in range(int(opts.get("items", "40")))]
    max_turns = opts.get("max_turns")
    with ProviderSim(SimConfig(latency=(latency, latency))) as sim:
        client = openai.OpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)
        config = RunConfig(
            job_id="budget",
            store=path,
            concurrency=int(opts.get("concurrency", "2")),
            prices=PRICES,
            progress=False,
            job_max_cost_usd=float(opts["job_cost"]) if "job_cost" in opts else None,
            job_max_tokens=int(opts["job_tokens"]) if "job_tokens" in opts else None,
            max_cost_usd=float(opts["run_cost"]) if "run_cost" in opts else None,
            on_unknown_price=opts.get("unknown"),  # type: ignore[arg-type]
            stop=None if max_turns is None else MaxTurns(int(max_turns)),
        )

        def process(item: str, ctx: object) -> str:
            messages = ctx.conversation or [  # type: ignore[attr-defined]
                {"role": "user", "content": f"[item:{item}] summarise"}
            ]
            n = 0
            while True:
                if max_turns is None and n >= calls:
                    break
                if max_turns is not None and ctx.should_stop() is not None:  # type: ignore[attr-defined]
                    break
                response = ctx.call(  # type: ignore[attr-defined]
                    client.chat.completions.create, model=model, messages=messages
                )
                n += 1
                messages.append(
                    {"role": "assistant", "content": response.choices[0].message.content}
                )
                messages.append({"role": "user", "content": "go on"})
                if max_turns is not None:
                    ctx.save_conversation(messages)  # type: ignore[attr-defined]
                sys.stdout.write(f"CALLED {item} {n}\n")
                sys.stdout.flush()
                if opts.get("hang_after") == str(n):
                    import time

                    time.sleep(60)  # the parent kills us here
            return item

        report = ResumableRun(config).run(process, items)
        client.close()
    sys.stdout.write("REPORT " + json.dumps(report.to_dict()) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
