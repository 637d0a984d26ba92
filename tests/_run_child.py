"""A child process for the signal, crash and conversation tests: runs one job and reports.

Usage: python _run_child.py MODE CHECKPOINT [options as KEY=VALUE]

Modes: ``sync``, ``threads``, ``async`` (items sleep ``sleep`` seconds, or by turns
the seconds of ``sleeps=a,b,c``, and print ``START <id>``; ``budget`` sets the
time budget; ``usage=1`` records a call's usage first; ``cooperative=1`` makes a
sync item sleep in steps and raise ``DeadlineExceeded`` at its deadline), ``agent`` (a multi-turn item that saves its conversation
each turn and prints ``SAVED <turn>``; ``hang_at=N`` sleeps after turn N),
``crash`` (items append to a side file; ``Crash`` kills at a given call).
"""

import asyncio
import json
import os
import signal
import sys
import time

from agent_resume import Usage
from agent_resume._run._config import RunConfig
from agent_resume._run._runner import ResumableRun
from agent_resume.testing import Crash, SimulatedLLM, reply_text


def main() -> None:
    # As a job started from a terminal: a test suite run in the background
    # (`pytest &` in a shell without job control) hands its children SIGINT
    # ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mode, path = sys.argv[1], sys.argv[2]
    opts = dict(arg.split("=", 1) for arg in sys.argv[3:])
    sleep = float(opts.get("sleep", "0.2"))
    sleeps = [float(x) for x in opts.get("sleeps", str(sleep)).split(",")]
    n = int(opts.get("items", "50"))
    items = [f"i{k}" for k in range(n)]
    if opts.get("reverse") == "1":  # the input in the other order (a newest-first feed)
        items.reverse()
    budget = opts.get("budget")
    cfg = RunConfig(
        job_id="child",
        store=path,
        concurrency=int(opts.get("concurrency", "1")),
        grace_period=float(opts.get("grace", "10")),
        time_budget=None if budget is None else float(budget),
        progress=False,
    )
    run = ResumableRun(cfg)

    def begin(item, ctx):
        # One write(2) per line: text-file writes from several threads can drop one.
        os.write(sys.stdout.fileno(), f"START {item}\n".encode())
        if opts.get("usage") == "1":
            ctx.record_usage(Usage(input_tokens=100, output_tokens=10, cost_usd=0.01))
        return sleeps[int(item[1:]) % len(sleeps)]

    if mode in ("sync", "threads"):

        def process(item, ctx):
            seconds = begin(item, ctx)
            if opts.get("cooperative") == "1":
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    ctx.deadline.check_or_raise()
                    time.sleep(0.02)
            else:
                time.sleep(seconds)
            return item

        report = run.run(process, items)
    elif mode == "async":

        async def aprocess(item, ctx):
            await asyncio.sleep(begin(item, ctx))
            return item

        report = asyncio.run(run.arun(aprocess, items))
    elif mode == "agent":
        llm = SimulatedLLM(seed=7)
        hang_at = int(opts.get("hang_at", "0"))
        cfg = RunConfig(job_id="child", store=path, prices=llm.prices, progress=False)

        def agent(item, ctx):
            messages = ctx.conversation or [{"role": "user", "content": f"solve {item}"}]
            print("RESUMED", json.dumps(messages), flush=True)
            while sum(1 for m in messages if m["role"] == "assistant") < 5:
                response = llm.complete(messages)
                ctx.record_usage(response)
                messages.append({"role": "assistant", "content": reply_text(response)})
                turn = sum(1 for m in messages if m["role"] == "assistant")
                ctx.save_conversation(messages)
                print("SAVED", turn, json.dumps(messages), flush=True)
                if turn == hang_at:
                    time.sleep(60)
                messages.append({"role": "user", "content": f"continue {turn}"})
            return len(messages)

        report = ResumableRun(cfg).run(agent, ["task-1"])
    elif mode == "crash":
        crash = Crash()
        side = opts["side"]

        def work(item, ctx):
            time.sleep(float(opts.get("sleep", "0.002")))
            with open(side, "a") as f:
                f.write(item + "\n")
            crash()
            return item

        cfg = RunConfig(job_id="child", store=path, concurrency=8, progress=False)
        report = ResumableRun(cfg).run(work, items)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("REPORT", json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    main()
