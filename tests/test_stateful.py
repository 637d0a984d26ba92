"""A store and a plain Python model, driven side by side, reopened at random: they must agree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent_resume import AgentResume, InMemoryStore, JsonlStore, ResultJsonlStore, Session

IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "1", "x\ny", "é", "\u2028", '"q"']),
    st.integers(min_value=0, max_value=5),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8),
)
RESULTS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
MAX_ATTEMPTS = 2


class StoreVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.session: Session | None = None
        self.done: dict[str, Any] = {}
        self.failures: dict[str, int] = {}
        self.fatal: set[str] = set()
        self.inputs: list[str] = []

    @initialize(kind=st.sampled_from(["memory", "jsonl", "results", "group"]))
    def open_store(self, kind: str) -> None:
        self.kind = kind
        self.memory = InMemoryStore()
        self.reopen()

    def make_store(self) -> Any:
        path = self.tmp / "job.jsonl"
        if self.kind == "memory":
            return self.memory
        if self.kind == "jsonl":
            return JsonlStore(path)
        if self.kind == "group":
            return ResultJsonlStore(path, durability="group")
        return ResultJsonlStore(path)

    @rule()
    def reopen(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = AgentResume(self.make_store()).resume_or_start(
            "job", max_attempts=MAX_ATTEMPTS
        )

    @rule(item=IDS, result=RESULTS)
    def mark_done(self, item: str | int, result: Any) -> None:
        assert self.session is not None
        key = str(item)
        recorded = self.session.mark_done(item, result=result)
        assert recorded == (key not in self.done)
        if recorded:
            self.done[key] = result
            self.failures.pop(key, None)
            self.fatal.discard(key)
        self.inputs.append(key)

    @rule(item=IDS, retryable=st.booleans())
    def mark_failed(self, item: str | int, retryable: bool) -> None:
        assert self.session is not None
        key = str(item)
        recorded = self.session.mark_failed(item, RuntimeError("x"), retryable=retryable)
        assert recorded == (key not in self.done)
        if recorded:
            self.failures[key] = self.failures.get(key, 0) + 1
            if not retryable:
                self.fatal.add(key)
        self.inputs.append(key)

    @rule(item=IDS)
    def release(self, item: str | int) -> None:
        assert self.session is not None
        key = str(item)
        released = self.session.retry([item])
        assert released == ([key] if key in self.failures else [])
        self.failures.pop(key, None)
        self.fatal.discard(key)

    @invariant()
    def agrees(self) -> None:
        if self.session is None:
            return
        s = self.session
        universe = list(dict.fromkeys([*self.inputs, "never-seen"]))
        expected = [
            i
            for i in universe
            if i not in self.done and i not in self.fatal and self.failures.get(i, 0) < MAX_ATTEMPTS
        ]
        assert list(s.remaining(universe)) == expected
        for i in universe:
            assert s.is_done(i) == (i in self.done)
            assert s.attempts(i) == (0 if i in self.done else self.failures.get(i, 0))
        if self.kind != "jsonl":
            assert dict(s.results()) == self.done

    def teardown(self) -> None:
        if self.session is not None:
            self.session.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


StoreVersusModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=25, deadline=None
)
TestStoreVersusModel = StoreVersusModel.TestCase
