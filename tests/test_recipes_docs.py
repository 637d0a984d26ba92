"""The recipes written with the docs: the article's example and the OpenAI batch runner.

The other recipes run in test_recipes.py and test_multiworker.py; test_docs.py
checks that every recipe runs somewhere in the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_server import (
    LLMServer,
    Reply,
    llm_server_fixture,  # noqa: F401
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *sys.path])}
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, str(RECIPES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_article_example_resumes_after_a_kill(tmp_path: Path) -> None:
    crashed = run(tmp_path, "article_example.py", "--items", "40", "--crash-at", "15")
    assert crashed.returncode == -9
    checkpoint = tmp_path / "checkpoints" / "batch-job-42.jsonl"
    done = [r["id"] for r in lines(checkpoint)[1:]]
    assert done == [f"item-{n:03d}" for n in range(1, 15)]
    again = run(tmp_path, "article_example.py", "--items", "40")
    assert again.returncode == 0, again.stderr
    assert "processed 26 items; 14 were done before" in again.stdout
    records = lines(checkpoint)[1:]
    assert len(records) == 40
    assert len({r["id"] for r in records}) == 40


def test_article_example_deadline_form_stops_cleanly(tmp_path: Path) -> None:
    proc = run(tmp_path, "article_example.py", "--items", "300", "--deadline", "0.05")
    assert proc.returncode == 1, proc.stderr
    assert "deadline reached" in proc.stdout
    partial = len(lines(tmp_path / "checkpoints" / "batch-job-42-deadline.jsonl")) - 1
    assert 0 < partial < 300
    proc = run(tmp_path, "article_example.py", "--items", "300")
    assert proc.returncode == 0, proc.stderr
    assert len(lines(tmp_path / "checkpoints" / "batch-job-42-deadline.jsonl")) == 301


def test_openai_batch_against_a_loopback_server(tmp_path: Path, llm_server: LLMServer) -> None:
    llm_server.reply = Reply(
        text="Forty-two.", model="gpt-4o-mini", input_tokens=100, output_tokens=20
    )
    argv = ["--base-url", llm_server.openai_url, "--api-key", "test", "--count", "6"]
    argv += ["--checkpoint", "ob.jsonl", "--concurrency", "3"]
    proc = run(tmp_path, "openai_batch.py", *argv)
    assert proc.returncode == 0, proc.stderr
    assert "done          6" in proc.stdout
    assert "tokens        600 in / 120 out" in proc.stdout
    assert len(llm_server.requests) == 6
    done = [r for r in lines(tmp_path / "ob.jsonl") if "result" in r]
    assert {r["result"]["answer"] for r in done} == {"Forty-two."}  # type: ignore[index]
    assert all(r["usage"]["in"] == 100 for r in done)  # type: ignore[index]
    # Run again: nothing is asked twice.
    proc = run(tmp_path, "openai_batch.py", *argv)
    assert proc.returncode == 0, proc.stderr
    assert "already done  6" in proc.stdout
    assert len(llm_server.requests) == 6


def test_openai_batch_reads_an_input_file(tmp_path: Path, llm_server: LLMServer) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        '{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "yo"}\n'
    )
    argv = [
        "--base-url",
        llm_server.openai_url,
        "--input",
        "prompts.jsonl",
        "--checkpoint",
        "p.jsonl",
    ]
    proc = run(tmp_path, "openai_batch.py", *argv)
    assert proc.returncode == 0, proc.stderr
    prompts = sorted(r.body["messages"][0]["content"] for r in llm_server.requests)
    assert prompts == ["hi", "yo"]
