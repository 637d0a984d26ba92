"""A child process for the escape tests: one run whose bookkeeping fails for real.

Usage: python _escape_child.py MODE CHECKPOINT FSIZE

Sets ``RLIMIT_FSIZE`` to FSIZE bytes once the job is open (Python ignores
SIGXFSZ, so a write past it fails with EFBIG: a full disk as the store sees
it), then runs 100 items in MODE (``sync``, ``threads`` or ``async``).
Prints ``REPORT <json>`` or ``RAISED <type>`` and ``MESSAGE <text>`` (then
``NOTE <text>`` for each of its notes), and the IDs whose
``on_item_done`` hook ran as ``HOOKED <id>``.
"""

import asyncio
import json
import os
import resource
import sys
import threading

from agent_resume import ResumableRun, RunConfig


def main() -> None:
    mode, path, fsize = sys.argv[1], sys.argv[2], int(sys.argv[3])
    items = [f"item-{k:03d}" for k in range(100)]

    printing = threading.Lock()

    def hooked(outcome):
        with printing:  # whole lines from concurrent threads
            sys.stdout.write(f"HOOKED {outcome.item_id}\n")
            sys.stdout.flush()

    config = RunConfig(
        job_id="escape",
        store=path,
        concurrency=1 if mode == "sync" else 4,
        on_item_done=hooked,
        progress=False,
        handle_signals=False,
    )
    size = os.path.getsize(path) if os.path.exists(path) else 0  # 0 for a sqlite:/// URL
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + fsize, resource.RLIM_INFINITY))

    def process(item, ctx):
        return {"item": item, "answer": "x" * 20}

    async def aprocess(item, ctx):
        await asyncio.sleep(0)
        return {"item": item, "answer": "x" * 20}

    try:
        if mode == "async":
            report = asyncio.run(ResumableRun(config).arun(aprocess, items))
        else:
            report = ResumableRun(config).run(process, items)
    except Exception as exc:
        print("RAISED", type(exc).__name__, flush=True)
        print("MESSAGE", str(exc).replace("\n", " "), flush=True)
        for note in getattr(exc, "__notes__", []):
            print("NOTE", note, flush=True)
    else:
        print("REPORT", json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    main()
