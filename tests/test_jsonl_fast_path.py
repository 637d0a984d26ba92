"""The JSONL loader's block fast path gives exactly what decoding every line gives (issue 15).

A resume reads a block of completions and call records by one pattern that
matches each whole line, without decoding usages or results. Whatever a block
holds (other key orders, escapes, results that look like line heads, bad
lines, a torn tail, a block boundary inside a line), the state, the bad lines,
the warnings and the error of strict mode must be those of the careful path,
which decodes every line with :func:`json.loads` (the loader's ``consume``
mode).
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import pytest

from agent_resume import CheckpointWarning, CorruptCheckpointError, NotACheckpointError
from agent_resume.stores import _jsonl_read
from agent_resume.stores._jsonl_read import load

HEADER = json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}) + "\n"
USAGE = {"in": 1234, "out": 56, "calls": 1, "cost": 0.0012, "model": "gpt-4o-mini"}


def done(item: str, **fields: Any) -> str:
    """A completion in the writer's key order (``json.dumps`` keeps the order given)."""
    return json.dumps({"id": item, "ts": 1748107200, **fields}, ensure_ascii=False) + "\n"


def outcome(path: Path, strict: bool, careful: bool) -> tuple[Any, ...]:
    """Everything a load gives: state, lines, bad lines and warnings, or the error raised."""
    consume = (lambda record: None) if careful else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with open(path, "rb") as f:
                result = load(f, str(path), strict=strict, consume=consume)
        except (CorruptCheckpointError, NotACheckpointError) as exc:
            return ("error", type(exc).__name__, str(exc))
    state = result.state
    return (
        sorted(state.done),
        sorted(state.fingerprints.items()),
        sorted((k, v.attempts, v.error, v.retryable) for k, v in state.failures.items()),
        state.runs,
        [(b.line_number, b.offset, b.reason) for b in result.bad_lines],
        (result.lines, result.good_length, result.torn_tail, result.size),
        [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)],
    )


def assert_paths_agree(path: Path, modes: tuple[bool, ...] = (False, True)) -> None:
    for strict in modes:
        fast = outcome(path, strict, careful=False)
        assert fast == outcome(path, strict, careful=True), f"strict={strict}"


def fast_decodes(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many lines the default-mode load decodes with ``json.loads``."""
    calls = [0]
    real = _jsonl_read.parse_line

    def counting(raw: bytes) -> dict[str, Any] | str:
        calls[0] += 1
        return real(raw)

    monkeypatch.setattr(_jsonl_read, "parse_line", counting)
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore", CheckpointWarning)
        load(f, str(path))
    monkeypatch.setattr(_jsonl_read, "parse_line", real)
    return calls[0]


# Lines a run writes, and lines that must not be taken for them.
def good_line(rng: random.Random, n: int) -> str:
    item = f"item-{rng.randrange(400)}"
    roll = rng.random()
    if roll < 0.15:
        usage = {**USAGE, "a": f"{n:08x}", "s": 0.5}
        return json.dumps({"call": item, "a": f"{n:08x}", "ts": 1, "usage": usage}) + "\n"
    fields: dict[str, Any] = {}
    if rng.random() < 0.2:
        fields["attempt"] = rng.randrange(1, 4)
    if rng.random() < 0.1:
        fields["stop"] = rng.choice(["max_turns", "budget \u00e9", 'quote "x"'])
    if rng.random() < 0.5:
        fields["turns"] = rng.randrange(0, 9)
        fields["seconds"] = rng.choice([0.916, 1e-05, 12, 0.0])
    if rng.random() < 0.3:
        fields["fp"] = f"fp{n}"
    if rng.random() < 0.8:
        fields["usage"] = USAGE
    if rng.random() < 0.5:
        fields["result"] = rng.choice(
            [
                {"text": "r" * rng.randrange(300)},
                # Text that looks like a line head, and a closing brace before an
                # (escaped) newline: inside a string, neither is a line.
                {"text": '}\n{"id": "ghost", "ts": 1, "usage": {}}\n'},
                # An object shaped like a completion, nested in the result.
                {"id": "ghost2", "ts": 1, "usage": {"in": 1}, "fp": "no"},
                ["}", "{", '"id": "ghost3"'],
                "a plain string }",
            ]
        )
    return done(item, **fields)


ODD_LINES = [
    # Not the writer's key order: a status after the usage, the ID after the time.
    '{"id": "odd-status", "ts": 1, "usage": {"in": 1}, "status": "failed", "error": "x"}\n',
    '{"ts": 1, "id": "odd-order"}\n',
    # Escapes and non-ASCII in IDs; an empty ID.
    done('odd-"quote"'),
    done("odd-\u00e9", usage=USAGE),
    '{"id": "odd-\\u0041", "ts": 1, "usage": {"in": 1}}\n',
    '{"id": "", "ts": 1, "usage": {}}\n',
    # Numbers JSON refuses, or a line that is not one value.
    '{"id": "odd-ts0", "ts": 01, "usage": {}}\n',
    '{"id": "odd-attempt", "ts": 1, "attempt": -01, "usage": {}}\n',
    '{"id": "odd-trailing", "ts": 1, "usage": {}} \n',
    '{"id": "odd-junk", "ts": 1, "usage": {}}x\n',
    '{"id": "odd-open", "ts": 1, "usage": {\n',
    '{"id": "odd-crlf", "ts": 1, "usage": {}}\r\n',
    # A call line naming an ID, a call line that is not JSON.
    '{"call": "c", "a": "t", "ts": 1, "usage": {"in": 1}, "id": "odd-call-id"}\n',
    # Other records: a failure, a retry, a run record, blank lines, bad bytes.
    json.dumps({"id": "item-7", "ts": 3, "status": "failed", "error": "E: x", "attempt": 2}) + "\n",
    json.dumps({"id": "item-8", "ts": 4, "status": "retry"}) + "\n",
    json.dumps({"run": "start", "ts": 5}) + "\n",
    "\n",
    "   \t\n",
    '{"id": "odd-bytes\udcff", "ts": 1}\n',  # 0xff, not UTF-8, once encoded
    '{"id": "odd-body-bytes", "ts": 1, "usage": {"model": "\udcff"}}\n',
    "not json at all\n",
]
# Lines whose head is a completion's or a call record's, in the writer's order,
# but whose usage or result is damaged or names a key again: the default mode
# reads them by their head without decoding the rest (documented), so only
# strict mode must read them as decoding does.
LENIENT_LINES = [
    '{"id": "odd-fp", "ts": 1, "usage": {"in": 1}, "fp": "late"}\n',
    '{"id": "odd-id", "ts": 1, "result": 1, "id": "odd-id-2"}\n',
    '{"id": "odd-junk2", "ts": 1, "usage": {}} }\n',
    '{"id": "odd-usage", "ts": 1, "usage": {"in": 1, oops}}\n',
    '{"call": "c", "ts": 1, "usage": {"in": 1, oops}}\n',
]


def make_file(
    rng: random.Random, lines: int, odd: float, header: bool = True, lenient: bool = False
) -> bytes:
    out = [HEADER] if header else []
    odd_lines = ODD_LINES + LENIENT_LINES if lenient else ODD_LINES
    for n in range(lines):
        out.append(rng.choice(odd_lines) if rng.random() < odd else good_line(rng, n))
    data = "".join(out).encode("utf-8", "surrogateescape")
    if rng.random() < 0.5:
        data += b'{"id": "torn", "ts": 1, "usage": {"in'  # a torn last write
    return data


@pytest.mark.parametrize("block", [97, 4096, 1 << 20])
@pytest.mark.parametrize("odd", [0.0, 0.01, 0.1])
@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_gives_what_decoding_every_line_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, odd: float, seed: int
) -> None:
    monkeypatch.setattr(_jsonl_read, "_BLOCK", block)
    rng = random.Random(f"{seed}-{block}-{odd}")
    path = tmp_path / "job.jsonl"
    path.write_bytes(make_file(rng, 1500, odd))
    assert_paths_agree(path)
    if odd <= 0.01 and block > 97:
        # The fast path did the reading: most lines were not decoded.
        assert fast_decodes(path, monkeypatch) < 500
    path.write_bytes(make_file(rng, 1500, odd, lenient=True))
    assert_paths_agree(path, modes=(True,))


def test_a_headerless_file_of_completions_agrees_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jsonl_read, "_BLOCK", 4096)
    rng = random.Random(3)
    path = tmp_path / "old.jsonl"
    path.write_bytes(done("first").encode() + make_file(rng, 800, 0.02, header=False))
    assert_paths_agree(path)


def test_one_odd_line_in_any_block_position_is_read_as_decoding_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each odd line at the start, the middle and the end of a block of lines the
    # fast path reads, and cut by the block's end.
    monkeypatch.setattr(_jsonl_read, "_BLOCK", 1024)
    rng = random.Random(1)
    good = [good_line(rng, n) for n in range(40)]
    path = tmp_path / "job.jsonl"
    for odd in ODD_LINES + LENIENT_LINES:
        for at in (0, 5, 39):
            lines = [*good[:at], odd, *good[at:]]
            path.write_bytes((HEADER + "".join(lines)).encode("utf-8", "surrogateescape"))
            assert_paths_agree(path, (False, True) if odd in ODD_LINES else (True,))


def test_a_result_that_looks_like_lines_marks_only_its_own_item_done(tmp_path: Path) -> None:
    result = {
        "text": '}\n{"id": "ghost", "ts": 1, "usage": {}}\n}',
        "nested": {"id": "ghost2", "ts": 1, "usage": {"in": 1}},
    }
    path = tmp_path / "job.jsonl"
    path.write_text(HEADER + done("a", usage=USAGE, result=result) * 3 + done("b", result=result))
    for strict in (False, True):
        with open(path, "rb") as f:
            state = load(f, str(path), strict=strict).state
        assert state.done == {"a", "b"}
    assert_paths_agree(path)


def test_fingerprints_appearing_after_blocks_without_them_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loader matches a block with the shape of the block before it (no
    # fingerprints, no call records) and must notice a block that has more.
    monkeypatch.setattr(_jsonl_read, "_BLOCK", 4096)
    plain = [done(f"p{n}", usage=USAGE) for n in range(200)]
    with_fp = [done(f"f{n}", fp=f"fp{n}", usage=USAGE) for n in range(200)]
    calls = [json.dumps({"call": f"c{n}", "ts": 1, "usage": USAGE}) + "\n" for n in range(100)]
    path = tmp_path / "job.jsonl"
    path.write_text(HEADER + "".join(plain + with_fp + calls + plain[:50] + with_fp[:50]))
    with open(path, "rb") as f:
        state = load(f, str(path)).state
    assert state.fingerprints == {f"f{n}": f"fp{n}" for n in range(200)}
    assert state.done == {f"p{n}" for n in range(200)} | {f"f{n}" for n in range(200)}
    assert fast_decodes(path, monkeypatch) == 1  # the header alone
    assert_paths_agree(path)


def test_a_completion_without_usage_is_read_without_decoding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An item that used nothing is recorded with its turns and seconds and no
    # usage: its line is still read by pattern, not decoded.
    path = tmp_path / "job.jsonl"
    lines = [done(f"i{n}", turns=0, seconds=1e-05, fp=f"f{n}") for n in range(3000)]
    path.write_text(HEADER + "".join(lines))
    assert fast_decodes(path, monkeypatch) == 1
    with open(path, "rb") as f:
        state = load(f, str(path)).state
    assert len(state.done) == 3000
    assert state.fingerprints["i7"] == "f7"
    assert_paths_agree(path)
