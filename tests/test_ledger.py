from __future__ import annotations

import csv
import io
import json
import random
from typing import Any

import pytest

from agent_resume._accounting._ledger import CSV_FIELDS, ItemUsage, Ledger
from agent_resume._accounting._usage import Usage
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._records import completion_line, failure_line, retry_line

GPT = {"model": "gpt-4o"}


def u(**fields: Any) -> dict[str, Any]:
    return Usage(**fields).to_dict()


RECORDS: list[dict[str, Any]] = [
    {"agent_resume": 1, "job_id": "job", "created": 1},
    {"run": 1, "event": "start", "ts": 1},
    {
        "id": "a",
        "ts": 2,
        "status": "failed",
        "error": "RateLimitError: slow down",
        "attempt": 1,
        "retryable": True,
        "usage": u(input_tokens=100, output_tokens=0, calls=1, cost_usd=0.001, **GPT),
    },
    {
        "id": "a",
        "ts": 3,
        "usage": u(input_tokens=100, output_tokens=50, calls=1, cost_usd=0.002, **GPT),
    },
    {"id": "b", "ts": 4, "usage": u(input_tokens=10, output_tokens=5, calls=2, cost_usd=0.0005)},
    {
        "id": "c",
        "ts": 5,
        "status": "failed",
        "error": "ValueError: bad",
        "attempt": 1,
        "retryable": False,
        "usage": u(input_tokens=7, cache_read_tokens=3, reasoning_tokens=1, calls=1, **GPT),
    },
    {"id": "c", "ts": 6, "status": "retry"},
    {"id": "d", "ts": 7},
    {"run": 1, "event": "end", "ts": 8, "report": {"done": 3}},
]


def test_items_sum_failed_attempts_and_completions() -> None:
    ledger = Ledger.from_records(RECORDS)
    assert len(ledger) == 4
    a = ledger.item("a")
    assert a is not None
    assert (a.item_id, a.status, a.records) == ("a", "done", 2)
    assert a.usage.cost_usd == pytest.approx(0.001 + 0.002)
    assert a.usage == Usage(
        input_tokens=200, output_tokens=50, calls=2, cost_usd=a.usage.cost_usd, model="gpt-4o"
    )
    c = ledger.item("c")
    assert c is not None
    assert c.status == "failed"
    assert c.usage.cost_usd is None
    assert c.records == 1
    d = ledger.item("d")
    assert d == ItemUsage("d", "done", Usage(), 1)
    assert ledger.item("zzz") is None
    assert [item.item_id for item in ledger.items()] == ["a", "b", "c", "d"]


def test_run_total_is_unknown_when_any_cost_is() -> None:
    total = Ledger.from_records(RECORDS).total
    assert total.input_tokens == 100 + 100 + 10 + 7
    assert total.output_tokens == 55
    assert total.cache_read_tokens == 3
    assert total.reasoning_tokens == 1
    assert total.calls == 5
    assert total.model == "mixed"
    assert total.cost_usd is None


def test_run_total_adds_known_costs() -> None:
    ledger = Ledger.from_records(RECORDS[:5])
    assert ledger.total.cost_usd == pytest.approx(0.0035)
    assert Ledger().total == Usage()


def test_other_records_are_skipped() -> None:
    ledger = Ledger()
    assert not ledger.add({"agent_resume": 1, "job_id": "j", "created": 0})
    assert not ledger.add({"run": 2, "event": "start"})
    assert not ledger.add({"id": "x", "ts": 1, "status": "retry"})
    assert not ledger.add({"id": "x", "ts": 1, "status": "something-new"})
    assert ledger.add({"id": "x", "ts": 1, "status": "done"})
    assert len(ledger) == 1


def test_a_failure_after_a_completion_keeps_the_item_done() -> None:
    ledger = Ledger.from_records(
        [
            {"id": "x", "ts": 1, "usage": u(calls=1, cost_usd=0.5)},
            {"id": "x", "ts": 2, "status": "failed", "usage": u(calls=1, cost_usd=0.25)},
        ]
    )
    item = ledger.item("x")
    assert item is not None
    assert item.status == "done"
    assert item.usage == Usage(calls=2, cost_usd=0.75)


def test_int_ids_name_the_same_item_as_their_string() -> None:
    ledger = Ledger.from_records([{"id": 7, "ts": 1, "usage": {"calls": 1}}])
    assert ledger.item(7) == ledger.item("7") == ItemUsage("7", "done", Usage(calls=1), 1)


def test_malformed_usage_is_refused_naming_the_item() -> None:
    with pytest.raises(ArgumentValueError, match="'bad-item'"):
        Ledger.from_records([{"id": "bad-item", "ts": 1, "usage": {"in": -5}}])
    with pytest.raises(ArgumentValueError, match="'bad-item'"):
        Ledger.from_records([{"id": "bad-item", "ts": 1, "usage": [1, 2]}])
    with pytest.raises(ArgumentTypeError, match="mapping"):
        Ledger().add(["id", "x"])  # type: ignore[arg-type]


def test_rows_and_csv() -> None:
    ledger = Ledger.from_records(RECORDS)
    rows = ledger.rows()
    assert list(rows[0]) == list(CSV_FIELDS)
    assert rows[1] == {
        "item_id": "b",
        "status": "done",
        "calls": 2,
        "input": 10,
        "output": 5,
        "cache_read": 0,
        "cache_write": 0,
        "reasoning": 0,
        "cost_usd": 0.0005,
    }
    assert rows[2]["cost_usd"] is None
    out = io.StringIO(newline="")
    ledger.write_csv(out)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == list(CSV_FIELDS)
    assert table[2] == ["b", "done", "2", "10", "5", "0", "0", "0", "0.0005"]
    assert table[3][-1] == ""  # unknown cost: an empty cell, not 0
    assert table[-1][:3] == ["", "total", "5"]
    assert len(table) == 1 + 4 + 1
    out = io.StringIO(newline="")
    ledger.write_csv(out, total=False)
    assert len(list(csv.reader(io.StringIO(out.getvalue())))) == 1 + 4


def test_write_csv_rounds_the_float_noise_out_of_costs() -> None:
    records = [
        {"id": "a", "ts": 1, "usage": {"calls": 1, "cost": 0.1}},
        {"id": "b", "ts": 1, "usage": {"calls": 1, "cost": 0.2}},
    ]
    out = io.StringIO(newline="")
    Ledger.from_records(records).write_csv(out)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert 0.1 + 0.2 == 0.30000000000000004  # what the total row showed
    assert [row[-1] for row in table[1:]] == ["0.1", "0.2", "0.3"]


def test_by_model() -> None:
    by_model = Ledger.from_records(RECORDS).by_model()
    assert list(by_model) == ["gpt-4o", None]
    assert by_model["gpt-4o"].calls == 3
    assert by_model[None] == Usage(input_tokens=10, output_tokens=5, calls=2, cost_usd=0.0005)


def test_reads_the_lines_the_checkpoint_writes() -> None:
    first = Usage(input_tokens=120, output_tokens=40, calls=1, cost_usd=0.0007, model="gpt-4o")
    second = Usage(input_tokens=80, output_tokens=0, calls=1, cost_usd=0.0002, model="gpt-4o")
    lines = [
        failure_line("item-1", 10, "TimeoutError: slow", 1, True, usage=second.to_dict()),
        completion_line("item-1", 11, {"usage": first.to_dict()}),
        retry_line("item-2", 12),
        completion_line("item-2", 13),
    ]
    ledger = Ledger.from_records(json.loads(line) for line in lines)
    item = ledger.item("item-1")
    assert item is not None
    assert item.usage == second + first
    assert ledger.total == second + first


@pytest.mark.parametrize(
    ("seed", "spread", "costed"), [(12, 9, False), (13, 99, True), (14, 999, True), (15, 2, False)]
)
def test_sums_are_those_of_usage_addition_in_record_order(
    seed: int, spread: int, costed: bool
) -> None:
    # The ledger keeps counters, not Usage values: its figures must still be exactly
    # the left fold of Usage addition (float order, mixed texts, unknown costs, empties),
    # over items of many records each and of one (the total is summed column by column).
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for _ in range(400 if spread < 100 else 3000):
        usage: dict[str, Any] = {}
        for key in ("in", "out", "cache_read", "calls", "reasoning", "web_searches"):
            if rng.random() < 0.6:
                usage[key] = rng.choice([0, 1, 7, 123456])
        if costed or rng.random() < 0.85:  # costed: every cost known, so the total's is a float
            usage["cost"] = rng.choice([0.0, 0.1, 0.2, 1e-7, 3, 0.30000000000000004])
        if rng.random() < 0.7:
            usage["model"] = rng.choice(["a", "b", ""])
        if rng.random() < 0.2:
            usage["tier"] = "batch"
        record: dict[str, Any] = {"id": str(rng.randint(0, spread)), "ts": 1}
        if rng.random() < 0.3:
            record["status"] = "failed"
        if costed or rng.random() < 0.9:
            record["usage"] = usage
        records.append(record)
    expected: dict[str, Usage] = {}
    for record in records:
        one = Usage.from_dict(record.get("usage", {}))
        expected[record["id"]] = expected.get(record["id"], Usage()) + one
    ledger = Ledger.from_records(records)
    assert {item.item_id: item.usage for item in ledger.items()} == expected
    assert [item.item_id for item in ledger.items()] == list(expected)
    total = sum(expected.values(), Usage())
    assert ledger.total == total
    assert ledger.total.cost_usd == total.cost_usd  # the same float, not merely close
    assert (total.cost_usd is not None) == costed
    by_model: dict[str | None, Usage] = {}
    for usage_of_item in expected.values():
        model = usage_of_item.model
        by_model[model] = by_model.get(model, Usage()) + usage_of_item
    assert ledger.by_model() == dict(
        sorted(by_model.items(), key=lambda pair: (pair[0] is None, pair[0] or ""))
    )


@pytest.mark.parametrize(
    "usage",
    [{"in": True}, {"in": -1}, {"in": 1.5}, {"cost": "x"}, {"cost": float("nan")}, {"model": 3}],
)
def test_a_malformed_usage_is_refused_naming_the_item(usage: dict[str, Any]) -> None:
    with pytest.raises(ArgumentValueError, match="'item-7'"):
        Ledger.from_records([{"id": "item-7", "ts": 1, "usage": usage}])
    with pytest.raises(ArgumentValueError, match="a call of item 'item-7'"):
        Ledger.from_records([{"call": "item-7", "a": "t", "usage": usage}])


@pytest.mark.parametrize(
    "usage",
    [{"in": True}, {"in": -1}, {"in": 1.5}, {"cost": "x"}, {"cost": float("nan")}, [1], "x"],
)
def test_a_ledger_that_skips_malformed_usage_counts_the_record_without_it(usage: Any) -> None:
    sound = {"in": 10, "out": 2, "calls": 1, "cost": 0.5, "model": "m"}
    records = [
        {"id": "a", "ts": 1, "usage": sound},
        {"id": "b", "ts": 1, "status": "failed", "error": "e", "usage": sound},
        {"id": "b", "ts": 2, "usage": usage},
        {"call": "c", "a": "t", "ts": 3, "usage": usage},
        {"id": "d", "ts": 4, "status": "failed", "error": "e", "usage": usage},
    ]
    ledger = Ledger(skip_malformed=True)
    for record in records:
        assert ledger.add(record) is True
    assert ledger.malformed == ["b", "c", "d"]
    strict = Ledger.from_records(records[:2])
    assert (
        ledger.total
        == strict.total
        == Usage(input_tokens=20, output_tokens=4, calls=2, cost_usd=1.0, model="m")
    )
    assert ledger.item("b") == ItemUsage(
        "b", "done", Usage(input_tokens=10, output_tokens=2, calls=1, cost_usd=0.5, model="m"), 2
    )
    assert ledger.item("c") == ItemUsage("c", "interrupted", Usage(), 1)
    assert ledger.item("d") == ItemUsage("d", "failed", Usage(), 1)
    assert not ledger.lower_bound  # that is about runs; `malformed` says the rest
    with pytest.raises(ArgumentValueError, match="'b'"):
        Ledger.from_records(records)  # the default refuses, as before
    assert Ledger.from_records(records[:2]).malformed == []
    built = Ledger.from_records(records, skip_malformed=True)
    assert (built.malformed, built.total) == (ledger.malformed, ledger.total)


def test_skip_malformed_must_be_a_bool() -> None:
    with pytest.raises(ArgumentTypeError, match="`skip_malformed` must be a bool"):
        Ledger(skip_malformed=1)  # type: ignore[arg-type]


def test_an_outcome_without_usage_covers_no_call() -> None:
    # A killed attempt made a call; the next one made none and recorded no usage:
    # the call still counts, once.
    call = {"in": 40, "out": 4, "calls": 1, "cost": 0.3}
    records = [
        {"call": "x", "a": "killed", "ts": 1, "usage": call},
        {"id": "x", "ts": 2, "turns": 0, "seconds": 0.0},
    ]
    ledger = Ledger.from_records(records)
    assert ledger.total.calls == 1
    assert ledger.total.cost_usd == pytest.approx(0.3)
    # A usage without "a" (written by hand) still covers the item's latest calls.
    by_hand = [records[0], {"id": "x", "ts": 2, "usage": call}]
    assert Ledger.from_records(by_hand).total.calls == 1


def test_a_no_op_run_writes_completions_without_usage(tmp_path: Any) -> None:
    from agent_resume import JsonlStore, ResumableRun, RunConfig

    path = tmp_path / "j.jsonl"
    config = RunConfig(job_id="j", store=JsonlStore(path), progress=False)
    report = ResumableRun(config).run(lambda item, ctx: None, ["a", "b"])
    assert report.done == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    done = [line for line in lines if "id" in line]
    assert [sorted(line) for line in done] == [["id", "seconds", "ts", "turns"]] * 2


def test_a_price_table_reprices_the_models_it_owns_and_the_unknown_costs_only() -> None:
    # Records read by the ledger's plain-types path, with a table: each model is
    # looked up once, and the answer must not leak from one model to another.
    from agent_resume import PriceTable

    table = PriceTable({"house-llm": {"input": 1.0, "output": 2.0}}, genai_prices=False)
    records = [
        {
            "id": "a",
            "ts": 1,
            "usage": {"in": 1_000_000, "calls": 1, "cost": 9.0, "model": "house-llm"},
        },
        {
            "id": "b",
            "ts": 1,
            "usage": {"in": 1_000_000, "calls": 1, "cost": 9.0, "model": "gpt-4o"},
        },
        {"id": "c", "ts": 1, "usage": {"in": 1_000_000, "calls": 1, "model": "gpt-4o"}},
        {
            "id": "d",
            "ts": 1,
            "usage": {"out": 1_000_000, "calls": 1, "cost": 9.0, "model": "house-llm"},
        },
        {"id": "e", "ts": 1, "usage": {"in": 5, "calls": 1, "cost": 0.5}},
    ]
    ledger = Ledger.from_records(records, prices=table)
    costs = {row["item_id"]: row["cost_usd"] for row in ledger.rows()}
    # Owned: priced again by your table; known cost of another model: kept;
    # unknown cost: priced by the table's other sources; no model: kept.
    assert costs == {"a": 1.0, "b": 9.0, "c": pytest.approx(2.5), "d": 2.0, "e": 0.5}
    plain = Ledger.from_records(records)
    assert {row["item_id"]: row["cost_usd"] for row in plain.rows()}["a"] == 9.0


def test_the_collector_is_put_back_as_it_was() -> None:
    import gc

    from agent_resume._records import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ZeroDivisionError), collector_paused():
            1 / 0  # noqa: B018
        assert not gc.isenabled()  # left disabled, as the caller had it
    finally:
        gc.enable()


def test_costs_whose_sum_overflows_are_unknown_not_an_error() -> None:
    # Two hand-damaged records of 1e308 each: before, summing them raised
    # ("`cost_usd` must be finite") and `status`, `report` and a run with a
    # job budget died on the file.
    records = [
        {"id": "a", "ts": 1, "usage": {"in": 1, "calls": 1, "cost": 1e308, "model": "m"}},
        {"id": "b", "ts": 1, "usage": {"in": 1, "calls": 1, "cost": 1e308, "model": "m"}},
        {"id": "a", "ts": 2, "status": "failed", "usage": {"in": 1, "cost": 1e308, "model": "m"}},
    ]
    ledger = Ledger.from_records(records)
    assert (ledger.total.cost_usd, ledger.total.input_tokens) == (None, 3)
    assert ledger.by_model()["m"].cost_usd is None
    costs = {row["item_id"]: row["cost_usd"] for row in ledger.rows()}
    assert costs == {"a": None, "b": 1e308}
    assert (Usage(cost_usd=1e308, calls=1) + Usage(cost_usd=1e308, calls=1)).cost_usd is None
