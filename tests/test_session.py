"""Session semantics (SPEC section 4) on the JSONL stores: the article's scenarios and the ID rules."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    ArgumentTypeError,
    ArgumentValueError,
    DuplicateItemWarning,
    InMemoryStore,
    ItemChangedError,
    JobMismatchError,
    JsonlStore,
    ResultJsonlStore,
    Session,
    StoreClosedError,
)


@dataclass
class Doc:
    id: str
    body: str = ""


def ids(n: int) -> list[str]:
    return [f"item-{i:03d}" for i in range(n)]


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def open_job(path: Path, job: str = "job", **kwargs: object) -> object:
    return AgentResume(JsonlStore(path)).resume_or_start(job, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ck" / "job.jsonl"


# -- fresh start, resume, boundaries ---------------------------------------------------


def test_fresh_start_on_a_missing_file_creates_it_with_a_header(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(ids(3))) == ids(3)
    header = lines(path)[0]
    assert header["agent_resume"] == 1
    assert header["job_id"] == "job"
    assert isinstance(header["created"], int)


def test_fresh_start_on_an_empty_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(ids(3))) == ids(3)
        assert s.stats.already_done == 0


def test_mid_job_resume_yields_only_the_rest(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for item in s.remaining(ids(10)):
            if item == "item-006":
                break
            s.mark_done(item)
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(ids(10))) == ids(10)[6:]
        assert s.stats.already_done == 6


def test_resume_with_nothing_done_yields_everything(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job"):
        pass
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(ids(5))) == ids(5)


def test_resume_with_everything_done_yields_nothing(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for item in s.remaining(ids(5)):
            s.mark_done(item)
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(ids(5))) == []
        assert s.stats.already_done == 5


def test_remaining_of_an_empty_input_yields_nothing(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining([])) == []
        assert list(s.remaining(iter([]))) == []


def test_remaining_is_lazy_on_iterators(path: Path) -> None:
    pulled: list[int] = []

    def gen() -> Iterator[str]:
        for i in range(100):
            pulled.append(i)
            yield f"x{i}"

    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        it = s.remaining(gen())
        assert next(it) == "x0"
        assert pulled == [0]


def test_remaining_keeps_input_order_across_batches(path: Path) -> None:
    items = [f"k{i}" for i in range(10_000)]
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for item in items[::3]:
            s.mark_done(item)
        expected = [x for i, x in enumerate(items) if i % 3]
        assert list(s.remaining(items)) == expected
        assert list(s.remaining(tuple(items))) == expected
        assert list(s.remaining(iter(items))) == expected


def test_an_item_marked_done_ahead_is_not_yielded_later(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        out = []
        for item in s.remaining(ids(5)):
            out.append(item)
            s.mark_done(item)
            s.mark_done("item-003")
        assert out == ["item-000", "item-001", "item-002", "item-004"]


# -- ID rules ----------------------------------------------------------------------------


def test_ids_come_from_key_then_attribute_then_key_then_str(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
        assert list(s.remaining([Doc("a"), Doc("b")])) == [Doc("b")]
        assert list(s.remaining([{"id": "a"}, {"id": "c"}])) == [{"id": "c"}]
        assert list(s.remaining(["a", "d"])) == ["d"]
        assert list(s.remaining([("a", 1), ("e", 2)], key=lambda t: t[0])) == [("e", 2)]


def test_int_ids_are_normalised_to_decimal_strings(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.mark_done(1) is True
        assert s.mark_done("1") is False
        assert s.is_done(1)
        assert s.is_done("1")
        assert list(s.remaining([{"id": 1}, {"id": 2}])) == [{"id": 2}]
    assert lines(path)[1]["id"] == "1"


@pytest.mark.parametrize("bad", [1.5, None, b"x", True, False, ("a",), object()])
def test_ids_of_other_types_raise_type_error_suggesting_key(path: Path, bad: object) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(ArgumentTypeError, match=r"key=") as info:
            s.mark_done(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        assert type(bad).__name__ in str(info.value)
        with pytest.raises(TypeError, match="key="):
            list(s.remaining([{"id": bad}]))
    assert len(lines(path)) == 1


def test_items_without_an_id_raise_type_error(path: Path) -> None:
    with (
        AgentResume(JsonlStore(path)).resume_or_start("job") as s,
        pytest.raises(TypeError, match="key="),
    ):
        list(s.remaining([3.5]))


@pytest.mark.parametrize("bad", ["", "\ud800", "a\udfffb"])
def test_empty_ids_and_lone_surrogates_raise_value_error(path: Path, bad: str) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(ArgumentValueError) as info:
            s.mark_done(bad)
        assert info.value.parameter == "item_id"
        with pytest.raises(ValueError, match="item ID"):
            list(s.remaining([bad]))
    assert len(lines(path)) == 1


def test_an_int_id_too_long_to_write_as_text_is_a_typed_error(path: Path) -> None:
    # An int of more than 4,300 digits raised Python's bare "Exceeds the limit" ValueError.
    huge = 10**5000
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for call in (s.mark_done, s.is_done, lambda i: list(s.remaining([i], key=int))):
            with pytest.raises(ArgumentValueError, match=r"about 5,001 digits.*as a str"):
                call(huge)
        as_text = "1" + "0" * 5000
        s.mark_done(as_text)  # as a str it is an ID like any other
        assert s.is_done(as_text)


@pytest.mark.parametrize(
    "item_id",
    [
        "line\nbreak",
        "emoji 🙂",
        "sep\u2028para\u2029",
        'quote"back\\slash',
        "tab\t\x00nul",
        "x" * 10_000,
    ],
)
def test_any_other_string_round_trips_exactly(path: Path, item_id: str) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        s.mark_done(item_id, result=item_id)
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done(item_id)
        assert list(s.remaining([item_id, "other"])) == ["other"]
        assert dict(s.results()) == {item_id: item_id}


def test_duplicates_are_yielded_once_counted_and_warned_once(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.warns(DuplicateItemWarning, match="item-001") as record:
            out = list(
                s.remaining(["item-000", "item-001", "item-001", "item-002", "item-001", 7, "7"])
            )
        assert out == ["item-000", "item-001", "item-002", 7]
        assert len(record) == 1
        assert s.stats.duplicates == 3


def _shaped(items: list[str], shape: str) -> Iterable[str]:
    if shape == "list":
        return items
    if shape == "tuple":
        return tuple(items)
    return (item for item in items)


def _run_marking(s: Session, items: Iterable[str]) -> list[str]:
    out = []
    for item in s.remaining(items):
        out.append(item)
        s.mark_done(item)
    return out


@pytest.mark.parametrize("shape", ["list", "tuple", "generator", "fingerprinted"])
@pytest.mark.parametrize("gap", [1, 20_000])
def test_repeats_are_counted_when_the_caller_marks_inside_the_loop(
    path: Path, shape: str, gap: int
) -> None:
    # A repeat of an item the loop already marked done is still a repeat, in
    # the same batch or in a later one (lists are read 16,384 IDs at a time).
    filler = [f"fill-{n:06d}" for n in range(gap)]
    items = ["item-000", "item-001", "item-002", *filler, "item-001", "item-002", "item-001"]
    fingerprint = shape == "fingerprinted"
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=fingerprint) as s:
        with pytest.warns(DuplicateItemWarning, match="item-001") as record:
            out = _run_marking(s, _shaped(items, "list" if fingerprint else shape))
        assert out == ["item-000", "item-001", "item-002", *filler]
        assert len(record) == 1
        assert record[0].filename == __file__
        assert s.stats.duplicates == 3


def test_a_repeat_of_an_item_done_before_the_pass_is_not_a_duplicate(path: Path) -> None:
    # Decision (docs/concepts.md): duplicates count repeats among the items the
    # pass found still to do; an item done in an earlier session is skipped each time.
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
        for shape in ("list", "generator"):
            assert list(s.remaining(_shaped(["a", "b", "a"], shape))) == ["b"]
        assert s.stats.duplicates == 0


# -- mark_done -----------------------------------------------------------------------------


def test_mark_done_is_idempotent_and_says_so(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.mark_done("a") is True
        assert s.mark_done("a") is False
        assert s.stats.done == 1
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.mark_done("a") is False
    assert [r["id"] for r in lines(path)[1:]] == ["a"]


def test_mark_done_records_before_returning(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
        assert lines(path)[-1]["id"] == "a"


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({b"bytes"}, TypeError),
        (object(), TypeError),
        ({"x": float("nan")}, ValueError),
        ([float("inf")], ValueError),
        ({"k": "\udc80"}, ValueError),
        ({(1, 2): "tuple key"}, TypeError),
    ],
)
def test_unencodable_results_are_refused_before_anything_is_written(
    path: Path, result: object, error: type[Exception]
) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        before = path.read_bytes()
        with pytest.raises(error, match="result"):
            s.mark_done("a", result=result)
        assert path.read_bytes() == before
        assert not s.is_done("a")
        assert s.mark_done("a") is True


def test_json_store_drops_results_unchecked_with_a_one_time_hint(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A result the store would never keep does not fail the item (paid for by then).
    with caplog.at_level(logging.WARNING, "agent_resume"):
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            assert s.mark_done("a", result={"big": "result"}) is True
            assert s.mark_done("b", result={"x": float("nan"), "y": object()}) is True
            assert list(s.results()) == []
    assert [line.get("id") for line in lines(path)[1:]] == ["a", "b"]
    assert not any("result" in line for line in lines(path))
    hints = [r for r in caplog.records if "ResultJsonlStore" in r.getMessage()]
    assert len(hints) == 1 and "JsonlStore does not keep results" in hints[0].getMessage()


def test_a_failure_keeps_a_long_error_cut_and_an_unprintable_one_by_its_type(path: Path) -> None:
    # An exception quoting a whole response made every failure record as long;
    # one whose str() raised stopped the run that recorded it.
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.mark_failed("a", ValueError("x" * 20_000)) is True
        assert s.mark_failed("b", Unprintable()) is True
        assert s.mark_failed("c", "y" * 9_000) is True
    errors = {line["id"]: line["error"] for line in lines(path) if "error" in line}
    assert errors["a"] == "ValueError: " + "x" * (8000 - 12) + "... (12012 more characters)"
    assert errors["b"] == "Unprintable: <str() of the exception raised RuntimeError>"
    assert errors["c"] == "y" * 8000 + "... (1000 more characters)"


def test_result_store_keeps_results_latest_per_item(path: Path) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a", result={"n": 1, "text": "é"})
        s.mark_done("b", result=[1, 2, None])
        s.mark_done("c")
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert dict(s.results()) == {"a": {"n": 1, "text": "é"}, "b": [1, 2, None], "c": None}


def test_usage_and_stop_are_kept_with_the_completion(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a", usage={"in": 10, "out": 2}, stop="max_turns")
    record = lines(path)[1]
    assert record["usage"] == {"in": 10, "out": 2}
    assert record["stop"] == "max_turns"


def test_usage_of_a_wrong_type_is_refused(path: Path) -> None:
    with (
        AgentResume(JsonlStore(path)).resume_or_start("job") as s,
        pytest.raises(ArgumentTypeError, match="usage"),
    ):
        s.mark_done("a", usage=42)


# -- failures, attempts, quarantine ------------------------------------------------------


def test_a_failed_item_is_offered_again_until_max_attempts(path: Path) -> None:
    for attempt in range(1, 4):
        with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=3) as s:
            assert list(s.remaining(["a", "b"])) == ["a", "b"]
            assert s.mark_failed("a", RuntimeError(f"boom {attempt}")) is True
            assert s.attempts("a") == attempt
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=3) as s:
        assert list(s.remaining(["a", "b"])) == ["b"]
        assert s.is_quarantined("a")
        assert s.quarantined() == ["a"]
        assert s.stats.quarantined == 1
    failures = [r for r in lines(path) if r.get("status") == "failed"]
    assert [r["attempt"] for r in failures] == [1, 2, 3]
    assert failures[-1]["error"] == "RuntimeError: boom 3"
    assert all(r["retryable"] is True for r in failures)


def test_a_higher_max_attempts_lets_a_quarantined_item_run_again(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=1) as s:
        s.mark_failed("a", "nope")
        assert list(s.remaining(["a"])) == []
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=2) as s:
        assert list(s.remaining(["a"])) == ["a"]


def test_a_non_retryable_failure_quarantines_at_once(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_failed("a", ValueError("bad input"), retryable=False)
        assert s.is_quarantined("a")
        assert list(s.remaining(["a", "b"])) == ["b"]
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=10) as s:
        assert s.is_quarantined("a")


def test_release_lets_a_quarantined_item_run_again(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=1) as s:
        s.mark_failed("a", "x")
        s.mark_failed("b", "x")
        assert s.retry(["a", "zzz"]) == ["a"]
        assert list(s.remaining(["a", "b"])) == ["a"]
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=1) as s:
        assert list(s.remaining(["a", "b"])) == ["a"]
        assert s.attempts("a") == 0


def test_a_failure_then_a_success_is_done_with_its_attempt_number(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_failed("a", "first")
        s.mark_done("a")
        assert s.mark_failed("a", "late") is False
        assert not s.is_quarantined("a")
    assert lines(path)[-1] == {"id": "a", "ts": lines(path)[-1]["ts"], "attempt": 2}


def test_error_of_a_wrong_type_is_refused(path: Path) -> None:
    with (
        AgentResume(JsonlStore(path)).resume_or_start("job") as s,
        pytest.raises(ArgumentTypeError, match="error"),
    ):
        s.mark_failed("a", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (0, ArgumentValueError),
        (-1, ArgumentValueError),
        (1.5, ArgumentTypeError),
        ("3", ArgumentTypeError),
        (True, ArgumentTypeError),
    ],
)
def test_max_attempts_is_validated(path: Path, bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_attempts") as info:
        AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=bad)  # type: ignore[arg-type]
    assert str(bad) in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"on_change": "sometimes"}, "on_change"),
        ({"fingerprint": 3}, "fingerprint"),
    ],
)
def test_other_settings_are_validated(
    path: Path, kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises((ArgumentValueError, ArgumentTypeError), match=parameter):
        AgentResume(JsonlStore(path)).resume_or_start("job", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", ArgumentValueError),
        ("\ud800", ArgumentValueError),
        (None, ArgumentTypeError),
        (5, ArgumentTypeError),
    ],
)
def test_job_id_is_validated(path: Path, bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="job_id"):
        AgentResume(JsonlStore(path)).resume_or_start(bad)  # type: ignore[arg-type]


# -- the job's identity ----------------------------------------------------------------------


def test_a_store_holding_another_job_refuses_naming_both(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job-a") as s:
        s.mark_done("x")
    with pytest.raises(JobMismatchError, match="job-a") as info:
        AgentResume(JsonlStore(path)).resume_or_start("job-b")
    assert "job-b" in str(info.value)
    assert (info.value.expected, info.value.found) == ("job-b", "job-a")
    with AgentResume(JsonlStore(path)).resume_or_start("job-a") as s:
        assert s.is_done("x")


def test_in_memory_store_keeps_its_job_across_sessions() -> None:
    store = InMemoryStore()
    with AgentResume(store).resume_or_start("j") as s:
        s.mark_done("a", result=1)
    with AgentResume(store).resume_or_start("j") as s:
        assert list(s.remaining(["a", "b"])) == ["b"]
        assert dict(s.results()) == {"a": 1}
    with pytest.raises(JobMismatchError):
        AgentResume(store).resume_or_start("other")


# -- the context manager ---------------------------------------------------------------------


def test_leaving_the_block_closes_the_session(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
    assert s.closed
    with pytest.raises(StoreClosedError):
        s.mark_done("b")
    with pytest.raises(StoreClosedError):
        list(s.remaining(["b"]))
    s.close()  # closing twice is harmless
    assert [r["id"] for r in lines(path)[1:]] == ["a"]


def test_an_exception_in_the_block_propagates_and_keeps_records(path: Path) -> None:
    class Boom(Exception):
        pass

    err = Boom("x")
    with pytest.raises(Boom) as info:
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            s.mark_done("a")
            s.mark_done("b")
            raise err
    assert info.value is err
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert list(s.remaining(["a", "b", "c"])) == ["c"]


def test_a_keyboard_interrupt_in_the_block_keeps_records(path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            s.mark_done("a")
            raise KeyboardInterrupt
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("a")


def test_a_generator_abandoned_mid_way_leaves_the_session_usable(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for item in s.remaining(ids(5)):
            s.mark_done(item)
            break
        assert list(s.remaining(ids(5))) == ids(5)[1:]


def test_a_session_can_be_used_without_with(path: Path) -> None:
    s = AgentResume(JsonlStore(path)).resume_or_start("job")
    s.mark_done("a")
    s.close()
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s2:
        assert s2.is_done("a")


# -- fingerprints --------------------------------------------------------------------------


def test_fingerprints_rerun_changed_items_by_default(path: Path) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        for doc in s.remaining([Doc("a", "v1"), Doc("b", "v1")]):
            s.mark_done(doc.id, result=doc.body)
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        changed = list(s.remaining([Doc("a", "v2"), Doc("b", "v1")]))
        assert changed == [Doc("a", "v2")]
        assert s.stats.changed == 1
        assert s.mark_done("a", result="v2") is True
        assert s.mark_done("a", result="v3") is False
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        assert list(s.remaining([Doc("a", "v2"), Doc("b", "v1")])) == []
        assert dict(s.results()) == {"a": "v2", "b": "v1"}


def test_fingerprints_keep_policy_skips_changed_items(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        for doc in s.remaining([{"id": "a", "v": 1}]):
            s.mark_done(doc["id"])
    with AgentResume(JsonlStore(path)).resume_or_start(
        "job", fingerprint=True, on_change="keep"
    ) as s:
        assert list(s.remaining([{"id": "a", "v": 2}])) == []
        assert s.stats.changed == 1


def test_fingerprints_error_policy_refuses(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        for doc in s.remaining([{"id": "a", "v": 1}]):
            s.mark_done(doc["id"])
    with AgentResume(JsonlStore(path)).resume_or_start(
        "job", fingerprint=True, on_change="error"
    ) as s:
        with pytest.raises(ItemChangedError, match="'a'") as info:
            list(s.remaining([{"id": "a", "v": 2}]))
        assert info.value.item_id == "a"
        assert list(s.remaining([{"id": "a", "v": 1}])) == []


def test_fingerprint_callable_is_used_and_checked(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=lambda d: d["rev"]) as s:
        for doc in s.remaining([{"id": "a", "rev": "r1", "noise": 1}]):
            s.mark_done(doc["id"])
    assert lines(path)[1]["fp"] == "r1"
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=lambda d: d["rev"]) as s:
        assert list(s.remaining([{"id": "a", "rev": "r1", "noise": 2}])) == []
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=lambda d: 5) as s:  # type: ignore[arg-type,return-value]
        with pytest.raises(ArgumentTypeError, match="fingerprint"):
            list(s.remaining([{"id": "b"}]))


def test_rows_of_a_pandas_frame_are_fingerprinted(path: Path) -> None:
    # df.itertuples() gives namedtuples of numpy values.
    import pandas as pd

    def frame(score: float) -> list[object]:
        df = pd.DataFrame({"id": [7], "text": ["text"], "score": [score]})
        return list(df.itertuples())

    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        for item in s.remaining(frame(0.5)):
            s.mark_done(item.id)
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        assert list(s.remaining(frame(0.5))) == []
        assert [item.score for item in s.remaining(frame(0.75))] == [0.75]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("items.jsonl", "not a str \\('items.jsonl'\\), whose items would be its characters"),
        (b"abc", "not a bytes"),
        (None, "must be an iterable of items, such as a list or a generator \\(got NoneType"),
        (5, "\\(got int 5\\)"),
    ],
)
def test_an_input_that_is_not_a_collection_of_items_is_refused(
    path: Path, items: object, message: str
) -> None:
    # A file name passed as the items was run character by character: 'i', 't', ...
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(ArgumentTypeError, match="`items` .*" + message):
            s.remaining(items)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match="`items`"):
            s.count_left(items)  # type: ignore[arg-type]
        assert s.stats.done == 0


def test_a_field_name_as_the_key_reads_that_field(path: Path) -> None:
    # key="doc_id", as the CLI's --key takes it, was called and raised a bare TypeError.
    @dataclass
    class Doc:
        doc_id: str

    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("b")
        assert list(s.remaining([{"doc_id": "a"}, {"doc_id": "b"}], key="doc_id")) == [
            {"doc_id": "a"}
        ]
        assert list(s.remaining([Doc("c"), Doc("b")], key="doc_id")) == [Doc("c")]
        assert s.count_left([{"doc_id": "a"}, {"doc_id": "b"}], key="doc_id") == 1
        with pytest.raises(ArgumentTypeError, match="no field 'doc_id', which key='doc_id'"):
            list(s.remaining([{"id": "x"}], key="doc_id"))
        for bad in ("", 5, b"doc_id"):
            with pytest.raises(ArgumentTypeError, match=r"`key` must be a function .* or the name"):
                s.remaining([{"doc_id": "a"}], key=bad)  # type: ignore[arg-type]


def test_a_pandas_frame_is_refused_with_the_way_to_its_rows(path: Path) -> None:
    # Iterating a DataFrame gives its column names, which passed for string IDs.
    import pandas as pd

    df = pd.DataFrame({"id": [1, 2], "text": ["a", "b"]})
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(ArgumentTypeError, match=r"column names.*to_dict\('records'\)"):
            s.remaining(df)
        assert [row["id"] for row in s.remaining(df.to_dict("records"))] == [1, 2]


def test_database_rows_with_dates_and_decimals_are_fingerprinted(path: Path) -> None:
    # A row read from a database holds datetimes and Decimals (psycopg, sqlite3 converters).
    import datetime
    import decimal

    def rows(price: str) -> list[dict[str, object]]:
        when = datetime.datetime(2026, 5, 24, 7, 30)
        return [{"id": 1, "updated": when, "price": decimal.Decimal(price)}]

    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        for item in s.remaining(rows("1.50")):
            s.mark_done(item["id"])
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        assert list(s.remaining(rows("1.50"))) == []
        assert [item["price"] for item in s.remaining(rows("2.00"))] == [decimal.Decimal("2.00")]


def test_an_item_holding_a_set_has_the_same_fingerprint_in_every_process() -> None:
    # A set of strings iterates in an order that changes with the hash seed: as
    # a plain list, the item would look changed to the next run, and run again.
    import subprocess
    import sys

    code = (
        "from agent_resume._fingerprint import content_fingerprint as f; "
        "print(f({'id': 1, 'tags': {'alpha', 'beta', 'gamma', 'delta', 'epsilon', 3}}))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(1, 6)
    }
    assert len(seen) == 1


def test_unhashable_items_name_the_fingerprint_parameter(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=True) as s:
        with pytest.raises(ArgumentTypeError, match="fingerprint="):
            list(s.remaining([{"id": "a", "blob": object()}]))


def test_duplicates_across_batches_of_a_long_list_are_yielded_once(path: Path) -> None:
    items = [f"k{i}" for i in range(10_000)] + ["k5", "k9000", "fresh", "fresh"]
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("k1")
        with pytest.warns(DuplicateItemWarning):
            out = list(s.remaining(items))
        assert out == [f"k{i}" for i in range(10_000) if i != 1] + ["fresh"]
        assert s.stats.duplicates == 3


@pytest.mark.parametrize("make", [list, iter], ids=["batched", "one-by-one"])
def test_the_duplicate_warning_points_at_the_callers_loop(path: Path, make: object) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.warns(DuplicateItemWarning) as record:
            list(s.remaining(make(["a", "a"])))  # type: ignore[operator]
    assert record[0].filename == __file__


# -- count_left and aremaining -----------------------------------------------------------


def test_count_left_counts_distinct_items_neither_done_nor_quarantined(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=1) as s:
        s.mark_done("a")
        s.mark_failed("b", "boom")  # quarantined at once with max_attempts=1
        items = ["a", "b", "c", "d", "c"]
        assert s.count_left(items) == 2
        assert s.count_left(tuple(items)) == 2
        assert s.count_left(iter(items)) is None  # an iterator cannot be read twice
        assert s.stats.duplicates == 0  # counting warns about nothing
        assert list(s.remaining(["c", "d"])) == ["c", "d"]  # and claims nothing


def test_aremaining_yields_what_remaining_yields(path: Path) -> None:
    import asyncio

    async def collect(s: Session, items: Iterable[str]) -> list[str]:
        return [item async for item in s.aremaining(items)]

    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("b")
        for shape in ("list", "generator"):
            got = asyncio.run(collect(s, _shaped(["a", "b", "c"], shape)))
            assert got == list(s.remaining(_shaped(["a", "b", "c"], shape))) == ["a", "c"]
