"""The command line, driven in-process through main(argv) and as `python -m agent_resume`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_resume import AgentResume, JsonlStore, PriceTable, ResultJsonlStore, Usage
from agent_resume._cli._main import build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "agent_resume", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def usage(n: int) -> Usage:
    return Usage(input_tokens=100 * n, output_tokens=10 * n, calls=1, cost_usd=0.001 * n, model="m")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A job with 3 items done, 1 failed once and 1 quarantined, with results and usage."""
    path = tmp_path / "job.jsonl"
    agent = AgentResume(ResultJsonlStore(path))
    with agent.resume_or_start("job-1", fingerprint=True) as session:
        for n in range(1, 4):
            item = {"id": f"item-{n}", "text": f"text {n}"}
            assert list(session.remaining([item])) == [item]
            session.mark_done(item["id"], result={"n": n, "text": f"r{n}"}, usage=usage(n))
        session.mark_failed("item-4", ValueError("flaky"), usage=usage(1))
        session.mark_failed("item-5", RuntimeError("broken"), retryable=False)
    return path


# -- help and usage errors ------------------------------------------------------


COMMANDS = ("status", "report", "repair", "compact", "export", "retry", "run", "demo", "batch")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert f"agent-resume {command}" in out


def test_parser_knows_exactly_the_documented_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]


def test_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "status")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("agent-resume: error: ")


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice" in err


def test_missing_store_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "status", str(tmp_path / "missing.jsonl"))
    assert code == 3
    assert err == f"agent-resume: error: {tmp_path / 'missing.jsonl'}: no such checkpoint\n"


def test_store_of_unknown_kind_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "job.txt"
    path.write_text("")
    code, _, err = cli(capsys, "status", str(path))
    assert code == 2
    assert "cannot tell what kind of store" in err


# -- status -----------------------------------------------------------------------


def test_status_counts_done_failed_and_quarantined(
    capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    code, out, _ = cli(capsys, "status", str(checkpoint))
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines()[:7] if line)
    assert lines["job"] == "job-1"
    assert lines["done"] == "3"
    assert lines["failed"].startswith("1 ")
    assert lines["quarantined"] == "1"
    assert "item-5  (1 attempt)  RuntimeError: broken" in out


def test_status_lists_each_quarantined_item_on_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # An error quoting a whole response printed it all, newlines and all.
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as session:
        session.mark_failed("a", ValueError("bad output:\n" + "x" * 500), retryable=False)
        session.mark_failed("b", ValueError("y" * 500), retryable=False)
    code, out, _ = cli(capsys, "status", str(path))
    assert code == 0
    listed = out.split("quarantined items (agent-resume retry releases them):\n")[1].splitlines()
    assert listed[:2] == [
        "  a  (1 attempt)  ValueError: bad output:...",
        f"  b  (1 attempt)  ValueError: {'y' * 188}...",
    ]


def test_status_json_and_max_attempts(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    code, out, _ = cli(capsys, "status", str(checkpoint), "--json", "--max-attempts", "1")
    assert code == 0
    data = json.loads(out)
    assert (data["job_id"], data["done"], data["failed"], data["quarantined"]) == ("job-1", 3, 0, 2)
    assert set(data["quarantined_items"]) == {"item-4", "item-5"}


def test_status_compares_with_an_input(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    rows = [
        {"id": "item-1", "text": "text 1"},  # unchanged
        {"id": "item-2", "text": "text 2, edited"},  # changed
        {"id": "item-4", "text": "text 4"},  # failed before, not new
        {"id": "item-9", "text": "text 9"},  # new
    ]
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = cli(capsys, "status", str(checkpoint), "--items", str(items), "--json")
    assert code == 0
    found = json.loads(out)["input"]
    assert found["new"] == ["item-9"]
    assert found["changed"] == ["item-2"]
    assert sorted(found["vanished"]) == ["item-3", "item-5"]
    assert found["to_do"] == ["item-4", "item-9"]


def test_status_with_key_field(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"ref": "item-1"}\n{"ref": "new-one"}\n')
    code, out, _ = cli(capsys, "status", str(checkpoint), "--items", str(items), "--key", "ref")
    assert code == 0
    assert "new       1" in out
    assert "    new-one" in out


def test_status_shows_runs_and_a_run_that_died(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("r") as session:
        session.record_run({"run": "start", "ts": 1_750_000_000, "pid": 1})
        session.record_run({"run": "start", "ts": 1_750_000_100, "pid": 2})
        report = {"start": 1_750_000_100, "duration": 2.5, "stop": "time_budget", "done": 7}
        report["usage"] = Usage(input_tokens=1200, output_tokens=300, cost_usd=0.5).to_dict()
        session.record_run({"run": "end", "ts": 1_750_000_103, "report": report})
    code, out, _ = cli(capsys, "status", str(path))
    assert code == 0
    assert "killed (no end record)" in out
    assert "time_budget" in out
    assert "1,200/300" in out
    assert "$0.50" in out


def test_status_reports_bad_lines(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    with open(checkpoint, "a", encoding="utf-8") as f:
        f.write("not json\n")
        f.write('{"id": "item-7", "ts": 1}\n')
        f.write('{"id": "torn')
    code, out, _ = cli(capsys, "status", str(checkpoint))
    assert code == 0
    assert "bad lines    1 and a torn last line" in out
    assert "done         4" in out


@pytest.mark.parametrize(
    "bad_usage",
    ['{"in": -7, "calls": "x"}', "[1, 2]", '"lots"', '{"cost": "free"}'],
)
def test_status_and_report_count_a_malformed_usage_as_unknown_and_say_so(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, bad_usage: str
) -> None:
    # A hand-damaged record that is still JSON: its item is done, its usage is
    # not counted, the totals are a lower bound and each command names the item.
    with open(checkpoint, "a", encoding="utf-8") as f:
        f.write(f'{{"id": "item-8", "ts": 1, "usage": {bad_usage}}}\n')
        f.write(
            f'{{"id": "item-9", "ts": 1, "status": "failed", "error": "e", "usage": {bad_usage}}}\n'
        )
        f.write(f'{{"call": "item-9", "a": "t", "ts": 1, "usage": {bad_usage}}}\n')
    warning = "the usage of 3 record(s) is malformed and not counted (item 'item-8', 'item-9')"
    code, out, err = cli(capsys, "status", str(checkpoint))
    assert code == 0
    assert "done         4" in out
    assert "700 tokens in / 70 out, $0.007" in out  # the sound records' usage, all of it
    assert "at least: the usage of 3 record(s) is malformed" in out
    assert warning in err
    code, out, err = cli(capsys, "status", str(checkpoint), "--json")
    data = json.loads(out)
    assert (data["done"], data["total_is_lower_bound"]) == (4, True)
    assert (data["total"]["input_tokens"], data["total"]["cost_usd"]) == (700, 0.007)
    assert warning in err
    code, out, err = cli(capsys, "report", str(checkpoint), "--format", "json")
    assert code == 0
    data = json.loads(out)
    rows = {row["item_id"]: row for row in data["items"]}
    assert (rows["item-8"]["status"], rows["item-8"]["input_tokens"]) == ("done", 0)
    assert (rows["item-9"]["status"], rows["item-9"]["attempts"]) == ("failed", 1)
    assert (data["total"]["items"], data["total"]["input_tokens"]) == (7, 700)
    assert warning in err
    code, out, err = cli(capsys, "report", str(checkpoint))
    assert code == 0
    assert out.splitlines()[-1] == "(the total is a lower bound: some records' usage is malformed)"
    assert warning in err


def test_status_of_a_sound_checkpoint_warns_of_nothing(
    capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    code, out, err = cli(capsys, "status", str(checkpoint), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["total_is_lower_bound"] is False
    code, out, err = cli(capsys, "report", str(checkpoint))
    assert (code, err) == (0, "")
    assert "lower bound" not in out


def test_status_and_export_of_an_original_format_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text('{"id": "item-001", "ts": 1748107200}\n{"id": "item-002", "ts": 1748107201}\n')
    code, out, _ = cli(capsys, "status", str(path))
    assert code == 0
    assert "original-format" in out
    assert "done         2" in out
    # export refused such a file as "holds no job (no agent-resume tables there ...)".
    code, out, err = cli(capsys, "export", str(path))
    assert (code, err) == (0, "")
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["item-001", "item-002"]


def test_status_of_a_sqlite_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'job.db'}"
    with AgentResume(url).resume_or_start("sql-job") as session:
        for item in session.remaining(["a", "b", "c"]):
            if item == "c":
                session.mark_failed(item, ValueError("nope"), retryable=False)
            else:
                session.mark_done(item, result=item.upper(), usage=usage(1))
    code, out, _ = cli(capsys, "status", url, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["job_id"], data["done"], data["quarantined"]) == ("sql-job", 2, 1)
    assert data["created_at"] is not None
    # A plain .db path names the same store.
    code, out, _ = cli(capsys, "export", str(tmp_path / "job.db"))
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "a", "result": "A"},
        {"id": "b", "result": "B"},
    ]


# -- report and export -------------------------------------------------------------------


def test_report_table_totals(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    code, out, _ = cli(capsys, "report", str(checkpoint))
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["item", "status", "attempts", "stop", "calls", "input", "output", "cost"]
    assert rows[1] == ["item-1", "done", "1", "-", "1", "100", "10", "$0.001"]
    assert rows[5][:3] == ["item-5", "quarantined", "1"]
    assert rows[-1] == ["total", "5", "items", "4", "700", "70", "$0.007"]
    code, out, _ = cli(capsys, "report", str(checkpoint), "--no-total")
    assert out.splitlines()[-1].split()[0] == "item-5"


def test_a_job_that_called_no_model_spent_a_known_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    with AgentResume(JsonlStore(str(path))).resume_or_start("job") as session:
        session.mark_done("a")
        session.mark_failed("b", RuntimeError("no model was called"))
    code, out, _ = cli(capsys, "status", str(path))
    assert code == 0
    assert "0 calls, 0 tokens in / 0 out, $0.00" in out
    code, out, _ = cli(capsys, "report", str(path))
    assert out.splitlines()[-1].split() == ["total", "2", "items", "0", "0", "0", "$0.00"]
    for command in ("status", "report"):
        code, out, _ = cli(
            capsys, command, str(path), "--json" if command == "status" else "--format=json"
        )
        assert code == 0
        assert json.loads(out)["total"]["cost_usd"] == 0.0


def test_report_csv_and_json(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    code, out, _ = cli(capsys, "report", str(checkpoint), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["item_id"] for r in rows] == [
        "item-1",
        "item-2",
        "item-3",
        "item-4",
        "item-5",
        "total",
    ]
    assert rows[2]["input_tokens"] == "300"
    assert rows[2]["attempts"] == "1"
    assert rows[-1]["cost_usd"] == "0.007"
    code, out, _ = cli(capsys, "report", str(checkpoint), "--format", "csv", "--no-total")
    assert [r["item_id"] for r in csv.DictReader(io.StringIO(out))][-1] == "item-5"
    code, out, _ = cli(capsys, "report", str(checkpoint), "--format", "json")
    data = json.loads(out)
    assert data["total"] == {
        "items": 5,
        "calls": 4,
        "input_tokens": 700,
        "output_tokens": 70,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.007,
    }
    assert data["by_model"]["m"]["input_tokens"] == 700
    assert list(data["by_model"]) == ["m"]  # item-5 used nothing: no "None" model
    assert [row["item_id"] for row in data["items"]] == [f"item-{n}" for n in range(1, 6)]
    assert data["items"][4]["status"] == "quarantined"
    assert data["items"][3]["cost_usd"] == 0.001
    assert data["items"][4]["cost_usd"] == 0.0  # a failure with no calls cost nothing


def test_report_rows_follow_the_input_order(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"item-{n}"}) + "\n" for n in (3, 1, 5)))
    code, out, _ = cli(capsys, "report", str(checkpoint), "--items", str(items), "--format", "json")
    assert code == 0
    ids = [row["item_id"] for row in json.loads(out)["items"]]
    assert ids == ["item-3", "item-1", "item-5", "item-2", "item-4"]


def test_export_jsonl_csv_and_output_file(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "export", str(checkpoint))
    assert code == 0
    assert [json.loads(line)["result"]["n"] for line in out.splitlines()] == [1, 2, 3]
    target = tmp_path / "out.csv"
    code, out, _ = cli(capsys, "export", str(checkpoint), "--format", "csv", "-o", str(target))
    assert (code, out) == (0, "")
    assert target.read_text().splitlines() == [
        "id,n,text",
        "item-1,1,r1",
        "item-2,2,r2",
        "item-3,3,r3",
    ]


def test_export_csv_of_plain_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    with AgentResume(path).resume_or_start("p") as session:
        session.mark_done("a", result="x, y")
        session.mark_done("b", result=[1, 2])
        session.mark_done("c")
    code, out, _ = cli(capsys, "export", str(path), "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["id", "result"],
        ["a", "x, y"],
        ["b", "[1, 2]"],
        ["c", ""],
    ]


def test_export_csv_keeps_a_results_own_id_as_result_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "responses.db"
    with AgentResume(f"sqlite:///{path}").resume_or_start("r") as session:
        session.mark_done("a", result={"id": "chatcmpl-1", "text": "hi"})
        session.mark_done("b", result={"text": "there"})
    code, out, _ = cli(capsys, "export", str(path), "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["id", "result.id", "text"],
        ["a", "chatcmpl-1", "hi"],
        ["b", "", "there"],
    ]


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_export_over_its_own_store_is_refused_and_the_job_is_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    path = tmp_path / ("job.jsonl" if kind == "jsonl" else "job.db")
    target = str(path) if kind == "jsonl" else f"sqlite:///{path}"
    with AgentResume(target).resume_or_start("keep") as session:
        session.mark_done("a", result=1)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(path)
    before = path.read_bytes()
    # The same file by its own name, another spelling of it, and a symlink to it.
    for output in (str(path), str(tmp_path / "sub" / ".." / path.name), str(tmp_path / "link")):
        code, out, err = cli(capsys, "export", target, "-o", output)
        assert code == 2, (output, out, err)
        assert "it is the store" in err and "erase" in err
    assert path.read_bytes() == before
    code, out, _ = cli(capsys, "status", target, "--json")
    assert (code, json.loads(out)["done"]) == (0, 1)


# -- repair, compact, retry ---------------------------------------------------------------


def test_repair_dry_run_then_repair(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    with open(checkpoint, "a", encoding="utf-8") as f:
        f.write("{broken\n")
        f.write('{"id": "item-8", "ts": 2}\n')
    before = checkpoint.read_bytes()
    code, out, _ = cli(capsys, "repair", str(checkpoint), "--dry-run")
    assert code == 0
    assert "dry run: nothing changed" in out
    assert checkpoint.read_bytes() == before
    code, out, _ = cli(capsys, "repair", str(checkpoint))
    assert code == 0
    assert "1 bad" in out
    assert "the old file is kept as" in out
    assert b"{broken" not in checkpoint.read_bytes()
    code, out, _ = cli(capsys, "repair", str(checkpoint))
    assert "nothing to repair" in out


def test_repair_refuses_a_sqlite_store(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "repair", "sqlite:///x.db")
    assert code == 2
    assert "JSONL" in err


def test_compact_keeps_the_state(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    with AgentResume(ResultJsonlStore(checkpoint)).resume_or_start("job-1") as session:
        session.mark_failed("item-4", ValueError("again"))
    code, out, _ = cli(capsys, "compact", str(checkpoint))
    assert code == 0
    assert "lines before" in out
    code, out, _ = cli(capsys, "status", str(checkpoint), "--json")
    data = json.loads(out)
    assert (data["done"], data["failed"], data["quarantined"]) == (3, 1, 1)


def test_retry_releases_quarantined_by_default(
    capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    code, out, _ = cli(capsys, "retry", str(checkpoint))
    assert code == 0
    assert "released 1 item(s)" in out
    assert "  item-5" in out
    with AgentResume(ResultJsonlStore(checkpoint)).resume_or_start("job-1") as session:
        assert not session.is_quarantined("item-5")
        assert session.attempts("item-4") == 1  # only the quarantined one was released


def test_retry_failed_and_ids(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    code, out, _ = cli(capsys, "retry", str(checkpoint), "--ids", "item-4", "item-1")
    assert code == 0
    assert "skipped item-1: it has no failed attempt to release" in out
    assert "released 1 item(s)" in out
    code, out, _ = cli(capsys, "retry", str(checkpoint), "--failed")
    assert "released 1 item(s)" in out  # item-5 is the only one left
    code, out, _ = cli(capsys, "retry", str(checkpoint), "--failed")
    assert "nothing to release" in out


def test_retry_needs_a_job_id_for_an_original_format_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"id": "a", "ts": 1}\n{"id": "b", "ts": 1, "status": "failed", "error": "E: x"}\n'
    )
    code, _, err = cli(capsys, "retry", str(path), "--failed")
    assert code == 2
    assert "--job-id" in err
    code, out, _ = cli(capsys, "retry", str(path), "--failed", "--job-id", "old")
    assert code == 0
    assert "released 1 item(s)" in out


def test_retry_on_a_locked_job_exits_3(
    capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    with AgentResume(ResultJsonlStore(checkpoint)).resume_or_start("job-1"):
        code, _, err = cli(capsys, "retry", str(checkpoint))
    assert code == 3
    assert "held by a live session" in err


# -- run ------------------------------------------------------------------------------------


JOB = """
import asyncio

CALLS = []

def process(item, ctx):
    if item.get("fail"):
        raise ValueError(f"cannot do {item['id']}")
    ctx.record_usage({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 2}})
    return {"upper": item["text"].upper(), "attempt": ctx.attempt}

async def aprocess(item, ctx):
    await asyncio.sleep(0)
    return item["text"][::-1]

def turns(item, ctx):
    n = 0
    while ctx.should_stop() is None:
        ctx.record_usage({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        n += 1
    return n

def echo(item, ctx):
    n = 0
    while ctx.should_stop() is None:
        ctx.record_usage({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}, text="same")
        n += 1
    return n
"""


@pytest.fixture
def job_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "job_module.py").write_text(JOB)
    rows = [{"id": f"t{n}", "text": f"text {n}"} for n in range(1, 6)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_with_defaults_then_resume(capsys: pytest.CaptureFixture[str], job_dir: Path) -> None:
    code, out, _ = cli(
        capsys, "run", "job_module.py:process", "--items", "items.jsonl", "--no-progress"
    )
    assert code == 0
    assert "job           items" in out
    assert "done          5" in out
    assert (job_dir / "checkpoints" / "items.jsonl").exists()
    code, out, _ = cli(
        capsys, "run", "job_module.py:process", "--items", "items.jsonl", "--no-progress", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert (report["done"], report["already_done"], report["stop_reason"]) == (0, 5, "completed")


def test_run_toml_with_flags_overriding(capsys: pytest.CaptureFixture[str], job_dir: Path) -> None:
    (job_dir / "run.toml").write_text(
        'function = "job_module:process"\nitems = "items.jsonl"\njob-id = "from-toml"\n'
        'store = "out/job.jsonl"\nmax_items = 2\nconcurrency = 2\ntime_budget = "5m"\n'
        "progress = false\n"
    )
    code, out, _ = cli(capsys, "run", "--config", "run.toml")
    assert code == 1  # the item budget left work to do
    assert "stopped       item_budget" in out
    assert "job           from-toml" in out
    code, out, _ = cli(capsys, "run", "--config", "run.toml", "--max-items", "10")
    assert code == 0
    assert "done          3" in out
    code, out, _ = cli(capsys, "status", "out/job.jsonl", "--json")
    assert json.loads(out)["done"] == 5


def test_run_bills_at_the_rates_of_a_toml_price_file(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    # Model names have dashes; the flags' spelling (`job-id`) must not touch them.
    (job_dir / "prices.toml").write_text('["gpt-4o-mini"]\ninput = 2.0\noutput = 2.0\n')
    argv = ["run", "job_module.py:process", "--items", "items.jsonl", "--no-progress", "--json"]
    code, out, err = cli(capsys, *argv, "--prices", "prices.toml")
    assert code == 0, err
    assert json.loads(out)["usage"]["cost_usd"] == pytest.approx(5 * 12 * 2.0 / 1e6)


def test_files_saved_with_a_byte_order_mark_and_crlf_are_read(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    # Notepad and Excel write UTF-8 with a BOM and Windows line ends.
    bom = b"\xef\xbb\xbf"
    (job_dir / "items.jsonl").write_bytes(
        bom + b'{"id": "a", "text": "x"}\r\n{"id": "b", "text": "y"}\r\n\r\n'
    )
    (job_dir / "run.toml").write_bytes(bom + b'job-id = "bom"\r\nprogress = false\r\n')
    (job_dir / "prices.json").write_bytes(bom + b'{"gpt-4o-mini": {"input": 1, "output": 1}}')
    (job_dir / "prices.toml").write_bytes(bom + b'["gpt-4o-mini"]\ninput = 2\noutput = 2\n')
    for prices, cost in (("prices.json", 24e-6), ("prices.toml", 48e-6)):
        code, out, err = cli(
            capsys,
            *("run", "job_module.py:process", "--items", "items.jsonl", "--config", "run.toml"),
            *("--prices", prices, "--store", f"{prices}.jsonl", "--json"),
        )
        assert code == 0, err
        report = json.loads(out)
        assert (report["job_id"], report["done"]) == ("bom", 2)
        assert report["usage"]["cost_usd"] == pytest.approx(cost)
    assert PriceTable.from_file(job_dir / "prices.toml", genai_prices=False).lookup("gpt-4o-mini")


def test_run_failures_quarantine_and_exit_1(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    (job_dir / "items.jsonl").write_text(
        '{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "fail": true}\n'
    )
    argv = ["run", "job_module.py:process", "--items", "items.jsonl", "--no-progress"]
    code, out, _ = cli(capsys, *argv, "--max-attempts", "1")
    assert code == 1
    assert "quarantined   1" in out
    code, out, _ = cli(capsys, "status", "checkpoints/items.jsonl", "--max-attempts", "1")
    assert "b  (1 attempt)  ValueError: cannot do b" in out


def test_run_fail_fast_exits_4(capsys: pytest.CaptureFixture[str], job_dir: Path) -> None:
    (job_dir / "items.jsonl").write_text('{"id": "b", "text": "y", "fail": true}\n')
    code, _, err = cli(
        capsys,
        "run",
        "job_module.py:process",
        "--items",
        "items.jsonl",
        "--fail-fast",
        "--no-progress",
    )
    assert code == 4
    assert err == (
        "agent-resume: error: stopped at the first failure (--fail-fast): ValueError: cannot do b\n"
    )


def test_run_an_async_function(capsys: pytest.CaptureFixture[str], job_dir: Path) -> None:
    code, out, _ = cli(
        capsys, "run", "job_module:aprocess", "--items", "items.jsonl", "--no-progress",
        "--store", "sqlite:///async.db", "--concurrency", "3",
    )  # fmt: skip
    assert code == 0
    code, out, _ = cli(capsys, "export", "async.db")
    assert json.loads(out.splitlines()[0]) == {"id": "t1", "result": "1 txet"}


def test_run_an_object_with_an_async_call(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    (job_dir / "callable_job.py").write_text(
        "class Job:\n"
        "    async def __call__(self, item, ctx):\n"
        "        return item['text'].upper()\n"
        "job = Job()\n"
    )
    argv = ["run", "callable_job.py:job", "--items", "items.jsonl", "--no-progress", "--json"]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["done"] == 5


@pytest.mark.parametrize(("call", "shown"), [("sys.exit(0)", "0"), ("sys.exit()", "None")])
def test_run_whose_function_calls_sys_exit_exits_4_and_says_so(
    capsys: pytest.CaptureFixture[str], job_dir: Path, call: str, shown: str
) -> None:
    (job_dir / "exiting.py").write_text(f"import sys\ndef process(item, ctx):\n    {call}\n")
    argv = ["run", "exiting.py:process", "--items", "items.jsonl", "--no-progress"]
    code, out, err = cli(capsys, *argv)
    # Not 0 ("every item done"), and not silent.
    assert (code, out) == (4, "")
    assert err == f"agent-resume: error: stopped: the job's code called sys.exit({shown})\n"


def test_run_stop_conditions_from_flags_and_toml(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    argv = ["run", "job_module.py:turns", "--items", "items.jsonl", "--no-progress"]
    code, _, _ = cli(capsys, *argv, "--stop-max-turns", "3", "--store", "a.jsonl")
    assert code == 0
    _, out, _ = cli(capsys, "export", "a.jsonl")
    assert {json.loads(line)["result"] for line in out.splitlines()} == {3}
    (job_dir / "run.toml").write_text("[stop]\nmax_turns = 5\nmax_tokens = 4\n")
    code, _, _ = cli(capsys, *argv, "--config", "run.toml", "--store", "b.jsonl")
    assert code == 0
    _, out, _ = cli(capsys, "export", "b.jsonl")
    assert {json.loads(line)["result"] for line in out.splitlines()} == {2}


def test_run_repeated_output_flag_and_its_deprecated_spelling(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    argv = ["run", "job_module.py:echo", "--items", "items.jsonl", "--no-progress"]
    code, _, err = cli(capsys, *argv, "--stop-repeated-output", "3", "--store", "a.jsonl")
    assert (code, err) == (0, "")
    _, out, _ = cli(capsys, "export", "a.jsonl")
    assert {json.loads(line)["result"] for line in out.splitlines()} == {3}
    code, _, err = cli(capsys, *argv, "--stop-no-progress", "2", "--store", "b.jsonl")
    assert code == 0
    assert "no_progress N (N identical outputs) is deprecated; use repeated_output N" in err
    _, out, _ = cli(capsys, "export", "b.jsonl")
    assert {json.loads(line)["result"] for line in out.splitlines()} == {2}


def test_run_max_idle_from_toml_builds_an_idle_time_condition(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    from agent_resume import NoProgress
    from agent_resume._cli._run import _stop

    condition = _stop({"max_idle": 30, "max_turns": 2}, "run.toml")
    assert repr(condition) == "NoProgress(max_idle=30.0) | MaxTurns(2)"
    assert isinstance(condition.conditions[0], NoProgress)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["job_module.py:nope"], "has no attribute 'nope'"),
        (["no_such_module:f"], "cannot import no_such_module"),
        (["job_module.py"], "expected MODULE:FUNC"),
        (["job_module.py:process", "--concurrency", "0"], "`concurrency` must be at least 1"),
        (["job_module.py:process", "--time-budget", "soon"], "time_budget"),
        (["job_module.py:process", "--config", "missing.toml"], "cannot read the config file"),
        (["job_module.py:process", "--stop-max-turns", "0"], "must be at least 1"),
    ],
)
def test_run_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], job_dir: Path, argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "run", *argv, "--items", "items.jsonl", "--no-progress")
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


def test_run_rejects_unknown_toml_keys_and_bad_items(
    capsys: pytest.CaptureFixture[str], job_dir: Path
) -> None:
    (job_dir / "run.toml").write_text("max_itmes = 3\n")
    code, _, err = cli(
        capsys, "run", "job_module.py:process", "--items", "items.jsonl", "--config", "run.toml"
    )
    assert code == 2
    assert "unknown setting(s) max_itmes" in err
    (job_dir / "bad.jsonl").write_text('{"id": "a"}\nnot json\n')
    code, _, err = cli(capsys, "run", "job_module.py:process", "--items", "bad.jsonl")
    assert code == 2
    assert "bad.jsonl:2: not a JSON value" in err


@pytest.mark.parametrize(
    ("lines", "flags", "message"),
    [
        (
            '{"id": "a"}\n\n{"id": 2.5}\n',
            (),
            "ids.jsonl:3: the ID must be a string or an integer, got float (2.5)",
        ),
        (
            '{"id": "a"}\n{"name": "b"}\n',
            (),
            "ids.jsonl:2: no ID in {'name': 'b'}: give each item an 'id' field",
        ),
        ('"a"\n""\n', (), "ids.jsonl:2: `item ID` must not be empty"),
        (
            '{"k": 1}\n{"k": [1]}\n',
            ("--key", "k"),
            "ids.jsonl:2: field 'k' must be a string or an integer, got list",
        ),
        ('{"k": 1}\n{"id": 2}\n', ("--key", "k"), "ids.jsonl:2: an item has no field 'k'"),
    ],
)
def test_run_refuses_an_item_without_a_usable_id_before_it_starts(
    capsys: pytest.CaptureFixture[str],
    job_dir: Path,
    lines: str,
    flags: tuple[str, ...],
    message: str,
) -> None:
    # Before, a float ID was found by the run itself: a traceback-free error,
    # but with no line, advice about key= that a CLI user cannot follow, and
    # the run left in the checkpoint as killed.
    (job_dir / "ids.jsonl").write_text(lines)
    code, _, err = cli(capsys, "run", "job_module.py:process", "--items", "ids.jsonl", *flags)
    assert (code, err.count("\n")) == (2, 1), err
    assert message in err
    assert "remaining()" not in err
    assert not (job_dir / "checkpoints").exists()  # no run started
    assert cli(capsys, "run", "job_module.py:process", "--items", "items.jsonl")[0] == 0
    for command in ("report", "status"):  # they read items as run does
        code, _, err = cli(
            capsys, command, "checkpoints/items.jsonl", "--items", "ids.jsonl", *flags
        )
        assert code == 2 and message in err, (command, err)


def test_durations_use_the_library_parser(capsys: pytest.CaptureFixture[str]) -> None:
    from agent_resume import RunConfig
    from agent_resume._cli._run import _settings

    args = build_parser().parse_args(
        [
            *("run", "f.py:g", "--time-budget", "1h30m", "--item-timeout", "250ms"),
            *("--grace-period", "0", "--progress-interval", "90"),
        ]
    )
    config, _ = _settings(args)
    made = RunConfig(job_id="j", store="memory:", **config)
    assert (made.time_budget, made.item_timeout, made.grace_period) == (5400.0, 0.25, 0.0)
    assert made.progress_interval == 90.0


def test_run_flags_are_derived_from_every_runconfig_field() -> None:
    import dataclasses

    from agent_resume import RunConfig
    from agent_resume._cli._run import NOT_FLAGS

    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {flag for action in run_parser._actions for flag in action.option_strings}
    for field in dataclasses.fields(RunConfig):
        if field.name in NOT_FLAGS:
            continue
        assert "--" + field.name.replace("_", "-") in flags, field.name
    assert "--signals" in flags  # the older spelling of --handle-signals stays


def test_finish_by_takes_z_and_offsets(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timezone

    from agent_resume._cli._run import _settings

    for text in ("2030-05-25T06:00:00Z", "2030-05-25 08:00+02:00", "2030-05-25T06:00:00.000Z"):
        config, _ = _settings(build_parser().parse_args(["run", "--finish-by", text]))
        assert config["finish_by"] == datetime(2030, 5, 25, 6, tzinfo=timezone.utc), text


def test_export_to_stdout_with_dash(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkpoint.parent)
    code, out, _ = cli(capsys, "export", str(checkpoint), "-o", "-")
    assert code == 0
    assert json.loads(out.splitlines()[0]) == {"id": "item-1", "result": {"n": 1, "text": "r1"}}
    assert not (checkpoint.parent / "-").exists()


def test_run_reads_items_from_stdin(job_dir: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "agent_resume", "run", "job_module.py:process"),
            *("--items", "-", "--job-id", "piped", "--no-progress", "--json"),
        ],
        input='{"id": "p1", "text": "x"}\n{"id": "p2", "text": "y"}\n',
        capture_output=True,
        text=True,
        cwd=job_dir,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["done"] == 2
    assert (job_dir / "checkpoints" / "piped.jsonl").exists()


def test_status_and_config_read_stdin(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    os.write(write, b'{"id": "item-1", "text": "text 1"}\n{"id": "new", "text": "n"}\n')
    os.close(write)
    stdin = os.fdopen(read, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        code, out, _ = cli(capsys, "status", str(checkpoint), "--items", "-", "--json")
    finally:
        stdin.close()
    assert code == 0
    assert json.loads(out)["input"]["new"] == ["new"]


# -- as a real process ------------------------------------------------------------------------


def test_module_entry_point_help_and_version() -> None:
    result = subprocess_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    result = subprocess_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("agent-resume ")


def test_subprocess_error_is_one_line(tmp_path: Path) -> None:
    result = subprocess_cli("report", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"agent-resume: error: {tmp_path / 'nope.jsonl'}: no such checkpoint"
    ]


def test_subprocess_run_shows_progress_on_stderr(job_dir: Path) -> None:
    result = subprocess_cli(
        "run", "job_module:process", "--items", "items.jsonl", "--progress", "log", cwd=job_dir
    )
    assert result.returncode == 0, result.stderr
    assert "done          5" in result.stdout
    assert "agent-resume: items: 5/5 done" in result.stderr


def test_demo_of_five_tickets_says_one_ticket(tmp_path: Path) -> None:
    result = subprocess_cli("demo", "--dir", str(tmp_path), "--items", "5")
    assert result.returncode == 0, result.stderr
    assert "run 1: killed by signal 9; 1 ticket was checkpointed" in result.stdout


def test_demo_crashes_resumes_and_reports(tmp_path: Path) -> None:
    result = subprocess_cli("demo", "--dir", str(tmp_path), "--items", "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "it will be killed (SIGKILL) when it reaches ticket 8" in out
    assert "run 1: killed by signal 9; 7 tickets were checkpointed" in out
    assert "already done  7" in out
    assert "done          13" in out
    assert "whole job (both runs): 20 of 20 tickets done, 40 calls" in out
    assert "cost          $" in out
    again = subprocess_cli("demo", "--dir", str(tmp_path))
    assert again.returncode == 2
    assert "exists from an earlier demo" in again.stderr


def test_demo_output_is_deterministic_apart_from_times(tmp_path: Path) -> None:
    import re

    def stable(text: str) -> list[str]:
        text = text.replace(str(tmp_path), "DIR")
        return [
            line
            for line in text.splitlines()
            if not line.startswith(("started", "duration")) and "DIR" not in line
        ]

    first = subprocess_cli("demo", "--dir", str(tmp_path / "a"), "--items", "10")
    second = subprocess_cli("demo", "--dir", str(tmp_path / "b"), "--items", "10")
    assert first.returncode == second.returncode == 0
    assert stable(first.stdout.replace("/a/", "/")) == stable(second.stdout.replace("/b/", "/"))
    assert re.search(r"tokens +[\d,]+ in / [\d,]+ out", first.stdout)


@pytest.mark.postgres
def test_status_report_export_and_retry_on_postgres(
    capsys: pytest.CaptureFixture[str], pg_dsn: str
) -> None:
    with AgentResume(pg_dsn).resume_or_start("pg-job") as session:
        for item in session.remaining(["a", "b", "c"]):
            if item == "c":
                session.mark_failed(item, ValueError("nope"), retryable=False)
            else:
                session.mark_done(item, result={"v": item}, usage=usage(2))
    code, out, _ = cli(capsys, "status", pg_dsn, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["job_id"], data["done"], data["quarantined"]) == ("pg-job", 2, 1)
    code, out, _ = cli(capsys, "report", pg_dsn, "--format", "csv")
    assert out.splitlines()[-1].startswith("total,,,,,,2,400,40")
    code, out, _ = cli(capsys, "export", pg_dsn, "--format", "csv")
    assert out.splitlines() == ["id,v", "a,a", "b,b"]
    code, out, _ = cli(capsys, "retry", pg_dsn)
    assert (code, out.splitlines()[0]) == (0, "released 1 item(s); the next run tries them again")
    code, out, _ = cli(capsys, "status", pg_dsn, "--json")
    assert json.loads(out)["quarantined"] == 0


@pytest.mark.postgres
def test_a_postgres_url_is_shown_without_its_password_and_a_wrong_schema_is_an_error(
    capsys: pytest.CaptureFixture[str], pg_dsn: str
) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    # The test server trusts local connections: any password is accepted.
    secret = urlunsplit(parts._replace(netloc=f"{user}:hunter2@{host}"))
    with AgentResume(secret).resume_or_start("pg-job") as session:
        session.mark_done("a")
    code, out, _ = cli(capsys, "status", secret)
    assert code == 0 and "hunter2" not in out
    assert f"{user}:***@{host}" in out
    code, out, _ = cli(capsys, "status", secret, "--json")
    assert "hunter2" not in out and json.loads(out)["job_id"] == "pg-job"
    # A typo in ?schema= is not an empty job: every reading command refuses it.
    typo = secret + "?schema=nightyl"
    for command in ("status", "report", "export", "retry", "batch"):
        code, out, err = cli(capsys, command, typo)
        assert (code, out) == (3, ""), (command, err)
        assert "holds no job" in err and "?schema=" in err and "hunter2" not in err, err


def test_status_of_an_empty_sqlite_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A SQLite file with no tables: no job was ever opened there. Before, it
    # read as an empty job (exit 0), as a PostgreSQL schema with a typo did.
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    code, out, err = cli(capsys, "status", str(path), "--json")
    assert (code, out) == (3, "")
    assert f"{path}: holds no job" in err


def test_the_command_line_reads_stores_only_through_the_store_api() -> None:
    """No SQL driver, no private store module (but the JSONL rewrites), no private attribute."""
    import ast

    package = Path(SRC) / "agent_resume" / "_cli"
    wrong = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in ("sqlite3", "psycopg", "psycopg2"):
                    wrong.append(f"{path.name}: imports {name}")
                if name.startswith("agent_resume.stores._") and name != (
                    "agent_resume.stores._jsonl_maint"
                ):
                    wrong.append(f"{path.name}: imports {name}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in ("store", "view", "session")
            ):
                wrong.append(f"{path.name}:{node.lineno}: reads {node.value.id}.{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
            ):
                wrong.append(f"{path.name}:{node.lineno}: getattr of {node.args[1].value}")
    assert wrong == []


def test_status_pairs_each_end_with_its_own_start_when_workers_share_a_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Two workers on one SQLite job: start A, start B, end A, end B. The second
    # start closed the first as "killed", a run that never was.
    from agent_resume import ResumableRun, RunConfig
    from agent_resume._cli._reports import run_documents

    path = tmp_path / "one.jsonl"
    for items in (["a"], ["b", "c"]):
        ResumableRun(RunConfig(job_id="w", store=path, progress=False)).run(
            lambda item, ctx: item, items
        )
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    starts = [r for r in records if r.get("run") == "start"]
    ends = [r for r in records if r.get("run") == "end"]
    items = [r for r in records if "id" in r]
    assert len(starts) == len(ends) == 2 and all("pid" in r for r in ends)
    for n, (start, end) in enumerate(zip(starts, ends, strict=True)):
        start["pid"] = end["pid"] = 100 + n  # two processes
    interleaved = [starts[0], starts[1], *items, ends[0], ends[1]]
    runs = run_documents(interleaved)
    assert [run["stop_reason"] for run in runs] == ["completed", "completed"]
    assert [run["done"] for run in runs] == [1, 2]
    # One truly killed worker among them is still shown as killed, in start order.
    runs = run_documents([starts[0], starts[1], *items, ends[1]])
    assert [run["stop_reason"] for run in runs] == ["killed", "completed"]
    # End records of older versions name no process: each closes the last start.
    for end in ends:
        del end["pid"]
    runs = run_documents([starts[0], ends[0], starts[1], *items, ends[1]])
    assert [run["stop_reason"] for run in runs] == ["completed", "completed"]


def test_a_second_ctrl_c_during_run_says_what_it_left_unrecorded(job_dir: Path) -> None:
    import signal
    import subprocess
    import time

    (job_dir / "slow.py").write_text(
        "import sys, time\n"
        "def process(item, ctx):\n"
        "    print('START', flush=True)\n"
        "    time.sleep(30)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = ["run", "slow.py:process", "--items", "items.jsonl", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_resume", *argv, "--concurrency", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # As from a terminal: a suite run in the background hands SIGINT on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "START\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # (not a measurement: the first signal is handled before the second)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "SIGINT again: run aborted, 2 item(s) in flight not recorded" in err, err
