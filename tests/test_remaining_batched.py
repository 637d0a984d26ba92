"""``remaining()`` over a list (batched, in C) yields and counts exactly what it does one by one.

The batched pass checks repeats by order while the IDs it keeps increase,
and by a set from the first ID out of order (issue 15); both must keep the
rules of ``_session/_rules.py``, whatever the input's order, repeats,
quarantines and marks inside the loop.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest

from _marking import take_marking
from agent_resume import AgentResume, ArgumentValueError, DuplicateItemWarning, JsonlStore


def _pass(path: Path, items: Iterable[str], seed: int) -> tuple[list[str], int]:
    """One pass over a job made the same way each time; the caller marks some items inside the loop."""
    rng = random.Random(seed)
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=2) as s:
        for n in range(0, 40_000, 7):
            s.mark_done(f"k{n:06d}")
        for n in range(3, 40_000, 101):
            s.mark_failed(f"k{n:06d}", "boom", retryable=n % 2 == 0)
        out = take_marking(s, items, rng, mark=0.3, ahead=0.01, ahead_ids=40_000)
        return out, s.stats.duplicates


def _inputs(seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = [f"k{n:06d}" for n in range(0, 40_000, rng.choice((1, 2, 3)))]
    kind = seed % 5
    if kind == 1:  # increasing, one repeat late in the list
        ids.insert(rng.randrange(len(ids)), ids[rng.randrange(len(ids))])
    elif kind == 2:  # increasing, then a few items out of order at the end
        ids += rng.sample(ids, 5)
    elif kind == 3:  # shuffled
        rng.shuffle(ids)
    elif kind == 4:  # a repeat right after itself, at a batch boundary
        ids.insert(16_384, ids[16_383])
    return ids


@pytest.mark.parametrize("seed", range(10))
def test_a_list_and_a_generator_of_the_same_items_give_the_same_pass(
    tmp_path: Path, seed: int
) -> None:
    items = _inputs(seed)
    batched = _pass(tmp_path / "list.jsonl", items, seed)
    one_by_one = _pass(tmp_path / "gen.jsonl", iter(items), seed)
    assert batched == one_by_one
    if seed % 5 in (1, 4):
        assert batched[1] >= 1


@pytest.mark.parametrize("items", [["", "a", "b"], ["a", "b", ""], ["b", "", "a"]])
def test_an_empty_id_is_refused_in_any_place(tmp_path: Path, items: list[str]) -> None:
    with AgentResume(JsonlStore(tmp_path / "e.jsonl")).resume_or_start("job") as s:
        with pytest.raises(ArgumentValueError, match="item ID"):
            list(s.remaining(items))


def test_an_increasing_list_with_no_repeat_is_read_whole_without_a_warning(
    tmp_path: Path,
) -> None:
    items = [f"k{n:07d}" for n in range(100_000)]
    with AgentResume(JsonlStore(tmp_path / "i.jsonl")).resume_or_start("job") as s:
        for item in items[::3]:
            s.mark_done(item)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DuplicateItemWarning)
            out = list(s.remaining(items))
        assert out == [item for n, item in enumerate(items) if n % 3]
        assert s.stats.duplicates == 0
        # A repeat of the first item, after everything else: counted, yielded once.
        with pytest.warns(DuplicateItemWarning):
            again = list(s.remaining([*items, items[1]]))
        assert again == out and s.stats.duplicates == 1
