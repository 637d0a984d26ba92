"""``agent-resume demo``: a job on a simulated LLM that is killed part-way and resumed.

The first run is a child process (``python -m agent_resume demo --_phase crash``)
that SIGKILLs itself when it starts item number ``40%`` of the input: nothing
is flushed or cleaned up, as when a machine dies. The parent then resumes the
job in-process and prints the report. Items run one at a time in the first
run, so the crash point and every count are the same on every machine; only
times differ.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any

from agent_resume._cli._exits import CliError
from agent_resume._cli._targets import inspect_store, open_cli_store, records_of
from agent_resume._render import format_cost

__all__ = ["register"]

_DB = "demo.db"
_JOB = "demo-summaries"
_LEASE = 1.0


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="watch a job crash part-way and resume (simulated LLM, a few seconds)",
        description="Run a self-contained job on a simulated LLM: 100 support tickets to "
        "summarise, checkpointed in SQLite. The first run is killed with SIGKILL part-way; "
        "the second resumes where it stopped and prints the report with tokens and cost.",
    )
    p.add_argument("--dir", help="where to put demo.db (default: a new temporary directory)")
    p.add_argument("--items", type=int, default=100, metavar="N", help="tickets (default 100)")
    p.add_argument("--_phase", choices=("crash",), help=argparse.SUPPRESS)
    p.set_defaults(func=demo)


def _tickets(n: int) -> list[dict[str, str]]:
    topics = ("login fails", "invoice is wrong", "app crashes on start", "export is slow")
    return [
        {"id": f"ticket-{i:04d}", "text": f"Customer {i} reports: {topics[i % len(topics)]}."}
        for i in range(1, n + 1)
    ]


def _config(directory: str, *, first: bool) -> Any:
    from agent_resume._run._config import RunConfig
    from agent_resume._stop import MaxTurns, StopPhrase
    from agent_resume.stores import SqliteStore

    # A short lease, so that run 2 soon takes back the tickets the killed run held.
    store = SqliteStore(os.path.join(directory, _DB), lease_seconds=_LEASE, batch_size=4)
    return RunConfig(
        job_id=_JOB,
        store=store,
        stop=MaxTurns(4) | StopPhrase("DONE"),
        item_timeout=30,
        concurrency=1 if first else 4,
        prices=_llm().prices,
        progress=False,
        handle_signals=not first,  # the first run must die on the signal
    )


def _llm() -> Any:
    from agent_resume.testing import SimulatedLLM

    return SimulatedLLM(
        latency=(0.002, 0.01),
        seed=7,
        model="sim-gpt",
        input_price=2.5,
        output_price=10.0,
        finish_after=2,
    )


def _process_with(llm: Any, crash: Any) -> Any:
    from agent_resume.testing import reply_text

    def process(ticket: dict[str, str], ctx: Any) -> dict[str, Any]:
        crash()  # in the first run, kills this process at the chosen item
        messages: list[dict[str, str]] = [
            {"role": "user", "content": f"Summarise this support ticket. {ticket['text']}"}
        ]
        while True:
            response = llm.complete(messages)
            ctx.record_usage(response)
            text = reply_text(response)
            messages.append({"role": "assistant", "content": text})
            if ctx.should_stop() is not None:
                return {"summary": text, "turns": ctx.turns}
            messages.append({"role": "user", "content": "Go on, then say DONE."})

    return process


def _crash_at(n: int) -> int:
    return max(1, (n * 2) // 5)


def demo(args: argparse.Namespace) -> int:
    """``agent-resume demo``."""
    from agent_resume._run._runner import ResumableRun
    from agent_resume.testing import Crash

    if args.items < 2:
        raise CliError(f"--items must be at least 2 (got {args.items})")
    tickets = _tickets(args.items)
    if args._phase == "crash":
        process = _process_with(_llm(), Crash(at=_crash_at(args.items)))
        ResumableRun(_config(args.dir, first=True)).run(process, tickets)
        return 0

    directory = args.dir or tempfile.mkdtemp(prefix="agent-resume-demo-")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--dir {directory}: cannot make the directory: {exc.strerror or exc}"
        ) from None
    db = os.path.join(directory, _DB)
    if os.path.exists(db):
        raise CliError(f"{db} exists from an earlier demo; remove it or give another --dir")
    out = sys.stdout
    url = f"sqlite:///{db}"
    out.write(
        f"agent-resume demo: summarise {args.items} support tickets with a simulated LLM\n"
        f"checkpoint: {url}\n\n"
        f"run 1: a worker process starts the job; it will be killed (SIGKILL) when it "
        f"reaches ticket {_crash_at(args.items)}\n"
    )
    out.flush()
    child = _run_crash_phase(directory, args.items)
    done = _done_count(url)
    kept = f"{done} ticket was checkpointed" if done == 1 else f"{done} tickets were checkpointed"
    if child < 0:
        out.write(f"run 1: killed by signal {-child}; {kept}\n")
    else:
        out.write(f"run 1: exited with code {child}; {kept}\n")
    out.write(
        "\nrun 2: resumes where run 1 stopped; the tickets run 1 had claimed are taken "
        f"back when its lease expires ({_LEASE:g} s)\n\n"
    )
    out.flush()
    report = ResumableRun(_config(directory, first=False)).run(
        _process_with(_llm(), lambda: None), tickets
    )
    out.write(report.format() + "\n\n")
    _whole_job(url, out)
    out.write(
        "\nlook around:\n"
        f"  agent-resume status {url}\n"
        f"  agent-resume report {url}\n"
        f"  agent-resume export {url}\n"
    )
    return 0 if report.completed and not report.remaining else 1


def _run_crash_phase(directory: str, n: int) -> int:
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "agent_resume", "demo", "--_phase", "crash"]
    command += ["--dir", directory, "--items", str(n)]
    return subprocess.run(command, env=env, check=False).returncode


def _done_count(url: str) -> int:
    return len(inspect_store(url).state.done)


def _whole_job(url: str, out: Any) -> None:
    from agent_resume._accounting._ledger import Ledger

    ledger = Ledger.from_records(records_of(open_cli_store(url)))
    total = ledger.total
    done = sum(1 for item in ledger.items() if item.status == "done")
    cost = format_cost(total.cost_usd)
    out.write(
        f"whole job (both runs): {done} of {len(ledger)} tickets done, {total.calls:,} calls, "
        f"{total.input_tokens:,} tokens in / {total.output_tokens:,} out, cost {cost}\n"
    )
