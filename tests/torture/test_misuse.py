"""Bad inputs: a catalogue of misuse, each giving a typed error with a clear message and writing nothing.

Every case runs against a directory holding an open job (one item done, one
failed); the bytes of every file in it are compared before and after. An
``Argument*Error`` must name its parameter (``.parameter`` and the message)
and show the value given.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_resume import (
    AgentResume,
    ArgumentTypeError,
    ArgumentValueError,
    JobLockedError,
    JobMismatchError,
    JsonlStore,
    ResultJsonlStore,
    ResumableRun,
    RunConfig,
    StoreClosedError,
    StoreError,
    UnsupportedFormatError,
)
from agent_resume.stores import SqliteStore, open_store

MB = 1 << 20


@dataclass
class Ctx:
    dir: Path
    path: Path
    session: Any

    def closed(self) -> Any:
        self.session.close()
        return self.session

    def fresh(self, name: str = "new.jsonl") -> AgentResume:
        return AgentResume(ResultJsonlStore(self.dir / name))


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Ctx], Any]
    error: type[BaseException]
    words: tuple[str, ...] = ()
    parameter: str | None = None


def deep(n: int) -> Any:
    value: Any = []
    for _ in range(n):
        value = [value]
    return value


def cfg(**kwargs: Any) -> Callable[[Ctx], Any]:
    return lambda c: RunConfig(**{"job_id": "job", "store": str(c.path), **kwargs})


AT = ArgumentTypeError
AV = ArgumentValueError

CASES = [
    # -- item IDs -----------------------------------------------------------------------
    Case("id float", lambda c: c.session.mark_done(1.5), AT, ("float", "1.5", "key="), "item_id"),
    Case("id None", lambda c: c.session.mark_done(None), AT, ("NoneType",), "item_id"),
    Case("id bool", lambda c: c.session.mark_done(True), AT, ("bool", "True"), "item_id"),
    Case("id bytes", lambda c: c.session.mark_done(b"x"), AT, ("bytes", "b'x'"), "item_id"),
    Case("id tuple", lambda c: c.session.mark_done(("a",)), AT, ("tuple",), "item_id"),
    Case("id empty", lambda c: c.session.mark_done(""), AV, ("empty", "''"), "item_id"),
    Case("id surrogate", lambda c: c.session.mark_done("a\ud800b"), AV, ("surrogate", "index 1")),
    Case(
        "id 1 MB with a surrogate",
        lambda c: c.session.mark_done("x" * MB + "\udfff"),
        AV,
        ("surrogate", f"index {MB}"),
        "item_id",
    ),
    Case("failed id float", lambda c: c.session.mark_failed(2.5, "e"), AT, ("float",), "item_id"),
    Case("failed id empty", lambda c: c.session.mark_failed("", "e"), AV, ("empty",), "item_id"),
    Case("failed id surrogate", lambda c: c.session.mark_failed("\udc80", "e"), AV, ("surrogate",)),
    Case("is_done list", lambda c: c.session.is_done([1]), AT, ("list",), "item_id"),
    Case("release None", lambda c: c.session.retry([None]), AT, ("NoneType",), "item_id"),
    Case("release empty", lambda c: c.session.retry(["failed-1", ""]), AV, ("empty",)),
    Case(
        "remaining object",
        lambda c: list(c.session.remaining([object()])),
        AT,
        ("object", "key=", "`id` attribute"),
    ),
    Case("remaining float", lambda c: list(c.session.remaining([1.5])), AT, ("float", "key=")),
    Case(
        "remaining id None",
        lambda c: list(c.session.remaining([{"id": None}])),
        AT,
        ("NoneType",),
    ),
    Case("remaining empty id", lambda c: list(c.session.remaining(["ok", ""])), AV, ("empty",)),
    Case(
        "remaining surrogate",
        lambda c: list(c.session.remaining([{"id": "\ud800"}])),
        AV,
        ("surrogate",),
    ),
    Case(
        "remaining key float",
        lambda c: list(c.session.remaining(["a"], key=lambda i: 1.0)),
        AT,
        ("float", "1.0"),
    ),
    # -- results, usage, errors, run records ------------------------------------------------------
    Case(
        "result object",
        lambda c: c.session.mark_done("r", result=object()),
        AT,
        ("object",),
        "result",
    ),
    Case(
        "result NaN",
        lambda c: c.session.mark_done("r", result=math.nan),
        AV,
        ("NaN", "nan"),
        "result",
    ),
    Case(
        "result inf inside",
        lambda c: c.session.mark_done("r", result={"x": [1, math.inf]}),
        AV,
        ("inf",),
        "result",
    ),
    Case(
        "result set of objects",
        lambda c: c.session.mark_done("r", result={object()}),
        AT,
        ("object",),
        "result",
    ),
    Case("result bytes", lambda c: c.session.mark_done("r", result=b"x"), AT, ("bytes",), "result"),
    Case(
        "result tuple key",
        lambda c: c.session.mark_done("r", result={(1, 2): 3}),
        AT,
        ("tuple",),
        "result",
    ),
    Case(
        "result surrogate",
        lambda c: c.session.mark_done("r", result="\udc80"),
        AV,
        ("surrogate",),
        "result",
    ),
    Case(
        "result too deep",
        lambda c: c.session.mark_done("r", result=deep(100_000)),
        AV,
        ("nested",),
        "result",
    ),
    Case("usage int", lambda c: c.session.mark_done("r", usage=42), AT, ("int",), "usage"),
    Case(
        "usage NaN",
        lambda c: c.session.mark_done("r", usage={"input_tokens": math.nan}),
        AV,
        ("nan",),
        "usage",
    ),
    Case("failure error int", lambda c: c.session.mark_failed("r", 42), AT, ("int",), "error"),
    Case(
        "run record NaN",
        lambda c: c.session.record_run({"run": "x", "v": math.nan}),
        AV,
        ("nan",),
        "record",
    ),
    # -- session settings -------------------------------------------------------------------
    Case("job_id empty", lambda c: c.fresh().resume_or_start(""), AV, ("''",), "job_id"),
    Case(
        "job_id surrogate",
        lambda c: c.fresh().resume_or_start("j\ud800"),
        AV,
        ("surrogate",),
        "job_id",
    ),
    Case(
        "wrong job ID",
        lambda c: AgentResume(ResultJsonlStore(c.dir / "other.jsonl")).resume_or_start("job"),
        JobMismatchError,
        ("'other-job'", "'job'"),
    ),
    Case(
        "max_attempts 0",
        lambda c: c.fresh().resume_or_start("j", max_attempts=0),
        AV,
        ("at least 1", "0"),
        "max_attempts",
    ),
    Case(
        "on_change typo",
        lambda c: c.fresh().resume_or_start("j", on_change="skip"),
        AV,
        ("'skip'",),
        "on_change",
    ),
    Case(
        "fingerprint int",
        lambda c: c.fresh().resume_or_start("j", fingerprint=42),
        AT,
        ("42",),
        "fingerprint",
    ),
    Case(
        "newer format",
        lambda c: AgentResume(JsonlStore(c.dir / "v2.jsonl")).resume_or_start("job"),
        UnsupportedFormatError,
        ("version 2", "upgrade"),
    ),
    # -- a closed session, a busy store --------------------------------------------------------
    Case(
        "mark_done closed",
        lambda c: c.closed().mark_done("n"),
        StoreClosedError,
        ("closed", "'job'"),
    ),
    Case(
        "mark_failed closed",
        lambda c: c.closed().mark_failed("n", "e"),
        StoreClosedError,
        ("closed",),
    ),
    Case(
        "remaining closed",
        lambda c: list(c.closed().remaining(["n"])),
        StoreClosedError,
        ("closed",),
    ),
    Case("release closed", lambda c: c.closed().retry(["failed-1"]), StoreClosedError, ("closed",)),
    Case("record_run closed", lambda c: c.closed().record_run({"run": "x"}), StoreClosedError, ()),
    Case("flush closed", lambda c: c.closed().flush(), StoreClosedError, ("closed",)),
    Case(
        "store used by two sessions",
        lambda c: AgentResume(c.session.store).resume_or_start("job"),
        StoreError,
        ("already open",),
    ),
    Case(
        "second session on the file",
        lambda c: AgentResume(ResultJsonlStore(c.path)).resume_or_start("job"),
        JobLockedError,
        (f"process {os.getpid()}", "'job'"),
    ),
    # -- stores ---------------------------------------------------------------------------------
    Case("open_store txt", lambda c: open_store(str(c.dir / "j.txt")), AV, ("j.txt",), "store"),
    Case("open_store int", lambda c: open_store(42), AT, ("int",), "store"),  # type: ignore[arg-type]
    Case(
        "open_store sqlite://", lambda c: open_store("sqlite://"), AV, ("SQLite URL", "'sqlite://'")
    ),
    Case(
        "open_store sqlite:///",
        lambda c: open_store("sqlite:///"),
        AV,
        ("SQLite URL", "'sqlite:///'"),
    ),
    Case(
        "open_store mysql", lambda c: open_store("mysql://h/db"), AV, ("'mysql://h/db'",), "store"
    ),
    Case(
        "durability typo",
        lambda c: JsonlStore(c.dir / "d.jsonl", durability="fsynk"),  # type: ignore[arg-type]
        AV,
        ("'fsynk'", "'flush', 'group' or 'fsync'"),
        "durability",
    ),
    Case("jsonl path empty", lambda c: JsonlStore(""), AV, ("empty",), "path"),
    Case(
        "sqlite busy_timeout",
        lambda c: SqliteStore(c.dir / "x.db", busy_timeout=-1),
        AV,
        ("-1",),
        "busy_timeout",
    ),
    Case(
        "sqlite lease 0",
        lambda c: SqliteStore(c.dir / "x.db", lease_seconds=0),
        AV,
        ("0",),
        "lease_seconds",
    ),
    Case(
        "sqlite batch 0",
        lambda c: SqliteStore(c.dir / "x.db", batch_size=0),
        AV,
        ("at least 1",),
        "batch_size",
    ),
    # -- RunConfig and ResumableRun ----------------------------------------------------------------
    Case("run concurrency 0", cfg(concurrency=0), AV, ("at least 1", "0"), "concurrency"),
    Case("run concurrency float", cfg(concurrency=1.5), AT, ("float", "1.5"), "concurrency"),
    Case("run max_attempts 0", cfg(max_attempts=0), AV, ("0",), "max_attempts"),
    Case("run time_budget -1", cfg(time_budget=-1), AV, ("-1",), "time_budget"),
    Case("run item_timeout 0", cfg(item_timeout=0), AV, ("greater than 0",), "item_timeout"),
    Case("run cost NaN", cfg(max_cost_usd=math.nan), AV, ("nan",), "max_cost_usd"),
    Case("run cost negative", cfg(max_cost_usd=-1), AV, ("-1",), "max_cost_usd"),
    Case("run max_tokens 0", cfg(max_tokens=0), AV, ("0",), "max_tokens"),
    Case("run max_items str", cfg(max_items="10"), AT, ("str", "'10'"), "max_items"),
    Case("run progress typo", cfg(progress="fancy"), AV, ("'fancy'",), "progress"),
    Case("run grace -1", cfg(grace_period=-1), AV, ("-1",), "grace_period"),
    Case("run hook int", cfg(on_item_done=42), AT, ("int",), "on_item_done"),
    Case("run stop int", cfg(stop=42), AT, ("42",), "stop"),
    Case("run store int", cfg(store=42), AT, ("int",), "store"),
    Case("run job_id empty", cfg(job_id=""), AV, ("''",), "job_id"),
    Case("run finish_by str", cfg(finish_by="tomorrow"), AT, ("str",), "finish_by"),
    Case("run on_change typo", cfg(on_change="skip"), AV, ("'skip'",), "on_change"),
    Case("run config dict", lambda c: ResumableRun({"job_id": "j"}), AT, ("dict",), "config"),  # type: ignore[arg-type]
    Case(
        "run process int",
        lambda c: ResumableRun(RunConfig(job_id="job", store=str(c.dir / "r.jsonl"))).run(42, []),  # type: ignore[arg-type]
        AT,
        ("int",),
        "process",
    ),
    Case(
        "run bad store URL",
        lambda c: ResumableRun(RunConfig(job_id="j", store=str(c.dir / "x.txt"))).run(
            lambda i, ctx: 1, []
        ),
        AV,
        ("x.txt",),
        "store",
    ),
]

# Wrong types given to the session's settings (ArgumentValueError before the torture report).
TYPE_CASES = [
    Case("job_id int", lambda c: c.fresh().resume_or_start(123), AT, ("123",), "job_id"),
    Case(
        "max_attempts str",
        lambda c: c.fresh().resume_or_start("j", max_attempts="3"),
        AT,
        ("'3'",),
        "max_attempts",
    ),
    Case(
        "max_attempts bool",
        lambda c: c.fresh().resume_or_start("j", max_attempts=True),
        AT,
        ("True",),
        "max_attempts",
    ),
]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, but the PID notes in lock files (emptied when a session closes)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Ctx]:
    (tmp_path / "v2.jsonl").write_text('{"agent_resume": 2, "job_id": "job"}\n')
    with AgentResume(ResultJsonlStore(tmp_path / "other.jsonl")).resume_or_start("other-job"):
        pass
    path = tmp_path / "job.jsonl"
    session = AgentResume(ResultJsonlStore(path)).resume_or_start("job")
    session.mark_done("done-1", result={"ok": True})
    session.mark_failed("failed-1", "E: boom")
    yield Ctx(tmp_path, path, session)
    session.close()


def check(case: Case, ctx: Ctx) -> None:
    before = snapshot(ctx.dir)
    with pytest.raises(case.error) as info:
        case.call(ctx)
    message = str(info.value)
    for word in case.words:
        assert word in message, (word, message)
    if case.parameter is not None:
        assert getattr(info.value, "parameter", None) == case.parameter
        assert f"`{case.parameter}`" in message
    ctx.session.close()
    assert snapshot(ctx.dir) == before  # nothing was written


def test_the_catalogue_holds_at_least_40_cases() -> None:
    assert len(CASES) + len(TYPE_CASES) + 2 >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_misuse_raises_a_typed_error_naming_the_parameter_and_writes_nothing(
    case: Case, ctx: Ctx
) -> None:
    check(case, ctx)


@pytest.mark.parametrize("case", TYPE_CASES, ids=[c.name for c in TYPE_CASES])
def test_a_setting_of_the_wrong_type_raises_argument_type_error(case: Case, ctx: Ctx) -> None:
    check(case, ctx)


def test_closing_twice_is_harmless_and_writes_nothing(ctx: Ctx) -> None:
    ctx.session.close()
    before = snapshot(ctx.dir)
    ctx.session.close()
    ctx.session.__exit__(None, None, None)
    assert snapshot(ctx.dir) == before


def test_a_second_live_session_in_another_process_is_refused_naming_its_pid(ctx: Ctx) -> None:
    ctx.session.close()
    script = textwrap.dedent(
        f"""
        import time
        from agent_resume import AgentResume, ResultJsonlStore
        s = AgentResume(ResultJsonlStore({str(ctx.path)!r})).resume_or_start("job")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        before = snapshot(ctx.dir)
        with pytest.raises(JobLockedError, match=f"process {child.pid}") as info:
            AgentResume(ResultJsonlStore(ctx.path)).resume_or_start("job")
        assert info.value.pid == child.pid
        assert snapshot(ctx.dir) == before
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


LONG_IDS = ["x" * MB, "line\nbreak", "sep\u2028arator", "emoji 🦀 é", 'quo"te\\', " ", "\x00nul"]


@pytest.mark.parametrize(
    "item_id", LONG_IDS, ids=["1MB", "newline", "u2028", "emoji", "quote", "space", "nul"]
)
def test_odd_but_valid_ids_round_trip_exactly(tmp_path: Path, item_id: str) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.mark_done(item_id, result=item_id)
        assert not s.mark_done(item_id)
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done(item_id)
        assert list(s.remaining([item_id, "other"])) == ["other"]
        assert dict(s.results()) == {item_id: item_id}
