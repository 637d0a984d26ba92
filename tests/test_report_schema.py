"""Every JSON rendering of a report against the one schema definition (``agent_resume._schema``).

The five renderings: ``RunReport.to_dict()``, the run's end record in the
store, ``agent-resume run --json``, ``status --json`` and ``report --format
json``. A job is run through the command line twice, once killed with
SIGKILL part-way, so that the documents hold a finished run, a killed run,
failures, quarantine and usage with and without a price.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_resume import AgentResume, JsonlStore, RunReport, Usage
from agent_resume._cli._main import main
from agent_resume._schema import SCHEMA, SCHEMA_VERSION, check

SRC = str(Path(__file__).resolve().parents[1] / "src")
DOCS = Path(__file__).resolve().parents[1] / "docs"

JOB = """
import os, signal
from agent_resume import Usage

def process(item, ctx):
    model = item.get("model", "m")
    cost = None if model != "m" else 0.0012345678901234
    ctx.record_usage(Usage(input_tokens=1000, output_tokens=100, model=model, cost_usd=cost))
    if item.get("kill") and os.environ.get("KILL_AT") == item["id"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if item.get("fail"):
        raise ValueError("cannot do " + item["id"])
    return {"n": item["n"]}
"""

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def _run(
    cwd: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent_resume", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A job killed once and then run to its end; returns what the renderings printed."""
    where = tmp_path_factory.mktemp("schema")
    (where / "job.py").write_text(JOB)
    rows = [{"id": f"i{n:02d}", "n": n} for n in range(12)]
    rows[3]["fail"] = True
    rows[5]["kill"] = True
    rows[7]["model"] = "a-model-nobody-prices"
    (where / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ("run", "job.py:process", "--items", "items.jsonl", "--job-id", "schema-job")
    argv += ("--store", "job.jsonl", "--no-progress", "--max-attempts", "1", "--json")
    killed = _run(where, *argv, env={"KILL_AT": "i05"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = _run(where, *argv)
    assert finished.returncode == 1, finished.stderr  # i03 is quarantined: work left
    status = _run(where, "status", "job.jsonl", "--json")
    report = _run(where, "report", "job.jsonl", "--format", "json")
    no_total = _run(where, "report", "job.jsonl", "--format", "json", "--no-total")
    for result in (status, report, no_total):
        assert result.returncode == 0, result.stderr
    return {
        "dir": where,
        "run_json": json.loads(finished.stdout),
        "status": json.loads(status.stdout),
        "report": json.loads(report.stdout),
        "no_total": json.loads(no_total.stdout),
    }


def _times(document: Any) -> list[str]:
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key.endswith("_at") and value is not None:
                found.append(value)
            found += _times(value)
    elif isinstance(document, list):
        for value in document:
            found += _times(value)
    return found


def test_run_json_follows_the_schema(job: dict[str, Any]) -> None:
    document = job["run_json"]
    assert check(document, "run_document") == []
    assert document["schema_version"] == SCHEMA_VERSION
    assert (document["done"], document["quarantined"], document["stop_reason"]) == (
        7,
        1,
        "completed",
    )
    assert document["usage"]["cost_usd"] is None  # one model had no price


def test_the_run_record_and_to_dict_follow_the_schema(job: dict[str, Any]) -> None:
    with AgentResume(JsonlStore(job["dir"] / "job.jsonl")).resume_or_start("schema-job") as s:
        ends = [r["report"] for r in s.runs if r.get("run") == "end"]
    assert len(ends) == 1
    assert check(ends[0], "run_document") == []
    assert ends[0] == job["run_json"]
    report = RunReport.from_dict(ends[0])
    assert check(report.to_dict(), "run_document") == []
    made = RunReport(job_id="j", started_at=1_750_000_000.25, ended_at=1_750_000_012.5)
    assert check(made.to_dict(), "run_document") == []
    assert made.to_dict()["started_at"] == "2025-06-15T15:06:40.250Z"
    assert made.to_dict()["duration_seconds"] == 12.25


def test_status_json_follows_the_schema_and_counts_the_killed_run(job: dict[str, Any]) -> None:
    document = job["status"]
    assert check(document, "status_document") == []
    killed, finished = document["last_runs"]
    assert killed["stop_reason"] == "killed"
    assert (killed["ended_at"], killed["duration_seconds"]) == (None, None)
    assert killed["done"] == 4  # i00..i04 minus the failure of i03
    assert killed["usage"]["input_tokens"] == 5000  # the calls of the records it wrote
    assert finished == {k: v for k, v in job["run_json"].items() if k != "schema_version"}
    total = document["total"]
    assert (
        total["input_tokens"] == killed["usage"]["input_tokens"] + finished["usage"]["input_tokens"]
    )


def test_report_json_follows_the_schema(job: dict[str, Any]) -> None:
    document = job["report"]
    assert check(document, "report_document") == []
    rows = document["items"]
    assert [r["item_id"] for r in rows] == sorted(r["item_id"] for r in rows)
    by_id = {r["item_id"]: r for r in rows}
    assert by_id["i03"]["status"] == "quarantined"
    assert by_id["i03"]["attempts"] == 1
    assert by_id["i07"]["cost_usd"] is None
    assert by_id["i00"]["cost_usd"] is not None
    assert document["total"]["items"] == len(rows)
    assert check(job["no_total"], "report_document") == []
    assert "total" not in job["no_total"]


def test_every_time_is_iso_utc_with_z(job: dict[str, Any]) -> None:
    times = _times([job["run_json"], job["status"], job["report"]])
    assert len(times) >= 4
    assert all(ISO_Z.match(t) for t in times), times


def test_costs_are_rounded_to_ten_significant_digits(job: dict[str, Any]) -> None:
    costs = [r["cost_usd"] for r in job["report"]["items"] if r["cost_usd"] is not None]
    assert costs
    assert all(len(f"{c:.15g}".replace("0.", "").lstrip("0").replace(".", "")) <= 10 for c in costs)


def test_a_report_recorded_before_the_schema_is_shown_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("old") as session:
        session.record_run({"run": "start", "ts": 1_750_000_000, "pid": 1})
        old = {"job": "old", "start": 1_750_000_000.5, "end": 1_750_000_010.5, "duration": 10.0}
        old |= {"done": 2, "failed": 0, "quarantined": 0, "stop": "time_budget"}
        old["usage"] = Usage(
            input_tokens=5, output_tokens=1, cost_usd=0.00022994999999999998
        ).to_dict()
        session.record_run({"run": "end", "ts": 1_750_000_010, "report": old})
    assert main(["status", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert check(document, "status_document") == []
    (run,) = document["last_runs"]
    assert (run["job_id"], run["stop_reason"], run["duration_seconds"]) == (
        "old",
        "time_budget",
        10.0,
    )
    assert run["started_at"] == "2025-06-15T15:06:40.500Z"
    assert run["usage"]["cost_usd"] == 0.00022995


def test_the_checker_finds_what_is_wrong() -> None:
    good = RunReport(job_id="j", started_at=1.0, ended_at=2.0).to_dict()
    assert check(good, "run_document") == []
    assert check({**good, "started_at": 1.0}, "run_document")
    assert check({**good, "done": -1}, "run_document")
    assert check({**good, "stop_reason": "bored"}, "run_document")
    assert check({**good, "extra": 1}, "run_document")
    assert check({k: v for k, v in good.items() if k != "usage"}, "run_document")
    assert check({**good, "usage": {**good["usage"], "input": 3}}, "run_document")


def test_the_docs_show_this_schema() -> None:
    text = (DOCS / "report-schema.md").read_text(encoding="utf-8")
    shown = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(shown) == SCHEMA
    assert f"version\n**{SCHEMA_VERSION}**" in text


def test_the_schema_knows_every_stop_reason_a_report_can_carry() -> None:
    from agent_resume._run._report import STOP_REASONS
    from agent_resume._schema import RUN_STOP_REASONS

    assert set(STOP_REASONS) <= set(RUN_STOP_REASONS)


def test_report_rows_carry_the_turns_and_duration_the_run_recorded(job: dict[str, Any]) -> None:
    # Each item makes one call; the failed one (quarantined) made its call too.
    rows = {row["item_id"]: row for row in job["report"]["items"]}
    assert len(rows) == 12
    for row in rows.values():
        assert row["turns"] == 1, row
        assert isinstance(row["duration_seconds"], float), row
        assert 0.0 <= row["duration_seconds"] < 60.0, row
    assert rows["i03"]["status"] == "quarantined"
    records = list(JsonlStore(job["dir"] / "job.jsonl").iter_records())
    outcomes = [r for r in records if "id" in r and "run" not in r and "agent_resume" not in r]
    assert outcomes and all(r["turns"] == 1 and r["seconds"] >= 0 for r in outcomes)
