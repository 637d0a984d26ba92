"""Corrupt checkpoints (hypothesis): bad middle lines, zero-filled tails, non-UTF-8 bytes, garbage.

A valid checkpoint is generated, then damaged. An oracle written here (not
the library's parser) says which lines are still valid records. Then:

- loading never raises in the default mode: only ``CheckpointWarning``s, and
  every valid completion is loaded;
- in strict mode it raises ``CorruptCheckpointError`` naming the first bad
  line in the middle (a bad *last* line is a torn tail, not an error);
- opening the damaged file with a store and appending gives a record that is
  read back (never glued to garbage);
- ``repair`` leaves a file that loads in strict mode without a warning and
  keeps every valid line, byte for byte, in order.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_resume import (
    AgentResume,
    CheckpointWarning,
    CorruptCheckpointError,
    JsonlStore,
    NotACheckpointError,
)
from agent_resume.stores._jsonl_maint import repair
from agent_resume.stores._jsonl_read import load

SETTINGS = settings(
    max_examples=int(os.environ.get("AGENT_RESUME_TORTURE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ids = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["a\nb", "x\u2028y", "é🦀", 'q"uote', "tab\t", "item-001"]),
    st.integers(min_value=0, max_value=10**6),
)


def clean_id(item_id: Any) -> Any:
    return item_id if isinstance(item_id, int) else item_id.encode("utf-8", "replace").decode()


records = st.lists(
    st.one_of(
        ids.map(lambda i: {"id": clean_id(i), "ts": 1748107200}),
        ids.map(lambda i: {"id": clean_id(i), "ts": 1, "result": {"v": [1, "é"]}}),
        ids.map(
            lambda i: {
                "id": clean_id(i),
                "ts": 1,
                "fp": "ab12",
                "usage": {"in": 5, "out": 7, "cost": 0.25, "model": "gpt-é\n"},
            }
        ),
        ids.map(
            lambda i: {"id": clean_id(i), "ts": 4, "attempt": 2, "stop": "max_turns", "usage": {}}
        ),
        ids.map(lambda i: {"id": clean_id(i), "ts": 2, "status": "failed", "error": "E: x"}),
        st.just({"run": "start", "ts": 3}),
    ),
    min_size=1,
    max_size=25,
)

garbage = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.sampled_from(
        [
            *(b"{", b"\xff\xfe\xfd", b"null", b"[1, 2]", b'{"id": ""}', b'{"id": 5.5}', b"NaN"),
            *(b'{"id": "x", "status": 3}', b'{"id": true}', b"\x00" * 16, b'"just a string"'),
        ]
    ),
)


@dataclass
class Damage:
    kind: str
    index: int
    data: bytes


damages = st.lists(
    st.builds(
        Damage,
        st.sampled_from(["replace", "insert_line", "insert_bytes", "append", "zero_tail", "flip"]),
        st.integers(min_value=0, max_value=10**6),
        garbage,
    ),
    min_size=1,
    max_size=4,
)


def build(job_records: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}).encode()]
    lines += [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in job_records]
    return b"\n".join(lines) + b"\n"


def damage(data: bytes, steps: list[Damage]) -> bytes:
    for step in steps:
        lines = data.split(b"\n")
        where = step.index % max(1, len(lines) - 1)
        if step.kind == "replace" and len(lines) > 2:
            lines[1 + where % (len(lines) - 2)] = step.data.replace(b"\n", b" ")
            data = b"\n".join(lines)
        elif step.kind == "insert_line":
            lines.insert(1 + where, step.data.replace(b"\n", b" "))
            data = b"\n".join(lines)
        elif step.kind == "insert_bytes":
            at = step.index % (len(data) + 1)
            data = data[:at] + step.data + data[at:]
        elif step.kind == "append":
            data += step.data
        elif step.kind == "zero_tail":
            cut = 1 + step.index % 64
            data = data[: max(0, len(data) - cut)] + b"\x00" * (step.index % 200)
        elif step.kind == "flip" and len(data) > 1:
            at = step.index % len(data)
            data = data[:at] + b"\xff" + data[at + 1 :]
    return data


def valid(raw: bytes) -> dict[str, Any] | None:
    """The oracle: is this line a record the format accepts?"""
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "id" in record:
        item_id = record["id"]
        if not ((type(item_id) is str and item_id) or type(item_id) is int):
            return None
        if "status" in record and not isinstance(record["status"], str):
            return None
    return record


@dataclass
class Expected:
    done: set[str]
    bad_middle: list[int]  # line numbers
    valid_lines: list[bytes]
    header_ok: bool
    refused: bool  # not recognisable as a checkpoint: NotACheckpointError, never written


def blank(raw: bytes) -> bool:
    return not raw.strip(b" \t\r")


def checkpoint_like(record: dict[str, Any]) -> bool:
    ts = record.get("ts")
    return "agent_resume" in record or (type(ts) is int and ("id" in record or "run" in record))


def looks_torn_ours(tail: bytes) -> bool:
    if not tail.strip(b"\0"):
        return True
    whole = valid(tail)
    if whole is not None:
        return checkpoint_like(whole)
    starts = (b'{"agent_resume": ', b'{"id": ', b'{"run": ')
    return any(tail.startswith(p) or p.startswith(tail) for p in starts)


# A completion as the library writes it, read by its prefix in the default mode:
# its usage or result is not decoded at resume (issue 15), so damage inside them
# is found by strict mode and by the readers that decode them (repair included).
LAZY = re.compile(
    rb'\{"id": "([^"\\\x00-\x1f]+)", "ts": -?(?:0|[1-9][0-9]*)'
    rb'(?:, "attempt": -?(?:0|[1-9][0-9]*))?'
    rb'(?:, "stop": "(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")?'
    rb'(?:, "fp": "[^"\\\x00-\x1f]*")?, "(?:usage|result)": [^\n]*\}'
)


def lazy_record(raw: bytes) -> dict[str, Any] | None:
    if b'"status"' in raw:
        return None
    match = LAZY.fullmatch(raw)
    if match is None:
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {"id": match[1].decode("utf-8"), "ts": 0}


def expect(data: bytes, lazy: bool = True) -> Expected:
    lines = data.split(b"\n")
    carry = lines.pop()
    done: set[str] = set()
    bad: list[int] = []
    kept: list[bytes] = []
    header_ok = False
    first = True  # the next non-blank line stands where the header goes
    known = False  # a header or a checkpoint record was seen
    refused = False
    for number, raw in enumerate(lines, 1):
        if blank(raw):
            continue
        record = (lazy_record(raw) if lazy else None) or valid(raw)
        was_first, first = first, False
        if record is None:
            bad.append(number)
            continue
        kept.append(raw)
        if not known:
            refused = refused or not checkpoint_like(record)
            known = True
        if was_first and "agent_resume" in record:
            header_ok = record.get("job_id") == "job"
            continue
        if "id" in record and record.get("status", "done") == "done":
            done.add(str(record["id"]))
    torn = carry
    if not carry and bad and bad[-1] == len(lines):
        bad.pop()  # a last line that does not parse is a torn tail
        torn = lines[-1]
    if not known:
        refused = bool(bad) or not looks_torn_ours(torn)
    return Expected(done, bad, kept, header_ok, refused)


def header_is_newer(data: bytes) -> bool:
    first = valid(data.split(b"\n")[0]) if b"\n" in data else None
    version = first.get("agent_resume") if first else None
    return first is not None and "agent_resume" in first and version != 1


def load_bytes(data: bytes, strict: bool) -> tuple[Any, list[warnings.WarningMessage]]:
    """Load ``data``, with the warnings the load gave.

    A ``ResourceWarning`` about another object (one an earlier test left
    unclosed, whose finaliser happened to run during the load) is not the
    loader's, and is left out.
    """
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = load(f, "ckpt.jsonl", strict=strict)  # type: ignore[arg-type]
    return result, [w for w in caught if not _not_ours(w, f.name)]


def _not_ours(warning: warnings.WarningMessage, path: str) -> bool:
    return issubclass(warning.category, ResourceWarning) and path not in str(warning.message)


@SETTINGS
@given(records, damages)
def test_loading_a_damaged_checkpoint_never_crashes_and_keeps_every_valid_record(
    job_records: list[dict[str, Any]], steps: list[Damage]
) -> None:
    data = damage(build(job_records), steps)
    if header_is_newer(data):
        return
    want = expect(data)
    if want.refused:
        with pytest.raises(NotACheckpointError, match=r"ckpt\.jsonl"):
            load_bytes(data, strict=False)
        return
    result, caught = load_bytes(data, strict=False)
    assert all(issubclass(w.category, CheckpointWarning) for w in caught)
    assert result.state.done == want.done
    assert [b.line_number for b in result.bad_lines] == want.bad_middle
    assert result.state.bad_lines == len(want.bad_middle)
    if want.bad_middle and len(want.bad_middle) <= 10:
        text = " ".join(str(w.message) for w in caught)
        for number in want.bad_middle:
            assert f"ckpt.jsonl:{number}: skipped" in text
    if want.bad_middle or result.torn_tail:
        assert caught  # never silently ignored


@SETTINGS
@given(records, damages)
def test_strict_mode_names_the_first_bad_middle_line(
    job_records: list[dict[str, Any]], steps: list[Damage]
) -> None:
    data = damage(build(job_records), steps)
    if header_is_newer(data):
        return
    want = expect(data, lazy=False)
    if want.refused:
        return  # the loading test pins the refusal
    if not want.bad_middle:
        result, _ = load_bytes(data, strict=True)
        assert result.state.done == want.done
        return
    with pytest.raises(CorruptCheckpointError) as info:
        load_bytes(data, strict=True)
    assert info.value.line_number == want.bad_middle[0]
    assert info.value.path == "ckpt.jsonl"
    assert f"ckpt.jsonl:{want.bad_middle[0]}:" in str(info.value)


@SETTINGS
@given(records, damages)
def test_repair_yields_a_strictly_valid_file_with_every_valid_line(
    job_records: list[dict[str, Any]], steps: list[Damage]
) -> None:
    data = damage(build(job_records), steps)
    if header_is_newer(data):
        return
    want = expect(data, lazy=False)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "job.jsonl"
        path.write_bytes(data)
        if want.refused:
            with pytest.raises(NotACheckpointError):
                repair(path)
            assert path.read_bytes() == data
            return
        report = repair(path)
        repaired = path.read_bytes()
        if report.rewritten:
            assert repaired == b"".join(line + b"\n" for line in want.valid_lines)
        else:  # nothing to drop: left as it was, blank lines and all
            assert repaired == data
        if report.rewritten:
            assert report.backup is not None
            assert Path(report.backup).read_bytes() == data
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with open(path, "rb") as f:
                result = load(f, str(path), strict=True)
        assert result.state.done == want.done
        assert not result.torn_tail


@SETTINGS
@given(records, damages, ids)
def test_a_record_appended_to_a_damaged_checkpoint_is_read_back(
    job_records: list[dict[str, Any]], steps: list[Damage], new_id: Any
) -> None:
    data = damage(build(job_records), steps)
    if header_is_newer(data) or not expect(data).header_ok:
        return  # a file whose header is gone is another job's or the original format
    want = expect(data)
    new_id = f"appended-{clean_id(new_id)}"  # not done yet, so the append happens
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "job.jsonl"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)
            with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
                assert {i for i in want.done if s.is_done(i)} == want.done
                s.mark_done(new_id)
        after, _ = load_bytes(path.read_bytes(), strict=False)
        assert after.state.done == want.done | {str(new_id)}
        assert not after.torn_tail
        assert [b.line_number for b in after.bad_lines] == want.bad_middle
