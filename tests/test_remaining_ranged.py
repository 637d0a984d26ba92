"""``remaining()`` filtering a batch through the done IDs in its range (issue 15).

On a large job walked in order, a batch of increasing IDs is filtered against
the done IDs between its first and its last, cut from the done IDs in sorted
order, instead of the whole done set. The cut must give exactly what the done
set gives, whatever the input's order, the order the IDs were done in, and
the items marked while the pass runs; ``JobState.done_order`` must hold every
done ID, however it was loaded.

Most tests lower the size from which the cut is used, so that small jobs take
it; one runs a job above the real size.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from _marking import take_marking
from agent_resume import (
    AgentResume,
    CheckpointWarning,
    DuplicateItemWarning,
    InMemoryStore,
    JsonlStore,
    SqliteStore,
)
from agent_resume._records import JobState
from agent_resume._session import _remaining
from agent_resume._session._remaining import _DoneRanges
from agent_resume._session._rules import ItemRules


@pytest.fixture
def cuts(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Use the cut from one done ID on; collect, per batch asked, whether it was cut."""
    monkeypatch.setattr(_remaining, "_RANGED_MIN", 1)
    asked: list[bool] = []
    around = _DoneRanges.around

    def counted(self: _DoneRanges, ids: list[Any]) -> set[str] | None:
        near = around(self, ids)
        asked.append(near is not None)
        return near

    monkeypatch.setattr(_DoneRanges, "around", counted)
    return asked


def _write_done(path: Path, done: Iterable[str]) -> None:
    """A checkpoint whose completions are in the order given (as a run would leave them)."""
    lines = [json.dumps({"agent_resume": 1, "job_id": "job", "created": 1})]
    lines += [json.dumps({"id": item_id, "ts": 1}) for item_id in done]
    path.write_text("\n".join(lines) + "\n")


def _pass(path: Path, items: Iterable[str], seed: int, marks: bool) -> tuple[list[str], int]:
    """Resume the job at ``path`` and take one pass, marking some items inside the loop."""
    rng = random.Random(seed)
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        mark, ahead = (0.3, 0.02) if marks else (0.0, 0.0)
        out = take_marking(s, items, rng, mark=mark, ahead=ahead, ahead_ids=60_000)
        return out, s.stats.duplicates


def _job(seed: int) -> tuple[list[str], list[str]]:
    """(the done IDs in the order they were done, the input) for one kind of job."""
    rng = random.Random(seed)
    ids = [f"k{n:06d}" for n in range(60_000)]
    done = [i for i in ids if rng.random() < 0.5]
    items = ids[:]
    kind = seed % 6
    if kind == 1:  # done by threads: a few neighbours swapped
        for n in range(0, len(done) - 1, 97):
            done[n], done[n + 1] = done[n + 1], done[n]
    elif kind == 2:  # a repeat in the input, and an ID done twice
        items.insert(rng.randrange(len(items)), items[rng.randrange(len(items))])
        done.append(done[len(done) // 2])
    elif kind == 3:  # items out of order in the middle of a batch
        n = 20_000
        items[n : n + 50] = reversed(items[n : n + 50])
    elif kind == 4:  # IDs that sort apart from their order: k9 before k10
        items = [f"k{n}" for n in range(60_000)]
        done = [i for i in items if rng.random() < 0.5]
    elif kind == 5:  # done in no order
        rng.shuffle(done)
    return done, items


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("marks", [False, True])
def test_the_cut_gives_what_the_done_set_gives(
    tmp_path: Path, cuts: list[bool], seed: int, marks: bool
) -> None:
    done, items = _job(seed)
    _write_done(tmp_path / "list.jsonl", done)
    _write_done(tmp_path / "gen.jsonl", done)
    batched = _pass(tmp_path / "list.jsonl", items, seed, marks)
    one_by_one = _pass(tmp_path / "gen.jsonl", iter(items), seed, marks)
    assert batched == one_by_one
    if not marks:
        finished = set(done)
        expected = [i for i in dict.fromkeys(items) if i not in finished]
        assert batched[0] == expected
    if seed % 6 in (0, 1):  # in order: every batch is cut
        assert cuts and all(cuts)


def test_an_input_in_no_order_is_never_cut(tmp_path: Path, cuts: list[bool]) -> None:
    ids = [f"k{n:06d}" for n in range(60_000)]
    _write_done(tmp_path / "s.jsonl", ids[::2])
    items = ids[:]
    random.Random(3).shuffle(items)
    out, _ = _pass(tmp_path / "s.jsonl", items, 3, marks=False)
    assert out == [i for i in items if int(i[1:]) % 2]
    assert cuts == []  # the first batch does not increase: no batch is asked


def test_ids_of_other_types_take_the_careful_path(tmp_path: Path, cuts: list[bool]) -> None:
    _write_done(tmp_path / "t.jsonl", ["1", "3", "b", "é"])
    with AgentResume(JsonlStore(tmp_path / "t.jsonl")).resume_or_start("job") as s:
        ids: list[int | str] = [0, 1, 2, 3, "a", "b", "é", "ü"]
        out = [item["id"] for item in s.remaining([{"id": i} for i in ids])]
        assert out == [0, 2, "a", "ü"]
        # Only ints, which compare among themselves but not with the done IDs.
        assert [item["id"] for item in s.remaining([{"id": i} for i in range(5)])] == [0, 2, 4]


def test_a_large_job_in_order_is_cut_at_the_real_size(tmp_path: Path) -> None:
    ids = [f"item-{n:07d}" for n in range(600_000)]
    assert len(ids[::2]) >= _remaining._RANGED_MIN
    _write_done(tmp_path / "big.jsonl", ids[::2])
    with AgentResume(JsonlStore(tmp_path / "big.jsonl")).resume_or_start("job") as s:
        assert _DoneRanges.of(_rules(ids[::2])) is not None
        out = []
        skipped = set()
        for item in s.remaining(ids):
            out.append(item)
            ahead = int(item[5:]) + 101  # an odd one ahead: skipped when reached
            if len(out) % 1000 == 0 and ahead < len(ids):
                s.mark_done(ids[ahead])
                skipped.add(ids[ahead])
    assert len(skipped) > 250
    expected = [i for n, i in enumerate(ids) if n % 2 and i not in skipped]
    assert out == expected


def _rules(done_order: list[str], done: set[str] | None = None) -> ItemRules:
    state = JobState(
        job_id="job", done=set(done_order) if done is None else done, done_order=done_order
    )
    return ItemRules(state, max_attempts=3, fingerprinter=None, on_change="rerun")


def test_ranges_of_ids_done_in_order_cut_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    done_order = [f"k{n:04d}" for n in range(0, 1000, 3)]
    done = set(done_order)
    assert _DoneRanges.of(_rules(done_order)) is None  # below the size where a probe waits
    monkeypatch.setattr(_remaining, "_RANGED_MIN", 1)
    ranges = _DoneRanges.of(_rules(done_order))
    assert ranges is not None
    batch = [f"k{n:04d}" for n in range(100, 200)]
    assert ranges.around(batch) == done & set(batch)
    assert ranges.around(["k0001", "k0002"]) == set()
    # Too wide a range for the batch: the caller uses the done set.
    assert ranges.around(["k0000", "k0999"]) is None
    # Done in no order, or an order that misses IDs: no ranges.
    shuffled = done_order[:]
    random.Random(1).shuffle(shuffled)
    assert _DoneRanges.of(_rules(shuffled)) is None
    assert _DoneRanges.of(_rules(done_order[:-1], done)) is None
    # A few out of order: sorted once.
    swapped = done_order[:]
    swapped[10], swapped[11] = swapped[11], swapped[10]
    nearly = _DoneRanges.of(_rules(swapped))
    assert nearly is not None and nearly.around(batch) == done & set(batch)


def test_a_pass_compares_only_the_ids_done_since_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_remaining, "_RANGED_MIN", 1)
    done_order = [f"k{n:04d}" for n in range(0, 1000, 3)]
    rules = _rules(done_order)
    assert _DoneRanges.of(rules) is not None
    assert rules.sorted_upto == len(done_order)
    rules.completed("k1000")  # after the last: still in order
    assert _DoneRanges.of(rules) is not None
    assert rules.sorted_upto == len(done_order)
    # One below the last: the order is checked across the seam and sorted.
    rules.completed("k0001")
    ranges = _DoneRanges.of(rules)
    assert rules.sorted_upto == len(done_order) - 1
    assert ranges is not None
    assert ranges.around(["k0000", "k0001", "k0002"]) == {"k0000", "k0001"}


@pytest.mark.parametrize("kind", ["jsonl", "memory", "sqlite"])
def test_done_order_holds_every_done_id_however_loaded(tmp_path: Path, kind: str) -> None:
    def store() -> Any:
        if kind == "jsonl":
            return JsonlStore(tmp_path / "j.jsonl")
        if kind == "sqlite":
            return SqliteStore(tmp_path / "j.db")
        return memory

    memory = InMemoryStore()
    with AgentResume(store()).resume_or_start("job", max_attempts=5) as s:
        for n in range(50):
            s.mark_failed(f"f{n}", "boom")
        for n in (5, 1, 3, 1, 9):
            s.mark_done(f"d{n}")
        s.mark_done("f7")  # failed, then done
    if kind == "jsonl":  # lines of every shape: with usage, status, a torn one
        with open(tmp_path / "j.jsonl", "a") as f:
            f.write('{"id": "u1", "ts": 2, "usage": {"calls": 1}}\n')
            f.write('{"id": "s1", "ts": 2, "status": "done"}\n')
            f.write('{"id": "torn", "ts"\n')
            f.write('{"id": "d9", "ts": 2}\n')
    reopened = store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)  # the torn line
        state = reopened.open("job")
    reopened.close()
    assert set(state.done_order) == state.done
    assert state.done >= {"d1", "d3", "d5", "d9", "f7"}


def test_items_marked_in_a_session_are_cut_on_the_next_pass(
    tmp_path: Path, cuts: list[bool]
) -> None:
    ids = [f"k{n:05d}" for n in range(40_000)]
    with AgentResume(JsonlStore(tmp_path / "m.jsonl")).resume_or_start("job") as s:
        for item in ids[::3]:
            s.mark_done(item)
        first = list(s.remaining(ids))
        for item in first[::2]:
            s.mark_done(item)
        cuts.clear()
        second = list(s.remaining(ids))
    assert second == first[1::2]
    assert cuts and all(cuts)


def test_a_repeat_of_an_item_marked_in_the_loop_is_counted_once(
    tmp_path: Path, cuts: list[bool]
) -> None:
    ids = [f"k{n:05d}" for n in range(40_000)]
    items = [*ids[:30_000], ids[4], *ids[30_000:]]  # ids[4] again, a batch later
    _write_done(tmp_path / "r.jsonl", ids[1::2])
    with AgentResume(JsonlStore(tmp_path / "r.jsonl")).resume_or_start("job") as s:
        out = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DuplicateItemWarning)
            for item in s.remaining(items):
                out.append(item)
                s.mark_done(item)
        assert [w.category for w in caught] == [DuplicateItemWarning]
        assert s.stats.duplicates == 1
    assert out == ids[::2]
    assert cuts[0]


def test_an_item_marked_ahead_of_the_loop_is_skipped_and_its_repeat_not_counted(
    tmp_path: Path, cuts: list[bool]
) -> None:
    ids = [f"k{n:05d}" for n in range(40_000)]
    items = [*ids[:35_000], ids[20_000], *ids[35_000:]]  # repeated in the third batch
    _write_done(tmp_path / "a.jsonl", ids[1::2])
    with AgentResume(JsonlStore(tmp_path / "a.jsonl")).resume_or_start("job") as s:
        out = []
        for item in s.remaining(items):
            out.append(item)
            if item == ids[100]:
                s.mark_done(ids[20_000])  # in the next batch, not reached yet
        assert s.stats.duplicates == 0
    assert out == [i for i in ids[::2] if i != ids[20_000]]
    assert cuts[:2] == [True, True]


_IDS = [f"k{n:05d}" for n in range(40_000)]


@pytest.mark.parametrize(
    "items",
    [
        # The second batch begins with a done ID, then one done long before.
        [*_IDS[:16_384], _IDS[20_000], _IDS[2], *_IDS[16_384:]],
        # The second batch ends with one done far ahead, then a done ID.
        [*_IDS[:32_766], _IDS[39_998], _IDS[32_766], *_IDS[32_766:]],
    ],
    ids=["below", "above"],
)
def test_a_done_id_outside_its_batch_range_is_not_handed_out(
    tmp_path: Path, cuts: list[bool], items: list[str]
) -> None:
    # The IDs kept still increase, but one done lies outside the range the
    # batch's first and last IDs span, so it is not among the done IDs cut.
    ids = _IDS
    _write_done(tmp_path / "b.jsonl", ids[::2])
    with AgentResume(JsonlStore(tmp_path / "b.jsonl")).resume_or_start("job") as s:
        out = list(s.remaining(items))
        assert s.stats.duplicates == 0
    assert out == ids[1::2]
    assert cuts[0]
