"""Reading a JSONL checkpoint without its completions' bodies (``JsonlStore.skim_records``),
and a run's per-item spending read that way (``JobSpent`` without a job total)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from agent_resume import JsonlStore
from agent_resume._run._spent import JobSpent
from agent_resume.stores import SkimmingStore, SqliteStore

HEADER = '{"agent_resume": 1, "job_id": "j", "created": 1}'


def _write(path: Path, lines: list[str], tail: str = "") -> None:
    path.write_text("\n".join([HEADER, *lines]) + "\n" + tail, encoding="utf-8")


def test_skim_gives_pattern_completions_as_their_id_and_everything_else_whole(
    tmp_path: Path,
) -> None:
    # (line, what a resume makes of it): "id" when it reads the line by its pattern
    # (then skimmed to its ID), "whole" when it decodes the line, "bad" when it skips it.
    lines = [
        ('{"id": "a", "ts": 1}', "id"),
        ('{"id": "b", "ts": 1, "turns": 2, "seconds": 0.5, "usage": {"in": 5, "calls": 1}}', "id"),
        ('{"id": "c", "ts": 1, "fp": "ab12", "usage": {"in": 5}}', "id"),
        ('{"id": "ü-é", "ts": 1, "result": {"text": "x"}}', "id"),
        ('{"id": "d", "ts": 1, "result": {"status": "failed"}}', "whole"),  # names "status"
        ('{"id": "e\\"q", "ts": 1}', "whole"),  # an escape in the ID
        ('{"id": 7, "ts": 1}', "whole"),  # an integer ID, read whole (and made a str)
        ('{"id": "f", "ts": 1, "status": "failed", "error": "x", "usage": {"in": 1}}', "whole"),
        ('{"id": "f", "ts": 2, "status": "retry"}', "whole"),
        ('{"call": "g", "a": "k1", "ts": 1, "usage": {"in": 3, "calls": 1}}', "whole"),
        ('{"run": "start", "ts": 1}', "whole"),
        ("this line is not JSON", "bad"),
        ("   ", "bad"),
        # A usage cut short: a resume reads the head and counts the item done,
        # as the skim does; a full read skips the line as corrupt.
        ('{"id": "h", "ts": 1, "usage": {"in": 5}', "id"),
    ]
    path = tmp_path / "c.jsonl"
    _write(path, [line for line, _ in lines], tail='{"id": "torn", "ts"')
    store = JsonlStore(path)
    assert isinstance(store, SkimmingStore)
    whole = list(store.iter_records())  # bad lines and the torn tail skipped
    skimmed = list(store.skim_records())
    expected_whole = [json.loads(line) for line, kind in lines[:-1] if kind != "bad"]
    expected_whole[6]["id"] = "7"
    assert whole == expected_whole
    ids = iter(("a", "b", "c", "ü-é"))
    expected_skim = [
        {"id": next(ids)} if kind == "id" else json.loads(line)
        for line, kind in lines[:-1]
        if kind != "bad"
    ]
    expected_skim[6]["id"] = "7"
    assert skimmed == [*expected_skim, {"id": "h"}]


def test_sql_stores_are_read_whole(tmp_path: Path) -> None:
    assert not isinstance(SqliteStore(tmp_path / "x.db"), SkimmingStore)


def _random_records(rng: random.Random) -> list[dict[str, Any]]:
    """Records of a few items over several runs: calls, failures, releases, completions."""
    records: list[dict[str, Any]] = []
    tokens = iter(range(10**6))

    def usage() -> Any:
        roll = rng.random()
        if roll < 0.1:
            return {"in": -1, "calls": 1}  # malformed: the ledger refuses it
        if roll < 0.15:
            return "not a usage"
        if roll < 0.25:
            return None
        return {
            "in": rng.randint(0, 50),
            "out": rng.randint(0, 9),
            "calls": rng.randint(1, 3),
            "cost": rng.choice([0.25, 0.5, 1.0]),
            "s": rng.choice([0.5, 1.5]),
        }

    for ts in range(rng.randint(5, 60)):
        item = rng.choice("abcde")
        kind = rng.choice(["call", "call", "failed", "done", "retry"])
        record: dict[str, Any]
        if kind == "call":
            record = {"call": item, "a": f"k{next(tokens)}", "ts": ts}
        elif kind == "retry":
            record = {"id": item, "ts": ts, "status": "retry"}
        elif kind == "failed":
            record = {"id": item, "ts": ts, "status": "failed", "error": "x", "retryable": True}
        else:
            record = {"id": item, "ts": ts}
        spent = usage()
        if kind != "retry" and spent is not None:
            record["usage"] = spent
        records.append(record)
    return records


@pytest.mark.parametrize("seed", range(40))
def test_per_item_spending_is_the_same_read_whole_skimmed_or_with_the_job_total(
    tmp_path: Path, seed: int
) -> None:
    records = _random_records(random.Random(seed))
    path = tmp_path / "c.jsonl"
    _write(path, [json.dumps(r, ensure_ascii=False) for r in records])
    store = JsonlStore(path)
    ledgered = JobSpent(records, None)
    alone = JobSpent(records, None, job_total=False)
    skimmed = JobSpent(store.skim_records(), None, job_total=False)
    for item in "abcde":
        assert ledgered.item(item) == alone.item(item) == skimmed.item(item), item
    assert alone.total.is_empty() and alone.unpriced == []


def test_a_completion_ends_its_items_spending_whatever_its_usage() -> None:
    failed = {"id": "x", "ts": 1, "status": "failed", "usage": {"in": 5, "calls": 1}}
    again = {"id": "x", "ts": 3, "status": "failed", "usage": {"in": 7, "calls": 1}}
    done_badly = {"id": "x", "ts": 2, "usage": {"in": -1}}
    for job_total in (True, False):
        spent = JobSpent([failed, done_badly], None, job_total=job_total)
        assert spent.item("x") is None
        # A rerun (a changed item) starts afresh after it.
        after = JobSpent([failed, done_badly, again], None, job_total=job_total).item("x")
        assert after is not None and (after.usage.input_tokens, after.attempts) == (7, 1)
    # The job's total counts what the ledger counts: not the malformed usage.
    assert JobSpent([failed, done_badly, again], None).total.input_tokens == 12
