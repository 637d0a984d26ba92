"""One body of tests, run against every store: the session semantics of SPEC section 4."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_resume import AgentResume, DuplicateItemWarning, ResumableRun, RunConfig, Usage
from agent_resume._cli._reports import ItemFolder
from agent_resume._errors import ArgumentTypeError, ArgumentValueError, JobMismatchError
from agent_resume.stores import (
    InMemoryStore,
    JsonlStore,
    PostgresStore,
    ResultJsonlStore,
    SqliteStore,
    Store,
)

MakeStore = Callable[[], Store]

KINDS = [
    "memory",
    "jsonl",
    "result_jsonl",
    "sqlite",
    "sqlite_group",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("postgres_group", marks=pytest.mark.postgres),
]


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A factory of store objects that all open the same storage (a fresh one per test)."""
    kind = request.param
    if kind == "memory":
        memory = InMemoryStore()
        return lambda: memory
    if kind == "jsonl":
        return lambda: JsonlStore(tmp_path / "job.jsonl")
    if kind == "result_jsonl":
        return lambda: ResultJsonlStore(tmp_path / "job.jsonl")
    if kind == "sqlite":
        return lambda: SqliteStore(tmp_path / "job.db", lease_seconds=5)
    if kind == "sqlite_group":
        return lambda: SqliteStore(tmp_path / "job.db", lease_seconds=5, durability="group")
    dsn = request.getfixturevalue("pg_dsn")
    if kind == "postgres_group":
        return lambda: PostgresStore(dsn, lease_seconds=5, durability="group")
    return lambda: PostgresStore(dsn, lease_seconds=5)


def session(make_store: MakeStore, job_id: str = "job", **options: object):  # type: ignore[no-untyped-def]
    return AgentResume(make_store()).resume_or_start(job_id, **options)  # type: ignore[arg-type]


def test_remaining_yields_items_not_done_in_input_order(make_store: MakeStore) -> None:
    items = [f"item-{n:03d}" for n in range(150)]
    with session(make_store) as s:
        for item in items[::3]:
            assert s.mark_done(item)
    with session(make_store) as s:
        assert list(s.remaining(items)) == [i for n, i in enumerate(items) if n % 3]
        assert s.stats.already_done == 50


def test_mark_done_is_idempotent(make_store: MakeStore) -> None:
    with session(make_store) as s:
        assert s.mark_done("a", result={"n": 1}) is True
        assert s.mark_done("a", result={"n": 2}) is False
        assert s.stats.done == 1
    with session(make_store) as s:
        assert s.mark_done("a") is False
        assert s.is_done("a")
        assert list(s.remaining(["a", "b"])) == ["b"]
    records = [r for r in make_store().iter_records() if r.get("id") == "a"]
    assert len(records) == 1


def test_results_are_kept_where_the_store_keeps_them(make_store: MakeStore) -> None:
    with session(make_store) as s:
        s.mark_done("a", result={"answer": [1, 2.5, "x"]})
        s.mark_done("b")
        s.mark_done("c", result="text")
    with session(make_store) as s:
        results = dict(s.results())
    if make_store().keeps_results:
        assert results == {"a": {"answer": [1, 2.5, "x"]}, "b": None, "c": "text"}
    else:
        assert results == {}


def test_a_structured_output_a_dataclass_or_numpy_is_kept_as_plain_json(
    make_store: MakeStore,
) -> None:
    # `message.parsed` of a structured output is a pydantic model; numbers come
    # from numpy, dates and decimals from a database row: each is kept as the
    # JSON value it reads as, as pydantic's JSON mode writes it.
    import dataclasses
    import datetime
    import decimal
    import enum
    import pathlib
    import uuid

    import numpy as np
    import pydantic

    class Verdict(pydantic.BaseModel):
        label: str
        score: float

    @dataclasses.dataclass
    class Row:
        name: str
        counts: Any

    class Colour(enum.Enum):
        RED = "red"

    when = datetime.datetime(2026, 5, 24, 7, 30, tzinfo=datetime.timezone.utc)
    with session(make_store) as s:
        s.mark_done("model", result=Verdict(label="spam", score=0.25))
        s.mark_done("row", result=Row("r", np.array([1, 2], dtype=np.int64)))
        s.mark_done("numbers", result={"n": np.int32(3), "x": np.float32(0.5)})
        s.mark_done(
            "db",
            result={
                "at": when,
                "day": when.date(),
                "price": decimal.Decimal("19.90"),
                "key": uuid.UUID(int=7),
                "colour": Colour.RED,
                "tags": frozenset(["only"]),
                "file": pathlib.PurePosixPath("/data/a.txt"),
            },
        )
    with session(make_store) as s:
        results = dict(s.results())
        assert s.is_done("numbers") and s.is_done("db")
    if make_store().keeps_results:
        assert results == {
            "model": {"label": "spam", "score": 0.25},
            "row": {"name": "r", "counts": [1, 2]},
            "numbers": {"n": 3, "x": 0.5},
            "db": {
                "at": "2026-05-24T07:30:00+00:00",
                "day": "2026-05-24",
                "price": "19.90",
                "key": "00000000-0000-0000-0000-000000000007",
                "colour": "red",
                "tags": ["only"],
                "file": "/data/a.txt",
            },
        }


def test_a_result_that_is_not_json_is_refused_before_anything_is_written(
    make_store: MakeStore,
) -> None:
    # A store that keeps results refuses one it cannot keep; one that keeps
    # none does not even look at it, and records the item.
    keeps = make_store().keeps_results
    cases = (("a", math.nan, ValueError, "NaN"), ("b", object(), TypeError, "JSON"))
    with session(make_store) as s:
        for item_id, bad, error, match in cases:
            if keeps:
                with pytest.raises(error, match=match):
                    s.mark_done(item_id, result={"x": bad})
            else:
                assert s.mark_done(item_id, result={"x": bad}) is True
            assert s.is_done(item_id) is not keeps
    with session(make_store) as s:
        assert list(s.remaining(["a", "b"])) == (["a", "b"] if keeps else [])


def test_failed_items_run_again_until_quarantined(make_store: MakeStore) -> None:
    for attempt in range(1, 4):
        with session(make_store, max_attempts=3) as s:
            assert list(s.remaining(["ok", "bad"])) == ["bad"] if attempt > 1 else ["ok", "bad"]
            if attempt == 1:
                s.mark_done("ok")
            assert s.mark_failed("bad", RuntimeError(f"boom {attempt}"))
            assert s.attempts("bad") == attempt
    with session(make_store, max_attempts=3) as s:
        assert list(s.remaining(["ok", "bad"])) == []
        assert s.is_quarantined("bad")
        assert s.quarantined() == ["bad"]
        assert s.stats.quarantined == 1
    with session(make_store, max_attempts=5) as s:
        assert list(s.remaining(["ok", "bad"])) == ["bad"]


def test_a_non_retryable_failure_quarantines_at_once(make_store: MakeStore) -> None:
    with session(make_store) as s:
        list(s.remaining(["x", "y"]))
        s.mark_failed("x", "ValueError: bad input", retryable=False)
        s.mark_done("y")
    with session(make_store) as s:
        assert list(s.remaining(["x", "y", "z"])) == ["z"]
        assert s.is_quarantined("x")


def test_release_runs_quarantined_items_again(make_store: MakeStore) -> None:
    with session(make_store, max_attempts=1) as s:
        list(s.remaining(["x"]))
        s.mark_failed("x", RuntimeError("boom"))
    with session(make_store, max_attempts=1) as s:
        assert list(s.remaining(["x"])) == []
        assert s.retry(["x", "never-failed"]) == ["x"]
    with session(make_store, max_attempts=1) as s:
        assert s.attempts("x") == 0
        assert list(s.remaining(["x"])) == ["x"]
        assert s.mark_done("x")


def test_a_failed_item_done_later_is_done(make_store: MakeStore) -> None:
    with session(make_store) as s:
        list(s.remaining(["x"]))
        s.mark_failed("x", RuntimeError("once"))
    with session(make_store) as s:
        assert list(s.remaining(["x"])) == ["x"]
        assert s.mark_done("x")
        assert s.mark_failed("x", RuntimeError("too late")) is False
    with session(make_store) as s:
        assert s.is_done("x")
        assert s.attempts("x") == 0
        assert list(s.remaining(["x"])) == []


def test_a_store_holding_another_job_refuses(make_store: MakeStore) -> None:
    with session(make_store, "job-1") as s:
        s.mark_done("a")
    with pytest.raises(JobMismatchError) as info:
        session(make_store, "job-2")
    assert (info.value.expected, info.value.found) == ("job-2", "job-1")
    assert "job-1" in str(info.value)
    assert "job-2" in str(info.value)


def test_reopening_keeps_completions_failures_and_runs(make_store: MakeStore) -> None:
    with session(make_store) as s:
        list(s.remaining(["a", "b", "c"]))
        s.mark_done("a", usage={"input_tokens": 10, "output_tokens": 2})
        s.mark_failed("b", RuntimeError("boom"), usage={"input_tokens": 3})
        s.record_run({"run": "start", "ts": 1})
        s.record_run({"run": "end", "ts": 2, "report": {"done": 1}})
    with session(make_store) as s:
        assert s.is_done("a")
        assert not s.is_done("c")
        assert s.attempts("b") == 1
        assert s.runs == [{"run": "start", "ts": 1}, {"run": "end", "ts": 2, "report": {"done": 1}}]
    records = list(make_store().iter_records())
    done = [r for r in records if r.get("id") == "a"]
    assert done[0]["usage"] == {"input_tokens": 10, "output_tokens": 2}
    failed = [r for r in records if r.get("status") == "failed"]
    assert [(r["id"], r["attempt"], r["error"]) for r in failed] == [("b", 1, "RuntimeError: boom")]
    assert [r["run"] for r in records if "run" in r] == ["start", "end"]


@pytest.mark.parametrize(
    "item_id",
    ["emoji-🎉-ok", "line\nbreak", "sep\u2028arator", 'tab\tand "quotes" \\', "ünïcödé"],
)
def test_odd_ids_round_trip_exactly(make_store: MakeStore, item_id: str) -> None:
    with session(make_store) as s:
        assert list(s.remaining([item_id, "plain"])) == [item_id, "plain"]
        assert s.mark_done(item_id, result=item_id)
    with session(make_store) as s:
        assert s.is_done(item_id)
        assert list(s.remaining([item_id, "plain"])) == ["plain"]
    assert [r["id"] for r in make_store().iter_records() if "id" in r] == [item_id]
    if make_store().keeps_results:
        assert dict(make_store().iter_results()) == {item_id: item_id}


def test_int_ids_are_normalised_to_strings(make_store: MakeStore) -> None:
    items = [{"id": 1}, {"id": 2}, {"id": "3"}]
    with session(make_store) as s:
        assert s.mark_done(1)
        assert s.mark_done("1") is False
    with session(make_store) as s:
        assert s.is_done("1")
        assert s.is_done(1)
        assert list(s.remaining(items)) == [{"id": 2}, {"id": "3"}]
        assert s.mark_done(3) is True


def test_duplicate_ids_are_yielded_once_counted_and_warned(make_store: MakeStore) -> None:
    with session(make_store) as s, pytest.warns(DuplicateItemWarning, match="'a'"):
        assert list(s.remaining(["a", "b", "a", "a"])) == ["a", "b"]
    assert s.stats.duplicates == 2


def test_key_picks_the_id(make_store: MakeStore) -> None:
    items = [("x", 1), ("y", 2)]
    with session(make_store) as s:
        s.mark_done("x")
        assert list(s.remaining(items, key=lambda t: t[0])) == [("y", 2)]


def test_an_exception_in_the_block_keeps_what_was_recorded(make_store: MakeStore) -> None:
    with pytest.raises(KeyError), session(make_store) as s:
        for item in s.remaining(["a", "b", "c"]):
            if item == "b":
                raise KeyError(item)
            s.mark_done(item)
    with session(make_store) as s:
        assert list(s.remaining(["a", "b", "c"])) == ["b", "c"]


def test_ids_with_a_nul_character_are_offered_once_each(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    items = ["a\0b", "a", "a\0c", "b"]
    if "postgres" in request.node.name:
        # PostgreSQL text holds no NUL: refused before anything is enqueued.
        from agent_resume import ArgumentValueError

        with session(make_store) as s, pytest.raises(ArgumentValueError, match="NUL"):
            list(s.remaining(items))
        return
    seen: list[str] = []
    with session(make_store, max_attempts=5) as s:
        for item in s.remaining(items):
            seen.append(item)
            if item == "a\0b":
                s.mark_failed(item, "fails, and goes back to the queue")
            else:
                s.mark_done(item)
    assert sorted(seen) == sorted(items)
    with session(make_store, max_attempts=5) as s:
        assert list(s.remaining(items)) == ["a\0b"]
        assert s.is_done("a") and s.is_done("a\0c") and not s.is_done("a\0b")


def test_a_nul_character_in_a_result_a_failure_or_the_state_does_not_stop_the_job(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    # Text extracted from a PDF may hold NUL. PostgreSQL's jsonb and text hold
    # none: its StoreError stopped the run after the item was paid for. There
    # each NUL is kept as U+FFFD; the other stores keep it as it is.
    nul = "\ufffd" if "postgres" in request.node.name else "\0"
    with session(make_store, max_attempts=5) as s:
        assert s.mark_done("a", result={"text": "x\0y", "literal": "\\u0000"}) is True
        s.mark_failed("b", ValueError("the model said \0"))
        s.set_state("last", "p\0q")
    with session(make_store, max_attempts=5) as s:
        assert s.is_done("a") and s.attempts("b") == 1
        assert s.state == {"last": f"p{nul}q"}
        results = dict(s.results())
    if make_store().keeps_results:
        assert results == {"a": {"text": f"x{nul}y", "literal": "\\u0000"}}
    failures = [r for r in make_store().iter_records() if r.get("status") == "failed"]
    assert [r["error"] for r in failures] == [f"ValueError: the model said {nul}"]


# --- the job's state (session.state) ------------------------------------------------


def test_the_job_state_is_read_back_on_resume(make_store: MakeStore) -> None:
    with session(make_store) as s:
        assert s.state == {}
        assert not s.resumed
        s.set_state("cursor", "2026-11-29T00:00:00Z")
        s.update_state({"page": 7, "seen": ["a", "b"]})
        s.set_state("page", 8)
        s.delete_state("seen")
        s.delete_state("never-set")  # not an error
        assert s.state == {"cursor": "2026-11-29T00:00:00Z", "page": 8}
    with session(make_store) as s:
        assert s.resumed
        assert s.state == {"cursor": "2026-11-29T00:00:00Z", "page": 8}
        assert s.runs == []  # state records are not runs


def test_the_job_state_alone_makes_a_job_resumed(make_store: MakeStore) -> None:
    with session(make_store) as s:
        s.set_state("k", 1)
    with session(make_store) as s:
        assert s.resumed
        assert list(s.remaining(["a"])) == ["a"]


def test_the_job_state_is_a_copy(make_store: MakeStore) -> None:
    with session(make_store) as s:
        s.set_state("ids", [1, 2])
        copy = s.state
        copy["ids"].append(3)
        copy["other"] = True
        assert s.state == {"ids": [1, 2]}


@pytest.mark.parametrize(
    ("key", "value", "error", "message"),
    [
        (3, 1, "ArgumentTypeError", "a state key must be a str"),
        ("", 1, "ArgumentValueError", "a state key must not be empty"),
        ("k", b"bytes", "ArgumentTypeError", "`value`"),
        ("k", math.nan, "ArgumentValueError", "`value`"),
        ("k", "x" * 70_000, "ArgumentValueError", "more than the 65536 allowed"),
    ],
)
def test_a_bad_state_change_is_refused_and_nothing_is_recorded(
    make_store: MakeStore, key: object, value: object, error: str, message: str
) -> None:
    import agent_resume

    with session(make_store) as s:
        s.set_state("kept", True)
        with pytest.raises(getattr(agent_resume, error), match=message):
            s.set_state(key, value)  # type: ignore[arg-type]
        assert s.state == {"kept": True}
    with session(make_store) as s:
        assert s.state == {"kept": True}


def test_the_job_state_cannot_change_after_close(make_store: MakeStore) -> None:
    from agent_resume import StoreClosedError

    s = session(make_store)
    s.close()
    with pytest.raises(StoreClosedError):
        s.set_state("k", 1)


def test_a_run_records_each_attempts_turns_and_seconds(make_store: MakeStore) -> None:
    # Through a real run: the completion and the failure carry the attempt's turns
    # and duration, every store keeps them, and the report's rows total them.
    fail_once = {"b"}

    def process(item: str, ctx: Any) -> str:
        for _ in range({"a": 3, "b": 2, "c": 0}[item]):
            ctx.record_usage(Usage(input_tokens=5, output_tokens=1, cost_usd=0.001))
        if item in fail_once:
            fail_once.discard(item)
            raise RuntimeError("once")
        return item

    for _ in range(2):
        config = RunConfig(job_id="job", store=make_store(), progress=False)
        ResumableRun(config).run(process, ["a", "b", "c"])
    records = [r for r in make_store().iter_records() if r.get("id") in ("a", "b", "c")]
    facts = sorted(
        (r["id"], r.get("status", "done"), r["turns"], isinstance(r["seconds"], float))
        for r in records
    )
    assert facts == [
        ("a", "done", 3, True),
        ("b", "done", 2, True),
        ("b", "failed", 2, True),
        ("c", "done", 0, True),
    ]
    assert all(r["seconds"] >= 0 for r in records)
    folder = ItemFolder()
    for record in make_store().iter_records():
        folder.add(record)
    rows = {row["item_id"]: row for row in folder.rows()}
    assert {i: (row["turns"], row["attempts"]) for i, row in rows.items()} == {
        "a": (3, 1),
        "b": (4, 2),  # both attempts' turns, as the usage counts both
        "c": (0, 1),
    }
    seconds_b = [r["seconds"] for r in records if r["id"] == "b"]
    assert rows["b"]["duration_seconds"] == pytest.approx(sum(seconds_b))


def test_turns_and_seconds_are_checked_before_anything_is_written(make_store: MakeStore) -> None:
    with session(make_store) as s:
        with pytest.raises(ArgumentValueError, match=r"turns.*-1"):
            s.mark_done("a", turns=-1)
        with pytest.raises(ArgumentTypeError, match=r"turns.*bool"):
            s.mark_failed("a", "boom", turns=True)
        with pytest.raises(ArgumentValueError, match=r"seconds.*nan"):
            s.mark_failed("a", "boom", seconds=math.nan)
        with pytest.raises(ArgumentTypeError, match=r"seconds.*str"):
            s.mark_done("a", seconds="1")
        assert not s.is_done("a") and s.attempts("a") == 0
        assert s.mark_failed("a", "boom", turns=0, seconds=0)
        assert s.mark_done("a", turns=4, seconds=1.5)
    records = [r for r in make_store().iter_records() if r.get("id") == "a"]
    assert [(r.get("turns"), r.get("seconds")) for r in records] == [(0, 0.0), (4, 1.5)]
