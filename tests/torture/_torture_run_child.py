"""A run-fault child: one run whose bookkeeping fails, as a JSON spec says.

Usage: python _torture_run_child.py CHECKPOINT SPEC_JSON

The spec: ``mode`` (``sync``, ``threads``, ``async``), ``concurrency``,
``items``, ``fault`` (``hook``, ``interrupt``, ``exit``, ``efbig``), ``at``
(the outcome or item index where the fault fires), ``fsize`` (bytes more the
checkpoint may grow, for ``efbig``). Prints ``DONE <id>`` from the hook of
each item recorded done, then ``RAISED <type>`` or ``REPORT <stop_reason>``.
"""

import asyncio
import json
import os
import resource
import sys
import threading

from agent_resume import ResumableRun, RunConfig


def main() -> None:
    path, spec = sys.argv[1], json.loads(sys.argv[2])
    items = [f"item-{k:03d}" for k in range(spec["items"])]
    fault, at = spec["fault"], spec["at"]
    lock = threading.Lock()
    outcomes = [0]

    def hook(outcome):
        with lock:
            if outcome.status == "done":
                sys.stdout.write(f"DONE {outcome.item_id}\n")
                sys.stdout.flush()
            outcomes[0] += 1
            fire = fault == "hook" and outcomes[0] == at
        if fire:
            raise RuntimeError(f"hook fault at outcome {at}")

    def work(item):
        if int(item[5:]) == at:
            if fault == "interrupt":
                raise KeyboardInterrupt
            if fault == "exit":
                raise SystemExit(3)
        return {"item": item, "text": "x" * 40}

    def process(item, ctx):
        return work(item)

    async def aprocess(item, ctx):
        await asyncio.sleep(0)
        return work(item)

    config = RunConfig(
        job_id="faults",
        store=path,
        concurrency=spec["concurrency"],
        on_item_done=hook,
        progress=False,
        handle_signals=False,
        grace_period=10,
    )
    if fault == "efbig":
        size = os.path.getsize(path) if os.path.exists(path) else 0
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + spec["fsize"], resource.RLIM_INFINITY))
    try:
        if spec["mode"] == "async":
            report = asyncio.run(ResumableRun(config).arun(aprocess, items))
        else:
            report = ResumableRun(config).run(process, items)
    except BaseException as exc:
        print("RAISED", type(exc).__name__, flush=True)
    else:
        print("REPORT", report.stop_reason, flush=True)


if __name__ == "__main__":
    main()
