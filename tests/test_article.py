"""The article's code, run as written, and the story it tells: the job dies at item 847."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_resume import AgentResume, JsonlStore


@dataclass
class Item:
    id: str
    text: str


def make_items(n: int = 1000) -> list[Item]:
    return [Item(id=f"item-{i:03d}", text=f"document {i}") for i in range(n)]


class Crash(Exception):
    pass


def test_article_code_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    all_items = make_items(20)
    processed: list[str] = []

    def process_item(item: Item) -> str:
        processed.append(item.id)
        return item.text.upper()

    # The article's code, unchanged:
    from agent_resume import AgentResume, JsonlStore

    store = JsonlStore(path="./checkpoints/batch-job-42.jsonl")
    agent = AgentResume(store=store)
    with agent.resume_or_start(job_id="batch-job-42") as session:
        for item in session.remaining(all_items):
            result = process_item(item)
            session.mark_done(item.id, result=result)

    assert processed == [i.id for i in all_items]
    lines = Path("checkpoints/batch-job-42.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["job_id"] == "batch-job-42"
    assert [json.loads(line)["id"] for line in lines[1:]] == processed


def test_article_deadline_form_runs_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    summaries: dict[str, str] = {}

    def load_all_documents() -> list[Item]:
        return make_items(5)

    def summarize_document(item: Item) -> str:
        return item.text[:3]

    def save_summary(item_id: str, summary: str) -> None:
        summaries[item_id] = summary

    from agent_resume import AgentResume, Deadline, DeadlineExceeded, JsonlStore

    store = JsonlStore(path="./checkpoints/nightly-sync.jsonl")
    agent = AgentResume(store=store)
    deadline = Deadline.from_now(seconds=3600)  # 1 hour max
    try:
        with agent.resume_or_start(job_id="nightly-sync-2026-05-24") as session:
            for item in session.remaining(load_all_documents()):
                deadline.check_or_raise()
                summary = summarize_document(item)
                save_summary(item.id, summary)
                session.mark_done(item.id)
    except DeadlineExceeded:
        print("Time limit reached. Will resume next run.")
    assert len(summaries) == 5


def test_article_deadline_form_stops_and_resumes(tmp_path: Path) -> None:
    from agent_resume import Deadline, DeadlineExceeded

    store_path = tmp_path / "nightly.jsonl"
    items = make_items(10)
    seen: list[str] = []
    deadline = Deadline.from_now(seconds=-1)
    with pytest.raises(DeadlineExceeded):
        with AgentResume(JsonlStore(store_path)).resume_or_start("nightly") as session:
            for item in session.remaining(items):
                if item.id == "item-004":
                    deadline.check_or_raise()
                seen.append(item.id)
                session.mark_done(item.id)
    with AgentResume(JsonlStore(store_path)).resume_or_start("nightly") as session:
        rest = [i.id for i in session.remaining(items)]
    assert seen == [f"item-{i:03d}" for i in range(4)]
    assert rest == [f"item-{i:03d}" for i in range(4, 10)]


def test_the_job_dies_at_item_847_and_resumes_at_847(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "batch-job-42.jsonl"
    all_items = make_items(1000)
    with pytest.raises(Crash):
        with AgentResume(JsonlStore(path)).resume_or_start("batch-job-42") as session:
            for item in session.remaining(all_items):
                if item.id == "item-847":
                    raise Crash("network timeout")
                session.mark_done(item.id, result="ok")
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job-42") as session:
        second_run = [item.id for item in session.remaining(all_items)]
        assert session.stats.already_done == 847
    assert second_run == [f"item-{i:03d}" for i in range(847, 1000)]


def test_the_job_killed_at_item_847_resumes_at_847(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "batch.jsonl"
    script = f"""
import os, signal
from agent_resume import AgentResume, JsonlStore
class Item:
    def __init__(self, i): self.id = f"item-{{i:03d}}"
with AgentResume(JsonlStore({str(path)!r})).resume_or_start("batch-job-42") as s:
    for item in s.remaining([Item(i) for i in range(1000)]):
        if item.id == "item-847":
            os.kill(os.getpid(), signal.SIGKILL)
        s.mark_done(item.id)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job-42") as session:
        rest = [item.id for item in session.remaining(make_items())]
    assert rest == [f"item-{i:03d}" for i in range(847, 1000)]
    assert os.path.exists(path)
