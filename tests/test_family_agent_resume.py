"""agent-resume's (the Rust crate's) cases that this project passes, in its words.

Each test is named after the behaviour it pins; its docstring names the
crate's test it translates (``src/lib.rs`` unit tests and
``tests/integration.rs``). The crate's ``Resumable`` is a ``Session``:
``next_item()`` is ``remaining()``, ``checkpoint(state)`` is ``mark_done``
plus ``set_state``, ``state()`` is ``session.state``, ``resumed()`` is
``session.resumed``, and ``remaining_items()`` is ``count_left`` (or
``remaining`` read to the end). The state cases run on every store.

Not translated, because the crate's types have no counterpart here:
``Checkpoint::to_json``/``from_json`` round trips, ``turn()`` counters,
``JsonlStore::len``, and ``completed_items()`` (a session answers
``is_done(id)`` instead of listing completions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    InMemoryStore,
    JsonlStore,
    NotACheckpointError,
    Session,
    SqliteStore,
    Store,
)
from agent_resume.stores import SharedStore

MakeStore = Callable[[], Store]


@pytest.fixture(params=["memory", "jsonl", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    if request.param == "memory":
        memory = InMemoryStore()
        return lambda: memory
    if request.param == "jsonl":
        return lambda: JsonlStore(tmp_path / "job.jsonl")
    return lambda: SqliteStore(tmp_path / "job.db")


def items(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def open_job(make_store: MakeStore) -> Session:
    return AgentResume(make_store()).resume_or_start("job")


def test_a_fresh_job_is_not_resumed(make_store: MakeStore) -> None:
    """fresh_run_not_resumed."""
    with open_job(make_store) as session:
        assert not session.resumed
        assert session.state == {}


def test_every_item_is_offered_once_in_order(make_store: MakeStore) -> None:
    """iterates_all_items, full_run_completes_every_item_once."""
    seen = []
    with open_job(make_store) as session:
        for item in session.remaining(items(5)):
            seen.append(item)
            session.mark_done(item)
        assert session.stats.done == 5
    assert seen == ["0", "1", "2", "3", "4"]


def test_a_resumed_job_skips_what_was_done(make_store: MakeStore) -> None:
    """resume_skips_completed, resume_after_simulated_crash_skips_done_items."""
    with open_job(make_store) as session:
        for item in items(3):
            session.mark_done(item)
    with open_job(make_store) as session:
        assert session.resumed
        assert list(session.remaining(items(5))) == ["3", "4"]


def test_the_state_is_kept_across_a_resume(make_store: MakeStore) -> None:
    """state_preserved_across_resume."""
    with open_job(make_store) as session:
        next(iter(session.remaining(items(3))))
        session.mark_done("0")
        session.set_state("count", 42)
    with open_job(make_store) as session:
        assert session.state["count"] == 42


def test_the_state_survives_a_resume_with_its_types(make_store: MakeStore) -> None:
    """state_survives_resume (and the phase of checkpoint_json_roundtrip_via_public_api)."""
    with open_job(make_store) as session:
        session.mark_done("0")
        session.update_state({"tokens_used": 1234, "phase": "retrieval", "seen": ["doc-1"]})
    with open_job(make_store) as session:
        assert session.state == {"tokens_used": 1234, "phase": "retrieval", "seen": ["doc-1"]}


def test_the_remaining_count_follows_progress(make_store: MakeStore) -> None:
    """remaining_items, remaining_items_reflects_progress."""
    with open_job(make_store) as session:
        if not isinstance(session.store, SharedStore):  # a shared store counts its queue
            assert session.count_left(items(4)) == 4
        session.mark_done("0")
        if not isinstance(session.store, SharedStore):
            assert session.count_left(items(4)) == 3
        assert list(session.remaining(items(4))) == ["1", "2", "3"]


def test_an_empty_work_list_has_nothing_to_do(make_store: MakeStore) -> None:
    """no_items_nothing_to_do, empty_work_list_has_nothing_to_do."""
    with open_job(make_store) as session:
        assert list(session.remaining([])) == []


def test_a_job_all_done_offers_nothing_on_resume(make_store: MakeStore) -> None:
    """all_items_already_done_resume."""
    with open_job(make_store) as session:
        for item in session.remaining(items(2)):
            session.mark_done(item)
    with open_job(make_store) as session:
        assert list(session.remaining(items(2))) == []


def test_a_key_function_names_the_items(make_store: MakeStore) -> None:
    """custom_item_key, custom_item_key_dedupes_on_id."""
    work = [{"id": "a", "payload": 1}, {"id": "b", "payload": 2}, {"id": "c", "payload": 3}]
    with open_job(make_store) as session:
        first = next(iter(session.remaining(work, key=lambda w: w["id"])))
        session.mark_done(first["id"])
    changed = [{**w, "payload": w["payload"] * 10} for w in work]
    with open_job(make_store) as session:
        ids = [w["id"] for w in session.remaining(changed, key=lambda w: w["id"])]
    assert ids == ["b", "c"]


def test_a_jsonl_checkpoint_resumes_in_a_new_store_object(tmp_path: Path) -> None:
    """jsonl_store_roundtrip, jsonl_store_durably_resumes_across_instances."""
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as session:
        session.mark_done("0")
    with AgentResume(JsonlStore(path)).resume_or_start("job") as session:
        assert session.resumed
        assert list(session.remaining(items(4))) == ["1", "2", "3"]


def test_a_missing_checkpoint_is_a_new_job(tmp_path: Path) -> None:
    """jsonl_store_reports_no_checkpoint_for_missing_file: here a new job, not resumed."""
    with AgentResume(JsonlStore(tmp_path / "missing.jsonl")).resume_or_start("job") as session:
        assert not session.resumed
        assert session.state == {}


def test_a_file_that_is_not_a_checkpoint_is_refused_untouched(tmp_path: Path) -> None:
    """jsonl_store_detects_corrupt_line, checkpoint_from_json_bad."""
    path = tmp_path / "job.jsonl"
    path.write_text("this is not json\n")
    with pytest.raises(NotACheckpointError, match="this is not json"):
        AgentResume(JsonlStore(path)).resume_or_start("job")
    assert path.read_text() == "this is not json\n"
