"""SqliteStore on a damaged file: one bad value, two names for one file, a read-only place."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_resume import AgentResume, CheckpointWarning, StoreError
from agent_resume.stores import SqliteStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="hard links and mounts as on Linux")

_CLI = [sys.executable, "-m", "agent_resume"]


def _job(path: Path) -> Path:
    """A job with two items done, one failed, and one run (start and end records)."""
    with AgentResume(SqliteStore(path)).resume_or_start("job") as session:
        session.mark_done("a", result={"k": 1})
        session.mark_done("b", result={"k": 2})
        session.mark_failed("c", "ValueError: nope")
    store = SqliteStore(path)
    store.open("job")
    try:
        store.write_run({"run": "start", "ts": 1796131205, "pid": 1, "max_attempts": 5})
        store.write_run({"run": "end", "ts": 1796131206, "pid": 1})
    finally:
        store.close()
    return path


def _damage(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


# -- one damaged value ---------------------------------------------------------


def test_a_created_time_that_is_not_a_number_reads_as_unknown(tmp_path: Path) -> None:
    path = _job(tmp_path / "job.db")
    _damage(path, "UPDATE meta SET value = '17x4' WHERE key = 'created'")
    with AgentResume(SqliteStore(path)).resume_or_start("job") as session:
        assert list(session.remaining(["a", "b", "d"])) == ["d"]
    assert SqliteStore(path).describe().created is None


@pytest.mark.parametrize("value", ["3a", "\u00b2", "\u0663"])
def test_a_format_version_that_is_not_a_number_is_a_store_error(tmp_path: Path, value: str) -> None:
    path = _job(tmp_path / "job.db")
    _damage(path, f"UPDATE meta SET value = '{value}' WHERE key = 'version'")
    with pytest.raises(StoreError, match=r"damaged: its format version \(meta.version\)"):
        AgentResume(SqliteStore(path)).resume_or_start("job")
    with pytest.raises(StoreError, match=r"meta\.version"):
        SqliteStore(path).describe()


@pytest.mark.parametrize(
    ("record", "reason"), [("{oops", "not JSON"), ("[1]", "a JSON list, not an object")]
)
def test_a_damaged_run_record_is_skipped_with_a_warning_and_the_job_resumes(
    tmp_path: Path, record: str, reason: str
) -> None:
    path = _job(tmp_path / "job.db")
    _damage(
        path,
        f"UPDATE events SET record = '{record}' "
        "WHERE seq = (SELECT min(seq) FROM events WHERE kind = 'run')",
    )
    with (
        pytest.warns(CheckpointWarning, match=f"{path}: skipped a 'run' record .*{reason}"),
        AgentResume(SqliteStore(path)).resume_or_start("job") as session,
    ):
        assert list(session.remaining(["a", "b", "c", "d"])) == ["c", "d"]
    with pytest.warns(CheckpointWarning, match="skipped a 'run' record"):
        records = list(SqliteStore(path).iter_records())
    assert {r.get("id") for r in records} >= {"a", "b", "c"}
    assert {"run": "end", "ts": 1796131206, "pid": 1} in records


def test_a_damaged_result_is_skipped_by_export_with_a_warning(tmp_path: Path) -> None:
    path = _job(tmp_path / "job.db")
    _damage(path, "UPDATE items SET result = '{bad' WHERE item_id = 'a'")
    with pytest.warns(CheckpointWarning, match="skipped the result of 'a'"):
        assert list(SqliteStore(path).iter_results()) == [("b", {"k": 2})]


def test_the_command_line_exits_3_on_a_damaged_version_and_0_on_a_skipped_record(
    tmp_path: Path,
) -> None:
    (tmp_path / "proc.py").write_text("def process(item, ctx):\n    return 1\n")
    (tmp_path / "items.jsonl").write_text('{"id": "a"}\n{"id": "d"}\n')
    for name, sql, code, says in [
        ("version", "UPDATE meta SET value = '3a' WHERE key = 'version'", 3, "meta.version"),
        ("run", "UPDATE events SET record = '[1]' WHERE kind = 'run'", 0, "skipped a 'run' record"),
        ("created", "UPDATE meta SET value = '17x4' WHERE key = 'created'", 0, ""),
    ]:
        path = _job(tmp_path / f"{name}.db")
        _damage(path, sql)
        done = _cli(
            "run", "proc.py:process", "--items", "items.jsonl", "--job-id", "job",
            "--store", f"sqlite:///{name}.db", "--no-progress", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == code, (name, done.stderr)
        assert says in done.stderr


def test_an_item_id_stored_as_a_blob_makes_export_a_store_error(tmp_path: Path) -> None:
    path = _job(tmp_path / "job.db")
    _damage(path, "UPDATE items SET item_id = X'ff00' WHERE item_id = 'b'")
    with pytest.raises(StoreError, match="an item ID is a BLOB"):
        list(SqliteStore(path).iter_results())
    done = _cli("export", f"sqlite:///{path}")
    assert done.returncode == 3, done.stderr
    assert "an item ID is a BLOB" in done.stderr


# -- two names for one file ------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    from agent_resume import AgentResume, StoreError
    from agent_resume.stores import SqliteStore
    try:
        with AgentResume(SqliteStore(sys.argv[1])).resume_or_start("job") as session:
            print(sum(session.mark_done(i, result=1) for i in session.remaining(["x", "y"])))
    except StoreError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_a_database_file_with_two_names_is_refused_by_every_process(tmp_path: Path) -> None:
    first = _job(tmp_path / "first.db")
    second = tmp_path / "second.db"
    os.link(first, second)
    for name in (first, second):
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, str(name)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 3, done.stdout + done.stderr
        assert "has 2 names (hard links)" in done.stdout
        assert "use one name" in done.stdout
        with pytest.raises(StoreError, match="hard links"):
            SqliteStore(name).describe()
    assert _cli("status", f"sqlite:///{second}").returncode == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.db", "second.db"]
    os.unlink(second)  # one name again: it opens
    with AgentResume(SqliteStore(first)).resume_or_start("job") as session:
        assert list(session.remaining(["a", "x"])) == ["x"]


# -- a read-only place ------------------------------------------------------------


@pytest.fixture
def read_only_view() -> Iterator[tuple[Path, Path]]:
    """A directory, and a read-only bind mount of it (needs root, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root (CI runs as root)")
    top = Path(tempfile.mkdtemp(prefix="agent-resume-ro-"))
    source, view = top / "src", top / "ro"
    source.mkdir()
    view.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield source, view
    finally:
        subprocess.run(["umount", str(view)], check=True)
        shutil.rmtree(top)


def test_status_report_and_export_read_a_store_on_a_read_only_mount(
    read_only_view: tuple[Path, Path],
) -> None:
    source, view = read_only_view
    _job(source / "job.db")
    assert sorted(p.name for p in source.iterdir()) == ["job.db"]  # closed: no -wal left
    status = _cli("status", f"sqlite:///{view / 'job.db'}")
    assert status.returncode == 0, status.stderr
    assert "done         2" in status.stdout
    export = _cli("export", f"sqlite:///{view / 'job.db'}")
    assert export.returncode == 0, export.stderr
    assert export.stdout.splitlines() == [
        '{"id": "a", "result": {"k": 1}}',
        '{"id": "b", "result": {"k": 2}}',
    ]
    assert _cli("report", f"sqlite:///{view / 'job.db'}").returncode == 0
    assert sorted(p.name for p in source.iterdir()) == ["job.db"]


_DIES_OPEN = textwrap.dedent(
    """
    import os, sys
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore
    session = AgentResume(SqliteStore(sys.argv[1])).resume_or_start("job")
    session.mark_done("late", result=1)
    os._exit(0)
    """
)


def test_a_write_ahead_log_left_on_a_read_only_mount_is_not_skipped_silently(
    read_only_view: tuple[Path, Path],
) -> None:
    source, view = read_only_view
    _job(source / "job.db")
    subprocess.run([sys.executable, "-c", _DIES_OPEN, str(source / "job.db")], check=True)
    os.unlink(source / "job.db-shm")  # a -wal with commits, and no -shm to read it by
    assert (source / "job.db-wal").stat().st_size > 0
    done = _cli("export", f"sqlite:///{view / 'job.db'}")
    assert done.returncode == 3
    assert "its write-ahead log (-wal) is beside it" in done.stderr
