"""Exceptions that escape an item's bookkeeping reach the caller: no hang, no lost error.

A hook that raises, a store that cannot write (a real EFBIG in a child), and
``KeyboardInterrupt``/``SystemExit`` from ``process`` end the run with that
exception, in the serial, threaded and async runs alike, after the items in
flight were recorded; nothing is left as "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    ArgumentTypeError,
    JsonlStore,
    ResultJsonlStore,
    ResumableRun,
    RunConfig,
    SqliteStore,
)

CHILD = str(Path(__file__).with_name("_escape_child.py"))
ITEMS = [f"i{k}" for k in range(10)]


def call_with_timeout(fn, timeout=30.0):
    """Call ``fn`` in a thread: return its result or raise its exception; fail on a hang."""
    box: dict[str, object] = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the run hung for more than {timeout}s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]


def done_ids(store):
    return sorted(r["id"] for r in store.iter_records() if "id" in r and r.get("status") is None)


def end_reports(store):
    return [r["report"] for r in store.iter_records() if r.get("run") == "end"]


def config(store, **kwargs):
    return RunConfig(job_id="j", store=store, progress=False, handle_signals=False, **kwargs)


# -- threads -------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_a_raising_on_item_done_hook_reaches_the_caller_and_never_hangs(tmp_path, concurrency):
    path = str(tmp_path / "job.jsonl")
    hooked = []

    def hook(outcome):
        hooked.append(outcome.item_id)
        1 / 0  # noqa: B018

    run = ResumableRun(config(path, concurrency=concurrency, on_item_done=hook))
    with pytest.raises(ZeroDivisionError) as raised:
        call_with_timeout(lambda: run.run(lambda item, ctx: item, ITEMS))
    if len(hooked) > 1 and sys.version_info >= (3, 11):
        # The first is raised; the others that escaped meanwhile are named, not lost.
        assert raised.value.__notes__ == [
            f"agent-resume: {len(hooked) - 1} more exception(s) escaped other items "
            "(ZeroDivisionError)"
        ]
    # The hook runs after the item is recorded: every item it saw is done on disk.
    assert hooked and set(hooked) <= set(done_ids(JsonlStore(path)))
    assert len(hooked) <= concurrency


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("concurrency", [1, 3])
def test_keyboard_interrupt_and_system_exit_from_process_reach_the_caller(
    tmp_path, error, concurrency
):
    path = str(tmp_path / "job.jsonl")

    def process(item, ctx):
        if item == "i2":
            raise error()
        return item

    run = ResumableRun(config(path, concurrency=concurrency))
    with pytest.raises(error):
        call_with_timeout(lambda: run.run(process, ITEMS))
    store = JsonlStore(path)
    # Not a failed attempt: the item was interrupted, and runs again next time.
    assert "i2" not in done_ids(store)
    assert not [r for r in store.iter_records() if r.get("status") == "failed"]
    # The run wrote its end record on the way out: it was not killed.
    (end,) = end_reports(store)
    expected = (
        ("signal", "interrupted (KeyboardInterrupt)")
        if error is KeyboardInterrupt
        else ("error", "SystemExit")
    )
    assert (end["stop_reason"], end["stop_message"], end["remaining"]) == (*expected, None)
    assert end["done"] == len(done_ids(store))
    report = ResumableRun(config(path, concurrency=concurrency)).run(lambda i, c: i, ITEMS)
    assert report.completed and report.remaining == 0
    assert done_ids(JsonlStore(path)) == sorted(ITEMS)


# -- async ---------------------------------------------------------------------


def run_async(coro_factory):
    """Run a coroutine in a fresh loop, collecting what the loop's exception handler sees."""
    seen: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))
        return await coro_factory()

    try:
        return asyncio.run(main()), seen
    finally:
        gc.collect()
        assert not seen, seen


@pytest.mark.parametrize("concurrency", [1, 4])
def test_arun_raises_what_a_hook_raised_instead_of_reporting_completed(tmp_path, concurrency):
    path = str(tmp_path / "job.jsonl")

    def hook(outcome):
        raise RuntimeError(f"hook failed on {outcome.item_id}")

    async def aprocess(item, ctx):
        await asyncio.sleep(0)
        return item

    run = ResumableRun(config(path, concurrency=concurrency, on_item_done=hook))
    with pytest.raises(RuntimeError, match="hook failed"):
        call_with_timeout(lambda: run_async(lambda: run.arun(aprocess, ITEMS)))
    assert done_ids(JsonlStore(path))  # what was recorded stays recorded


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_arun_raises_keyboard_interrupt_and_system_exit_from_aprocess(tmp_path, error):
    path = str(tmp_path / "job.jsonl")

    async def aprocess(item, ctx):
        await asyncio.sleep(0.01)
        if item == "i3":
            raise error()
        return item

    run = ResumableRun(config(path, concurrency=3))
    with pytest.raises(error):
        call_with_timeout(lambda: run_async(lambda: run.arun(aprocess, ITEMS)))
    assert "i3" not in done_ids(JsonlStore(path))
    (end,) = end_reports(JsonlStore(path))
    assert end["stop_reason"] == ("signal" if error is KeyboardInterrupt else "error")


@pytest.mark.parametrize("mode", ["serial", "threads", "async"])
def test_an_input_that_raises_ends_the_run_with_an_error_record(tmp_path, mode):
    # A generator over a file that meets a row it cannot parse, at the 6th item.
    path = str(tmp_path / "job.jsonl")

    def items():
        for n in range(10):
            if n == 5:
                raise ValueError("row 5: not a ticket")
            yield f"i{n}"

    run = ResumableRun(config(path, concurrency=1 if mode == "serial" else 3))
    with pytest.raises(ValueError, match="row 5"):
        if mode == "async":

            async def aprocess(item, ctx):
                return item

            call_with_timeout(lambda: run_async(lambda: run.arun(aprocess, items())))
        else:
            call_with_timeout(lambda: run.run(lambda item, ctx: item, items()))
    store = JsonlStore(path)
    assert done_ids(store) == [f"i{n}" for n in range(5)]
    (end,) = end_reports(store)
    assert (end["stop_reason"], end["stop_message"]) == ("error", "ValueError: row 5: not a ticket")
    assert (end["done"], end["remaining"]) == (5, None)
    # status shows the run as stopped by the error, with the message, and not as killed.
    out = subprocess.run(
        [sys.executable, "-m", "agent_resume", "status", path],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "killed (no end record)" not in out and "at least" not in out, out
    assert "the last run stopped (error): ValueError: row 5: not a ticket" in out, out


# -- a real full disk (EFBIG) in a child ---------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
@pytest.mark.parametrize("mode", ["sync", "threads", "async"])
def test_a_store_that_cannot_write_ends_the_run_with_its_error(tmp_path, mode):
    path = tmp_path / "job.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, CHILD, mode, str(path), "3000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "never retrieved" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert "RAISED StoreWriteError" in lines, proc.stdout + proc.stderr
    assert not [line for line in lines if line.startswith("REPORT")]
    if sys.version_info >= (3, 11):
        # The end record could not be written either: the error says so, and stays the error.
        notes = [line for line in lines if "end record" in line]
        assert notes == [notes[0]] and notes[0].startswith("NOTE "), lines
        assert "end record was not written" in notes[0]
    # Every item whose hook ran (reported done) is recorded; reopening loses nothing.
    hooked = {line.split()[1] for line in lines if line.startswith("HOOKED")}
    recorded = set(done_ids(ResultJsonlStore(str(path))))
    assert hooked <= recorded
    assert 0 < len(recorded) < 100
    records = list(ResultJsonlStore(str(path)).iter_records())
    assert json.loads(json.dumps(records)) == records


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
@pytest.mark.parametrize("mode", ["sync", "threads", "async"])
def test_a_full_disk_under_sqlite_raises_the_write_that_failed(tmp_path, mode):
    # The session's close (releasing the leases) failed on the same full disk,
    # and its error replaced the one that ended the run.
    path = tmp_path / "job.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, CHILD, mode, f"sqlite:///{path}", "100000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "RAISED StoreError" in lines, proc.stdout + proc.stderr
    message = next(line for line in lines if line.startswith("MESSAGE "))
    assert "failed: disk I/O error" in message and "closing the store" not in message
    if sys.version_info >= (3, 11):
        assert "NOTE closing the store failed too: " in "\n".join(lines)
    # What was recorded before the disk filled is all there once it has room.
    hooked = {line.split()[1] for line in lines if line.startswith("HOOKED")}
    with AgentResume(SqliteStore(path)).resume_or_start("escape") as session:
        assert hooked <= {i for i in (f"item-{k:03d}" for k in range(100)) if session.is_done(i)}


# -- async functions given to run, and the reverse ------------------------------


def test_run_refuses_an_async_function_up_front(tmp_path):
    path = str(tmp_path / "job.jsonl")

    async def aprocess(item, ctx):
        return item

    class Agent:
        async def __call__(self, item, ctx):
            return item

    for fn in (aprocess, Agent()):
        with pytest.raises(ArgumentTypeError, match=r"`process` is an async function.*arun"):
            ResumableRun(config(path)).run(fn, ITEMS)
    assert not os.path.exists(path)  # refused before the job was opened


def test_run_refuses_a_generator_function_up_front(tmp_path):
    path = str(tmp_path / "job.jsonl")

    def process(item, ctx):
        yield item["id"]

    class Agent:
        def __call__(self, item, ctx):
            yield item

    for fn in (process, Agent()):
        with pytest.raises(ArgumentTypeError, match=r"`process` is a generator function.*yield"):
            ResumableRun(config(path)).run(fn, ITEMS)
    assert not os.path.exists(path)  # refused before the job was opened


def test_run_refuses_a_coroutine_returned_and_uses_no_attempt(tmp_path):
    path = str(tmp_path / "job.jsonl")

    async def answer(item):
        return item

    with pytest.raises(ArgumentTypeError, match="returned a coroutine"):
        ResumableRun(config(path)).run(lambda item, ctx: answer(item), ITEMS)
    assert not [r for r in JsonlStore(path).iter_records() if "id" in r]


def test_arun_refuses_a_function_that_returns_no_awaitable_and_keeps_what_it_did(tmp_path):
    # A plain function ran each item it was given to the end (its calls paid for)
    # before the run saw it returned no awaitable: those results were thrown away.
    path = str(tmp_path / "job.jsonl")
    ran: list[str] = []

    def process(item, ctx):
        ran.append(item)
        return {"answer": item}

    run = ResumableRun(config(path, concurrency=2))
    with pytest.raises(ArgumentTypeError, match=r"must return an awaitable.*run.*result was kept"):
        run_async(lambda: run.arun(process, ITEMS))
    assert 1 <= len(ran) <= 2  # one per worker task, then the run stopped
    kept = {r["id"]: r["result"] for r in ResultJsonlStore(path).iter_records() if "id" in r}
    assert kept == {item: {"answer": item} for item in ran}
    again = ResumableRun(config(path)).run(process, ITEMS)
    assert (again.already_done, again.done) == (len(kept), len(ITEMS) - len(kept))
