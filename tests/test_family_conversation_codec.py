"""conversation-codec's cases (the Rust crate's unit tests), in this project's words.

Each test is named after the behaviour it pins; its docstring names the
crate's test it translates. The crate's ``Codec`` is ``ConversationCodec``:
``save`` replaces a file, ``append`` adds to it, ``load`` reads it,
``encode_line``/``decode_line`` handle one message. Files written in the
crate's own format (no header line) are built byte for byte, so these tests
also pin that either side reads the other's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_resume import ConversationCodec, CorruptConversationError, decode_line, encode_line

CODEC = ConversationCodec()


def test_the_crate_example_saves_and_loads(tmp_path: Path) -> None:
    """The crate's doctest."""
    path = tmp_path / "conv_doctest.jsonl"
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]
    CODEC.save(path, messages)
    loaded = CODEC.load(path)
    assert len(loaded) == 2
    assert loaded[0]["role"] == "user"


def test_messages_round_trip_through_a_file(tmp_path: Path) -> None:
    """save_and_load_roundtrip."""
    path = tmp_path / "codec_test_roundtrip.jsonl"
    CODEC.save(path, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    loaded = CODEC.load(path)
    assert len(loaded) == 2
    assert loaded[0]["role"] == "user"
    assert loaded[1]["content"] == "hello"


def test_append_adds_messages_after_a_save(tmp_path: Path) -> None:
    """append_adds_messages."""
    path = tmp_path / "codec_test_append.jsonl"
    CODEC.save(path, [{"role": "user", "content": "1"}])
    CODEC.append(path, [{"role": "assistant", "content": "2"}])
    assert len(CODEC.load(path)) == 2


def test_append_to_a_file_the_crate_wrote(tmp_path: Path) -> None:
    """append_adds_messages, on a file in the crate's format (no header)."""
    path = tmp_path / "codec_test_append.jsonl"
    path.write_bytes(b'{"role":"user","content":"1"}\n')
    CODEC.append(path, [{"role": "assistant", "content": "2"}])
    assert path.read_bytes().splitlines() == [
        b'{"role":"user","content":"1"}',
        b'{"role":"assistant","content":"2"}',
    ]  # still the crate's format: it can read the file back


def test_redaction_is_applied_on_save(tmp_path: Path) -> None:
    """redact_applied_on_save."""
    redacting = ConversationCodec(redact=lambda m: {**m, "redacted": True})
    path = tmp_path / "codec_test_redact.jsonl"
    redacting.save(path, [{"role": "user", "content": "secret"}])
    assert ConversationCodec().load(path)[0]["redacted"] is True  # loaded without the hook


def test_redaction_can_strip_a_key(tmp_path: Path) -> None:
    """redact_strips_key."""
    redacting = ConversationCodec(redact=lambda m: {k: v for k, v in m.items() if k != "content"})
    path = tmp_path / "codec_test_redact_strip.jsonl"
    redacting.save(path, [{"role": "user", "content": "private"}])
    assert "content" not in ConversationCodec().load(path)[0]


def test_blank_lines_are_skipped_on_load(tmp_path: Path) -> None:
    """load_skips_blank_lines."""
    path = tmp_path / "codec_test_blanks.jsonl"
    path.write_text('{"role":"user"}\n\n{"role":"assistant"}\n')
    assert len(CODEC.load(path)) == 2


def test_a_line_that_is_not_json_is_a_decode_error(tmp_path: Path) -> None:
    """bad_json_line_decode_error."""
    path = tmp_path / "codec_test_bad.jsonl"
    path.write_text("not json\n")
    with pytest.raises(CorruptConversationError, match="invalid JSON") as info:
        CODEC.load(path)
    assert info.value.path == f"{path}:1"  # the line is named, as the crate's Decode { line }


def test_save_overwrites(tmp_path: Path) -> None:
    """save_overwrite."""
    path = tmp_path / "codec_test_overwrite.jsonl"
    CODEC.save(path, [{"a": 1}, {"b": 2}])
    CODEC.save(path, [{"c": 3}])
    loaded = CODEC.load(path)
    assert len(loaded) == 1
    assert loaded[0]["c"] == 3


def test_an_empty_save_loads_empty(tmp_path: Path) -> None:
    """empty_save_empty_load."""
    path = tmp_path / "codec_test_empty.jsonl"
    CODEC.save(path, [])
    assert CODEC.load(path) == []
    path.write_bytes(b"")  # what the crate writes for no messages
    assert CODEC.load(path) == []


def test_encode_line_applies_redaction() -> None:
    """encode_line_applies_redact."""
    line = ConversationCodec(redact=lambda m: {**m, "tagged": True}).encode_line({"x": 1})
    assert json.loads(line)["tagged"] is True
    assert json.loads(encode_line({"x": 1}, redact=lambda m: {**m, "tagged": True}))["tagged"]


def test_decode_line_parses_json() -> None:
    """decode_line_parses_json."""
    assert decode_line('{"role":"user"}')["role"] == "user"
    assert ConversationCodec.decode_line('{"role":"user"}') == {"role": "user"}


def test_decode_line_refuses_what_is_not_json() -> None:
    """decode_line_bad_returns_err."""
    with pytest.raises(CorruptConversationError):
        decode_line("bad")


def test_messages_that_are_not_objects_are_kept(tmp_path: Path) -> None:
    """nonobject_messages_saved."""
    path = tmp_path / "codec_test_array_msg.jsonl"
    messages: list[Any] = [[1, 2, 3], "plain string", 42]
    CODEC.save(path, messages)
    loaded = CODEC.load(path)
    assert loaded[0] == [1, 2, 3]
    assert loaded[1] == "plain string"
    assert loaded[2] == 42
