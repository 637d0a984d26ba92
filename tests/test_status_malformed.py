"""``agent-resume status`` on a job whose run-end record is malformed: shown, warned, never exit 70."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_resume._cli._main import main
from agent_resume._schema import check

_REPORT: dict[str, Any] = {
    "schema_version": 1,
    "job_id": "job",
    "started_at": "2026-12-01T13:20:05Z",
    "ended_at": "2026-12-01T13:20:06Z",
    "duration_seconds": 1.0,
    "stop_reason": "completed",
    "stop_message": "",
    "done": 1,
    "already_done": 0,
    "failed": 0,
    "quarantined": 0,
    "remaining": 0,
    "abandoned": 0,
    "interrupted": 0,
    "retried": 0,
    "call_retries": 0,
    "rate_limited": 0,
    "calls_in_flight": 0,
    "usage": {
        "calls": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 7.5e-05,
    },
}

# Values of every JSON type, and out-of-range ones of the right type.
_VALUES = [None, "x", "", "1", [], {}, [1], {"a": {}}, -1, 0, 2**70, 1.5, -1e308, True, False]


def _job(path: Path, report: Any) -> Path:
    records = [
        {"agent_resume": 1, "job_id": "job", "created": 1796131205},
        {"run": "start", "ts": 1796131205, "pid": 1, "max_attempts": 3},
        {"id": "i0", "ts": 1796131205, "usage": {"in": 10, "out": 5, "calls": 1, "cost": 7.5e-05}},
        {"run": "end", "ts": 1796131206, "pid": 1, "report": report},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _status(path: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str, str]:
    code = main(["status", *options, str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _REPORT.items() if k != key}


@pytest.mark.parametrize(
    ("report", "field"),
    [
        (
            {"schema_version": 1, "job_id": "job", "stop_reason": "completed", "done": 1},
            "started_at",
        ),
        ({**_without("failed"), "usage": 1.5}, "usage"),
        (_without("usage"), "usage"),
        ({**_REPORT, "usage": {**_REPORT["usage"], "cost_usd": []}}, "usage.cost_usd"),
        ({**_REPORT, "usage": {**_REPORT["usage"], "output_tokens": {}}}, "usage.output_tokens"),
        ({**_REPORT, "usage": {**_REPORT["usage"], "output_tokens": "x"}}, "usage.output_tokens"),
        ({**_REPORT, "duration_seconds": "1"}, "duration_seconds"),
        ({**_REPORT, "done": -1}, "done"),
    ],
    ids=[
        "no_usage_nor_times",
        "usage_a_number",
        "no_usage",
        "cost_a_list",
        "tokens_an_object",
        "tokens_a_string",
        "duration_a_string",
        "negative_done",
    ],
)
def test_status_shows_a_malformed_run_report_and_warns_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: dict[str, Any], field: str
) -> None:
    path = _job(tmp_path / "job.jsonl", report)
    code, out, err = _status(path, capsys)
    assert code == 0, err
    assert "last runs:" in out
    assert "run record(s) is malformed" in err and field in err
    code, out, err = _status(path, capsys, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert check(document, "status_document") == []
    assert document["done"] == 1  # the rest of the job is read as before
    (run,) = document["last_runs"]
    assert run["stop_reason"] == "completed"


def test_status_of_a_well_formed_run_report_gives_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _job(tmp_path / "job.jsonl", _REPORT)
    code, out, err = _status(path, capsys, "--json")
    assert (code, err) == (0, "")
    (run,) = json.loads(out)["last_runs"]
    assert run == {k: v for k, v in _REPORT.items() if k != "schema_version"}


def _places(report: dict[str, Any]) -> list[tuple[str, ...]]:
    places: list[tuple[str, ...]] = []
    for key, value in report.items():
        places.append((key,))
        if isinstance(value, dict):
            places.extend((key, inner) for inner in value)
    return places


@pytest.mark.parametrize("place", _places(_REPORT), ids="/".join)
def test_status_never_fails_whatever_one_field_of_the_run_report_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], place: tuple[str, ...]
) -> None:
    for value in _VALUES:
        report = json.loads(json.dumps(_REPORT))
        target = report
        for key in place[:-1]:
            target = target[key]
        target[place[-1]] = value
        path = _job(tmp_path / "job.jsonl", report)
        for options in ((), ("--json",)):
            code, out, err = _status(path, capsys, *options)
            assert code == 0, f"{place}={value!r}: {err}"
            if options:
                assert check(json.loads(out), "status_document") == [], f"{place}={value!r}"
