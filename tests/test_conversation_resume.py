"""A multi-turn item killed after turn 3 resumes with the conversation of turn 3."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = str(Path(__file__).with_name("_run_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def spawn(tmp_path, *opts):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, CHILD, "agent", str(tmp_path / "job.jsonl"), *opts]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_killed_item_resumes_with_the_conversation_of_turn_3(tmp_path):
    proc = spawn(tmp_path, "hang_at=3")
    saved = None
    for line in proc.stdout:
        if line.startswith("SAVED 3 "):
            saved = json.loads(line.split(" ", 2)[2])
            break
    assert saved is not None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    conv_dir = tmp_path / "job.jsonl.conversations"
    assert len(os.listdir(conv_dir)) == 1

    proc = spawn(tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    resumed = json.loads(lines[0].split(" ", 1)[1])
    assert resumed == saved
    assert sum(1 for m in resumed if m["role"] == "assistant") == 3
    turns = [int(line.split()[1]) for line in lines if line.startswith("SAVED")]
    assert turns == [4, 5]
    report = json.loads(next(line for line in lines if line.startswith("REPORT")).split(" ", 1)[1])
    assert report["done"] == 1
    assert os.listdir(conv_dir) == []


@pytest.mark.parametrize("kind", ["jsonl", "sqlite", "memory"])
@pytest.mark.parametrize("edit", ["after_a_save", "after_a_resume"])
def test_a_message_edited_in_place_is_saved(tmp_path, kind, edit):
    # The messages handed out shared their dicts with what the run kept to
    # compare the next save with: an edit in place (trimming an old tool
    # output) read as unchanged, and only the new messages were saved.
    from agent_resume import InMemoryStore, ResumableRun, RunConfig

    stores = {
        "jsonl": str(tmp_path / "c.jsonl"),
        "sqlite": f"sqlite:///{tmp_path / 'c.db'}",
        "memory": InMemoryStore(),
    }
    editing = 1 if edit == "after_a_save" else 2  # the attempt that edits, and saves
    seen = []

    def process(item, ctx):
        if ctx.attempt == 1:
            first = [{"role": "user", "content": "q"}, {"role": "tool", "content": "BIG"}]
            ctx.save_conversation(first)
        if ctx.attempt == editing:
            messages = ctx.conversation
            messages[1]["content"] = "[trimmed]"
            messages.append({"role": "assistant", "content": "a1"})
            ctx.save_conversation(messages)
        if ctx.attempt <= editing:
            raise RuntimeError("the next attempt reads what was saved")
        seen.append([m["content"] for m in ctx.conversation])
        return "ok"

    config = RunConfig(
        job_id="edit", store=stores[kind], progress=False, handle_signals=False, max_attempts=3
    )
    for _ in range(3):  # one attempt a run, or more
        ResumableRun(config).run(process, ["x"])
    assert seen == [["q", "[trimmed]", "a1"]]


def test_a_conversation_logs_messages_are_a_copy(tmp_path):
    from agent_resume import ConversationLog

    log = ConversationLog(tmp_path / "c.jsonl")
    log.save([{"role": "tool", "content": "BIG"}])
    messages = log.messages
    messages[0]["content"] = "[trimmed]"
    messages.append({"role": "assistant", "content": "a"})
    log.save(messages)
    again = ConversationLog(tmp_path / "c.jsonl").messages
    assert [m["content"] for m in again] == ["[trimmed]", "a"]
