"""Every command against every kind of malformed input: one line on stderr, a documented code.

A table of (command, input) cases: each case builds its input in a fresh
directory, runs the command through ``main()`` with captured output, and checks
that stderr holds only ``agent-resume: ...`` lines (no traceback), that an
error is exactly one ``agent-resume: error: ...`` line naming what went wrong,
and that the exit code is the documented one. A sample runs again as a real
process, so that nothing is printed at interpreter exit either.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_resume import AgentResume, ResultJsonlStore, Usage
from agent_resume._cli._exits import EXIT_INTERNAL
from agent_resume._cli._main import main

SRC = str(Path(__file__).resolve().parents[1] / "src")

# -- inputs ---------------------------------------------------------------------------


def _good_jsonl(path: Path) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a", result={"x": 1}, usage=Usage(input_tokens=3, cost_usd=0.1))
        s.mark_failed("b", ValueError("no"), retryable=False)


def _good_db(path: Path) -> None:
    with AgentResume(f"sqlite:///{path}").resume_or_start("job") as s:
        for item in s.remaining(["a", "b"]):
            if item == "a":
                s.mark_done(item, result={"x": 1})
            else:
                s.mark_failed(item, ValueError("no"), retryable=False)


def _write(text: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return make


def _mkdir(path: Path) -> None:
    path.mkdir()


def _db_with_dir_as_wal(path: Path) -> None:
    _good_db(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
        Path(f"{path}{suffix}").mkdir()


def _foreign_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key, value)")
    conn.execute("INSERT INTO meta VALUES ('job_id', 'x'), ('created', 'not a number')")
    conn.execute("CREATE TABLE events (seq, kind, item_id, record)")
    conn.execute("INSERT INTO events VALUES (1, 'failed', 'a', '{not json')")
    conn.commit()
    conn.close()


def _symlink_to_devnull(path: Path) -> None:
    path.symlink_to(os.devnull)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere.jsonl")


HEADER = '{"agent_resume": 1, "job_id": "job", "created": 1}\n'
NESTED = "[" * 100_000

# name -> (file name, builder or None for "leave missing")
STORES: dict[str, tuple[str, Callable[[Path], None] | None]] = {
    "missing-jsonl": ("missing.jsonl", None),
    "missing-db": ("missing.db", None),
    "dir-jsonl": ("dir.jsonl", _mkdir),
    "dir-db": ("dir.db", _mkdir),
    "text-as-db": ("text.db", _write("this is not a database\n" * 20)),
    "binary-as-db": ("bin.db", _write(bytes(range(256)) * 8)),
    "devnull-link": ("null.jsonl", _symlink_to_devnull),
    "dangling-link": ("dangling.jsonl", _dangling_symlink),
    "db-wal-is-dir": ("walled.db", _db_with_dir_as_wal),
    "foreign-db": ("foreign.db", _foreign_db),
    "newer-format": ("newer.jsonl", _write('{"agent_resume": 99, "job_id": "job"}\n')),
    "surrogate-ids": (
        "surrogate.jsonl",
        _write(
            HEADER
            + '{"id": "\\udc80", "ts": 1, "result": "\\ud800!", "usage": {"input": 2}}\n'
            + '{"id": "b\\udfff", "ts": 1, "status": "failed", "error": "E: \\udc00", '
            '"attempts": 9, "retryable": false}\n'
        ),
    ),
    "nested-line": ("nested.jsonl", _write(HEADER + NESTED + "\n")),
    "not-utf8": ("latin.jsonl", _write(HEADER.encode() + b'{"id": "caf\xe9", "ts": 1}\n')),
    "binary-jsonl": ("bin.jsonl", _write(bytes(range(256)) * 4)),
    "bad-header-types": (
        "types.jsonl",
        _write('{"agent_resume": 1, "job_id": 5, "created": "x"}\n'),
    ),
    "torn-and-bad": ("torn.jsonl", _write(HEADER + 'not json\n{"id": "a", "ts": 1}\n{"id": "t')),
    "unknown-kind": ("job.txt", _write("")),
    "stdin": ("-", None),
    "memory": ("memory:", None),
    "ftp-url": ("ftp://example.com/x.jsonl", None),
}

# What each store input gives to the reading commands: (exit code, a fragment of stderr).
# A code of None means "0 or 3": the store library may skip what it cannot read with a
# warning (exit 0) or refuse the file (exit 3); either is documented, a traceback is not.
READ_EXPECT: dict[str, tuple[int | None, str]] = {
    "missing-jsonl": (3, "no such checkpoint"),
    "missing-db": (3, "no such checkpoint"),
    "dir-jsonl": (3, "is a directory"),
    "dir-db": (3, "is a directory"),
    "text-as-db": (3, "not a SQLite database"),
    "binary-as-db": (3, "not a SQLite database"),
    "devnull-link": (3, "not a regular file"),
    "dangling-link": (3, "no such checkpoint"),
    "db-wal-is-dir": (3, "walled.db"),
    "foreign-db": (None, ""),
    "newer-format": (3, "newer"),
    "surrogate-ids": (0, ""),
    "nested-line": (None, ""),
    "not-utf8": (0, ""),
    "binary-jsonl": (None, ""),
    "bad-header-types": (None, ""),
    "torn-and-bad": (0, ""),
    "unknown-kind": (2, "cannot tell what kind of store"),
    "stdin": (2, "standard input"),
    "memory": (2, "in-memory store"),
    "ftp-url": (2, "URL"),
}

READ_COMMANDS = {
    "status": ["status", "{store}"],
    "status-json": ["status", "{store}", "--json"],
    "report": ["report", "{store}"],
    "report-csv": ["report", "{store}", "--format", "csv"],
    "report-json": ["report", "{store}", "--format", "json"],
    "export": ["export", "{store}"],
    "export-csv": ["export", "{store}", "--format", "csv"],
    "export-file": ["export", "{store}", "-o", "out.jsonl"],
}

JOB_PY = "def process(item, ctx):\n    return {'seen': item}\n"


@dataclass(frozen=True)
class Case:
    """One command run against one input."""

    id: str
    argv: tuple[str, ...]
    files: tuple[tuple[str, Callable[[Path], None]], ...]
    code: int | None  # None: 0 or 3
    fragment: str
    stdin: bytes = b""


def _store_cases() -> list[Case]:
    cases = []
    for store_id, (name, build) in STORES.items():
        files = ((name, build),) if build is not None else ()
        code, fragment = READ_EXPECT[store_id]
        for command_id, template in READ_COMMANDS.items():
            argv = tuple(a.format(store=name) for a in template)
            cases.append(Case(f"{command_id}-{store_id}", argv, files, code, fragment))
        # retry opens a session, which is stricter than a reader.
        retry_code, retry_frag = {
            "surrogate-ids": (2, "lone surrogate"),
            "binary-jsonl": (None, ""),
        }.get(store_id, (code, fragment))
        cases.append(Case(f"retry-{store_id}", ("retry", name), files, retry_code, retry_frag))
        if name.endswith(".jsonl") or store_id in ("stdin",):
            for maint in (("repair",), ("repair", "--dry-run"), ("compact",)):
                mcode, mfrag = code, fragment
                if store_id in ("surrogate-ids", "not-utf8", "torn-and-bad"):
                    mcode, mfrag = 0, ""
                if store_id == "stdin":
                    mcode, mfrag = 2, "JSONL checkpoints"
                cases.append(
                    Case(f"{'-'.join(maint)}-{store_id}", (*maint, name), files, mcode, mfrag)
                )
        run_argv = ("run", "job.py:process", "--items", "items.jsonl", "--no-progress")
        run_files = (*files, ("job.py", _write(JOB_PY)), ("items.jsonl", _write('{"id": "z"}\n')))
        if True:
            run_code, run_frag = code, fragment
            if store_id in ("missing-jsonl", "missing-db", "dangling-link"):
                run_code, run_frag = 0, ""  # a new checkpoint (through the link)
            if store_id in ("not-utf8", "torn-and-bad", "foreign-db", "binary-jsonl"):
                run_code, run_frag = None, ""  # another job, or a damaged one: refused or run
            if store_id == "surrogate-ids":
                run_code, run_frag = 1, ""  # runs; its quarantined item is work left
            if store_id == "ftp-url":
                run_code, run_frag = 2, "URL"
            cases.append(
                Case(
                    f"run-store-{store_id}",
                    (*run_argv, "--store", name, "--job-id", "job"),
                    run_files,
                    run_code,
                    run_frag,
                )
            )
    return cases


ITEMS: dict[str, tuple[Callable[[Path], None] | None, int, str]] = {
    "missing": (None, 2, "cannot read the items file"),
    "directory": (_mkdir, 2, "cannot read the items file"),
    "not-json": (_write('{"id": "a"}\n{not json\n'), 2, "items.jsonl:2: not a JSON value"),
    "not-utf8": (_write(b'"caf\xe9"\n'), 2, "items.jsonl:1: not UTF-8"),
    "nested": (_write(NESTED + "\n"), 2, "items.jsonl:1: a JSON value nested too deeply"),
    "surrogate-id": (_write('"\\udc80"\n'), 2, "lone surrogate"),
    "no-id": (_write('{"text": "no id"}\n'), 2, "ID"),
    "bool-id": (_write('{"id": true}\n'), 2, "ID"),
}


def _items_cases() -> list[Case]:
    cases = []
    for items_id, (build, code, fragment) in ITEMS.items():
        files: tuple[tuple[str, Callable[[Path], None]], ...] = (
            (("items.jsonl", build),) if build is not None else ()
        )
        base = (("job.py", _write(JOB_PY)), ("good.db", _good_db))
        cases.append(
            Case(
                f"run-items-{items_id}",
                ("run", "job.py:process", "--items", "items.jsonl", "--no-progress"),
                (*base, *files),
                code,
                fragment,
            )
        )
        cases.append(
            Case(
                f"status-items-{items_id}",
                ("status", "good.db", "--items", "items.jsonl"),
                (*base, *files),
                code,
                fragment,
            )
        )
    return cases


def _config_cases() -> list[Case]:
    job = (("job.py", _write(JOB_PY)), ("items.jsonl", _write('{"id": "z"}\n')))
    run = ("run", "job.py:process", "--items", "items.jsonl", "--no-progress")
    # (TOML text, exit code, fragment); the flags are left out where they would override.
    tomls: dict[str, tuple[str | bytes, int, str]] = {
        "garbage": ("this = = garbage\n[[", 2, "invalid TOML"),
        "not-utf8": (b"job_id = '\xff'\n", 2, "invalid TOML"),
        "wrong-type": ('concurrency = "many"\n', 2, "concurrency"),
        "bool-as-int": ("max_items = true\n", 2, "max_items"),
        "unknown-key": ("max_itmes = 3\n", 2, "unknown setting(s) max_itmes"),
        "bad-duration": ('time_budget = "soon"\n', 2, "time_budget"),
        "negative-duration": ("time_budget = -5\n", 2, "time_budget"),
        "bad-time": ('finish_by = "tomorrow"\n', 2, "finish_by"),
        "bad-choice": ('on_change = "maybe"\n', 2, "on_change"),
        "bad-progress": ('progress = "loud"\n', 2, "progress"),
        "bad-stop": ("stop = 5\n", 2, "stop must be a table"),
        "unknown-stop": ("[stop]\nmax_turnz = 3\n", 2, "unknown stop condition"),
        "bad-phrases": ("[stop]\nphrases = [1, 2]\n", 2, "phrases"),
        "bad-stop-value": ("[stop]\nmax_turns = 0\n", 2, "at least 1"),
        "bad-prices": ('prices = "nowhere.json"\n', 2, "cannot read the price table"),
        "prices-not-table": ("prices = 5\n", 2, "prices"),
        "bad-price-entry": ('[prices.m]\ninput = "free"\n', 2, "price of 'm'"),
        "store-not-text": ("store = 5\n", 2, "store"),
        "store-dir": ('store = "dir.jsonl"\n', 3, "is a directory"),
        "hook-not-importable": ('on_item_done = "nope:f"\n', 2, "cannot import nope"),
        "hook-not-text": ("on_stop = 3\n", 2, "on_stop"),
        "function-not-text": ("function = 3\n", 2, "function"),
        "nested": ("a = " + "[" * 5000 + "]" * 5000 + "\n", 2, "invalid TOML"),
    }
    cases = []
    bare = ("run", "--config", "run.toml")
    for toml_id, (text, code, fragment) in tomls.items():
        files = (*job, ("run.toml", _write(text)), ("dir.jsonl", _mkdir))
        argv = (*run, "--config", "run.toml")
        if toml_id == "bad-progress":
            argv = (*bare, "job.py:process", "--items", "items.jsonl")
        if toml_id == "function-not-text":
            argv = (*bare, "--items", "items.jsonl")
        cases.append(Case(f"run-toml-{toml_id}", argv, files, code, fragment))
    flags = {
        "missing-config": (("--config", "missing.toml"), "cannot read the config file"),
        "dir-config": (("--config", "job.py/"), "cannot read the config file"),
        "bad-int": (("--max-items", "many"), "max_items"),
        "zero-concurrency": (("--concurrency", "0"), "`concurrency` must be at least 1"),
        "nan-cost": (("--max-cost-usd", "nan"), "max_cost_usd"),
        "negative-budget": (("--time-budget", "-5"), "time_budget"),
        "bad-finish-by": (("--finish-by", "2030-13-45T99:00:00Z"), "finish_by"),
        "garbage-finish-by": (("--finish-by", "soon"), "finish_by"),
        "bad-prices-file": (("--prices", "job.py"), "cannot read the price table"),
        "missing-prices": (("--prices", "none.json"), "cannot read the price table"),
        "surrogate-job-id": (("--job-id", "\udc80"), "lone surrogate"),
        "two-stdins": (("--config", "-", "--prices", "-"), "only one input"),
        "bad-key": (("--key", "nope"), "no field 'nope'"),
        "bad-stop-flag": (("--stop-max-turns", "0"), "at least 1"),
        "stop-not-importable": (("--stop", "nope:X"), "cannot import nope"),
        "unknown-flag": (("--frobnicate",), "unrecognized arguments"),
    }
    for flag_id, (extra, fragment) in flags.items():
        cases.append(Case(f"run-flag-{flag_id}", (*run, *extra), job, 2, fragment))
    cases += [
        Case("run-no-function", ("run", "--items", "items.jsonl"), job, 2, "MODULE:FUNC"),
        Case("run-no-items", ("run", "job.py:process"), job, 2, "--items"),
        Case(
            "run-missing-module", ("run", "nope.py:f", "--items", "items.jsonl"), job, 2, "nope.py"
        ),
        Case(
            "run-module-raises",
            ("run", "boom.py:f", "--items", "items.jsonl"),
            (*job, ("boom.py", _write("raise SystemExit('no')\n"))),
            2,
            "cannot import boom.py",
        ),
        Case(
            "run-not-callable",
            ("run", "job.py:JOB", "--items", "items.jsonl"),
            (("job.py", _write("JOB = 3\n")), job[1]),
            2,
            "not callable",
        ),
        Case(
            "run-hook-raises",
            (
                *("run", "job.py:process", "--items", "items.jsonl", "--no-progress"),
                *("--on-item-done", "hook.py:boom", "--store", "h.jsonl"),
            ),
            (*job, ("hook.py", _write("def boom(outcome):\n    1 / 0\n"))),
            4,
            "ZeroDivisionError",
        ),
        Case(
            "run-stdin-items-without-job-id",
            ("run", "job.py:process", "--items", "-"),
            job,
            2,
            "--job-id",
            b'{"id": "a"}\n',
        ),
        Case(
            "run-stdin-bad-items",
            ("run", "job.py:process", "--items", "-", "--job-id", "j", "--no-progress"),
            job,
            2,
            "<stdin>:1: not a JSON value",
            b"{oops\n",
        ),
        Case(
            "run-stdin-bad-config",
            ("run", "job.py:process", "--config", "-", "--items", "items.jsonl"),
            job,
            2,
            "<stdin>: invalid TOML",
            b"= =\n",
        ),
    ]
    return cases


def _other_cases() -> list[Case]:
    good = (("good.db", _good_db), ("good.jsonl", _good_jsonl), ("dir.jsonl", _mkdir))
    return [
        Case("export-to-dir", ("export", "good.db", "-o", "dir.jsonl"), good, 2, "dir.jsonl"),
        Case("export-to-nowhere", ("export", "good.db", "-o", "no/dir/x"), good, 2, "no/dir/x"),
        Case("status-negative-runs", ("status", "good.db", "--runs", "-1"), good, 2, "--runs"),
        Case("status-max-attempts-0", ("status", "good.db", "--max-attempts", "0"), good, 2, "1"),
        Case("retry-surrogate-id", ("retry", "good.db", "--ids", "\udc80"), good, 2, "surrogate"),
        Case(
            "retry-other-job", ("retry", "good.jsonl", "--job-id", "other"), good, 3, "holds job"
        ),  # as run: 3
        Case("repair-db", ("repair", "good.db"), good, 2, "JSONL checkpoints"),
        # Reconnection warnings are one line each; the error names the server.
        Case("status-pg-refused", ("status", "postgresql://127.0.0.1:1/x"), (), 3, "127.0.0.1:1"),
        Case(
            "report-prices-missing",
            ("report", "good.db", "--prices", "no.json"),
            good,
            2,
            "no.json",
        ),
        Case(
            "report-prices-dir",
            ("report", "good.db", "--prices", "dir.jsonl"),
            good,
            2,
            "dir.jsonl",
        ),
        Case(
            "report-prices-garbage",
            ("report", "good.db", "--prices", "p.toml"),
            (*good, ("p.toml", _write("= ="))),
            2,
            "p.toml",
        ),
        Case("compact-dir", ("compact", "dir.jsonl"), good, 3, "is a directory"),
        Case("demo-dir-is-file", ("demo", "--dir", "good.db"), good, 2, "--dir"),
        Case("demo-too-few", ("demo", "--items", "1"), good, 2, "--items"),
        Case("no-command", (), good, 2, "required"),
        Case("unknown-command", ("frobnicate",), good, 2, "invalid choice"),
        Case(
            "status-stdin-items-bad",
            ("status", "good.db", "--items", "-"),
            good,
            2,
            "<stdin>",
            b"[",
        ),
    ]


CASES = [*_store_cases(), *_items_cases(), *_config_cases(), *_other_cases()]


def _build(case: Case, where: Path) -> None:
    for name, build in case.files:
        path = where / name
        if not path.exists() and not path.is_symlink():
            build(path)


def _check(case: Case, code: int, out: str, err: str) -> None:
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert all(line.startswith("agent-resume: ") for line in lines), err
    assert code != EXIT_INTERNAL, err
    if case.code is None:
        assert code in (0, 3), (code, err)
    else:
        assert code == case.code, (code, err)
    errors = [line for line in lines if line.startswith("agent-resume: error: ")]
    if code in (0, 1):  # success, or a run with work left: no error
        assert errors == [], err
    else:
        assert len(errors) == 1, err
        assert lines[-1] == errors[0], err
        assert case.fragment in errors[0], err


def test_the_table_is_broad() -> None:
    assert len(CASES) >= 260
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_malformed_input_gives_one_line_and_a_documented_code(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _build(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("job", "hook", "boom"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    read, write = os.pipe()
    os.write(write, case.stdin)
    os.close(write)
    stdin = os.fdopen(read, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        code = main(list(case.argv))
    finally:
        stdin.close()
    captured = capsys.readouterr()
    _check(case, code, captured.out, captured.err)
    if code != 0:
        assert captured.out == "" or case.argv[0] in ("run", "repair", "compact")


SAMPLE = [
    c
    for c in CASES
    if c.id
    in {
        "report-text-as-db",
        "export-dir-db",
        "export-csv-surrogate-ids",
        "report-json-surrogate-ids",
        "repair-dir-jsonl",
        "status-nested-line",
        "export-db-wal-is-dir",
        "run-items-nested",
        "run-toml-garbage",
        "run-flag-bad-finish-by",
        "export-to-dir",
        "run-hook-raises",
    }
]


def test_the_sample_is_complete() -> None:
    assert len(SAMPLE) == 12


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_malformed_input_as_a_real_process(case: Case, tmp_path: Path) -> None:
    _build(case, tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    env.pop("AGENT_RESUME_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "agent_resume", *case.argv],
        input=case.stdin,
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    _check(case, result.returncode, result.stdout.decode(), result.stderr.decode())


def test_lone_surrogates_come_out_as_json_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name, build = STORES["surrogate-ids"]
    assert build is not None
    build(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(["export", name]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"id": "\udc80", "result": "\ud800!"}]
    assert main(["report", name, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["item_id"] for row in data["items"]} == {"\udc80", "b\udfff"}


def _without_root_powers() -> list[str]:
    """A command prefix under which file modes hold, or ``[]`` when they already do."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to hold")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_read_only_database_is_read_and_not_written(tmp_path: Path) -> None:
    """``status``/``report``/``export`` read a database they cannot write; ``retry`` says why not."""
    db = tmp_path / "ro.db"
    _good_db(db)
    os.chmod(db, 0o444)
    os.chmod(tmp_path, 0o555)  # no -wal or -shm file can be made beside it either
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    prefix = _without_root_powers()
    try:
        for argv, codes in (
            (["status", str(db)], (0, 3)),
            (["report", str(db)], (0, 3)),
            (["export", str(db)], (0, 3)),
            (["retry", str(db), "--failed"], (3,)),
        ):
            result = subprocess.run(
                [*prefix, sys.executable, "-m", "agent_resume", *argv],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            assert "Traceback" not in result.stderr, result.stderr
            lines = result.stderr.splitlines()
            assert all(line.startswith("agent-resume: ") for line in lines), result.stderr
            assert result.returncode in codes, (argv, result.stderr)
            if result.returncode == 3:
                assert lines == [lines[-1]], result.stderr
                assert lines[-1].startswith("agent-resume: error: ")
                assert str(db) in lines[-1]
    finally:
        os.chmod(tmp_path, 0o755)
