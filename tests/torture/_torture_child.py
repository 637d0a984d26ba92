"""A torture child: runs one real job (or one maintenance step) and reports every step.

Usage: ``python _torture_child.py SPEC_JSON``

The spec names the target (``jsonl``, ``results``, ``sqlite``, ``postgres``,
``run-sync``, ``run-async``, ``repair``, ``compact``), where its checkpoint
lives, the items, and optionally a *phase*: a point where the child stops
and announces itself, so that the parent's SIGKILL lands exactly there.
Phases are placed by wrapping ``os.write``, ``os.fsync``, ``os.ftruncate``,
``os.link``, ``os.replace``, the JSON encoder, the loader or a SQL store's
transaction runner *in this process only*: the code under test runs
unchanged, it is just paused at the chosen moment.

Lines on stdout, each written with one ``write`` so that a kill never tears one:

- ``ready``: the job is open (recovery finished);
- ``begin ID``: the work on an item started;
- ``ack ID T``: ``mark_done`` returned ``True`` at monotonic time ``T``;
- ``phase NAME``: paused at the chosen phase, waiting to be killed;
- ``synced PATH SIZE T``: an fsync of a file of ``SIZE`` bytes, begun at ``T``, succeeded;
- ``dirsync PATH``: an fsync of a directory succeeded;
- ``finished``: the job ran to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from typing import Any

_real_write = os.write
_real_fsync = os.fsync
_real_ftruncate = os.ftruncate
_real_link = os.link
_real_replace = os.replace


def say(text: str) -> None:
    _real_write(1, (text + "\n").encode("utf-8", "backslashreplace"))


def pause(name: str) -> None:
    say(f"phase {name}")
    time.sleep(60)  # the parent kills this process now
    raise SystemExit(f"phase {name}: the parent did not kill the child")


class Countdown:
    """Fires once, at the ``n``-th call."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __call__(self) -> bool:
        self.left -= 1
        return self.left == 0


def install_phase(spec: dict[str, Any]) -> None:
    """Wrap the primitives so that the child pauses at ``spec["phase"]``."""
    phase = spec.get("phase")
    trace_sync = spec.get("trace_sync", False)
    fire = Countdown(int(spec.get("phase_at", 1)))

    if phase in ("write-before", "write-mid", "write-after"):

        def write(fd: int, data: Any) -> int:
            if fd > 2 and fire():
                if phase == "write-before":
                    pause(phase)
                if phase == "write-mid" and len(data) > 1:
                    _real_write(fd, bytes(data[: len(data) // 2]))
                    pause(phase)
                written = _real_write(fd, data)
                pause(phase)
                return written
            return _real_write(fd, data)

        os.write = write

    def fsync(fd: int) -> None:
        # The time first: a record acknowledged before it was written before the size is read.
        started = time.monotonic()
        info = os.fstat(fd)
        is_dir = stat.S_ISDIR(info.st_mode)
        size = info.st_size
        hit = False
        if phase in ("sync-before", "sync-after") and not is_dir:
            hit = fire()
            if hit and phase == "sync-before":
                pause(phase)
        if phase == "dirsync" and is_dir and fire():
            pause(phase)
        _real_fsync(fd)
        if trace_sync:
            where = os.readlink(f"/proc/self/fd/{fd}")
            if is_dir:
                say(f"dirsync {where}")
            else:
                say(f"synced {where} {size} {started:.6f}")
        if hit:
            pause(phase)

    os.fsync = fsync

    if phase in ("open-cut-before", "open-cut-after"):

        def ftruncate(fd: int, length: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".lock"):
                _real_ftruncate(fd, length)  # the job lock, not the checkpoint
                return
            if phase == "open-cut-before":
                pause(phase)
            _real_ftruncate(fd, length)
            pause(phase)

        os.ftruncate = ftruncate

    if phase == "open-load":
        import agent_resume.stores._jsonl as jsonl_module

        real_load = jsonl_module.load

        def load(*args: Any, **kwargs: Any) -> Any:
            result = real_load(*args, **kwargs)
            pause(phase)
            return result

        jsonl_module.load = load  # type: ignore[assignment]

    if phase == "encode":
        import agent_resume._records as records

        real_dumps = records._dumps

        def dumps(value: Any) -> str:
            text = real_dumps(value)
            if fire():
                pause(phase)
            return text

        records._dumps = dumps  # type: ignore[assignment]

    if phase in ("link", "replace-before", "replace-after"):

        def link(src: Any, dst: Any, **kwargs: Any) -> None:
            if phase == "link":
                pause(phase)
            _real_link(src, dst, **kwargs)

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if phase == "replace-before":
                pause(phase)
            _real_replace(src, dst, **kwargs)
            if phase == "replace-after":
                pause(phase)

        os.link = link
        os.replace = replace


def make_store(spec: dict[str, Any]) -> Any:
    from agent_resume.stores import JsonlStore, ResultJsonlStore

    target = spec["target"]
    durability = spec.get("durability", "flush")
    if target == "jsonl":
        return JsonlStore(spec["path"], durability=durability)
    if target in ("results", "run-sync", "run-async"):
        return ResultJsonlStore(spec["path"], durability=durability)
    if target == "sqlite":
        from agent_resume.stores import SqliteStore

        return SqliteStore(spec["path"], lease_seconds=1.0, batch_size=4)
    if target == "postgres":
        from agent_resume.stores import PostgresStore

        return PostgresStore(spec["path"], lease_seconds=1.0, batch_size=4)
    raise SystemExit(f"unknown target {target}")


def wrap_sql_store(store: Any, spec: dict[str, Any]) -> None:
    """Place write and open phases around a SQL store's transactions."""
    phase = spec.get("phase")
    fire = Countdown(int(spec.get("phase_at", 1)))
    real_run = store._run

    def run(fn: Any, what: str, **kwargs: Any) -> Any:
        hit = what == "recording a completion" and phase in ("write-before", "write-after")
        if hit and fire():
            if phase == "write-before":
                pause(phase)
            value = real_run(fn, what, **kwargs)
            pause(phase)
            return value
        if what == "opening the job" and phase == "open-load":
            value = real_run(fn, what, **kwargs)
            pause(phase)
            return value
        return real_run(fn, what, **kwargs)

    store._run = run


def work_pause(spec: dict[str, Any]) -> Countdown | None:
    return Countdown(int(spec.get("phase_at", 1))) if spec.get("phase") == "work" else None


def result_for(item: str) -> dict[str, Any]:
    return {"item": item, "pad": "x" * (len(item) * 4), "n": [1, 2.5, None, "é"]}


def run_session(spec: dict[str, Any]) -> None:
    from agent_resume import AgentResume

    store = make_store(spec)
    if spec["target"] in ("sqlite", "postgres"):
        wrap_sql_store(store, spec)
    items = [f"item-{i:05d}" for i in range(int(spec["items"]))]
    work_fire = work_pause(spec)
    sleep = float(spec.get("work_seconds", 0.0))
    with AgentResume(store).resume_or_start("torture-job") as session:
        say("ready")
        for item in session.remaining(items):
            say(f"begin {item}")
            if sleep:
                time.sleep(sleep)
            if work_fire is not None and work_fire():
                pause("work")
            if session.mark_done(item, result=result_for(item)):
                say(f"ack {item} {time.monotonic():.6f}")
    say("finished")


def run_resumable(spec: dict[str, Any]) -> None:
    from agent_resume import ResumableRun, RunConfig

    items = [f"item-{i:05d}" for i in range(int(spec["items"]))]
    work_fire = work_pause(spec)
    sleep = float(spec.get("work_seconds", 0.001))

    def on_done(outcome: Any) -> None:
        if outcome.status == "done":
            say(f"ack {outcome.item_id} {time.monotonic():.6f}")

    config = RunConfig(
        job_id="torture-job",
        store=make_store(spec),
        concurrency=int(spec.get("concurrency", 4)),
        progress=False,
        on_item_done=on_done,
        handle_signals=False,
    )
    run = ResumableRun(config)
    say("ready")
    if spec["target"] == "run-sync":

        def process(item: str, ctx: Any) -> Any:
            say(f"begin {item}")
            time.sleep(sleep)
            if work_fire is not None and work_fire():
                pause("work")
            return result_for(item)

        report = run.run(process, items)
    else:

        async def aprocess(item: str, ctx: Any) -> Any:
            say(f"begin {item}")
            await asyncio.sleep(sleep)
            if work_fire is not None and work_fire():
                pause("work")
            return result_for(item)

        report = asyncio.run(run.arun(aprocess, items))
    if report.failed:
        raise SystemExit(f"{report.failed} items failed: {report!r}")
    say("finished")


def run_maintenance(spec: dict[str, Any]) -> None:
    from agent_resume.stores._jsonl_maint import compact, repair

    say("ready")
    if spec["target"] == "repair":
        repair(spec["path"])
    else:
        compact(spec["path"])
    say("finished")


def main() -> None:
    spec = json.loads(sys.argv[1])
    install_phase(spec)
    target = spec["target"]
    if target in ("repair", "compact"):
        run_maintenance(spec)
    elif target in ("run-sync", "run-async"):
        run_resumable(spec)
    else:
        run_session(spec)


if __name__ == "__main__":
    main()
