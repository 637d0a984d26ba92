from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent_resume
from agent_resume._codec import (
    CONVERSATION_FORMAT,
    ConversationCodec,
    ConversationLog,
    CorruptConversationError,
    decode_line,
    encode_line,
    load_conversation,
    save_conversation,
)
from agent_resume._errors import (
    ArgumentTypeError,
    ArgumentValueError,
    StoreError,
    UnsupportedFormatError,
)

CHILD = Path(__file__).with_name("_codec_child.py")

OPENAI_CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp_c": 21}'},
    {"role": "assistant", "content": "21 °C.", "refusal": None, "x-vendor": {"trace": [1, 2]}},
]

ANTHROPIC_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": "Look up 'agent'"}]},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "…", "signature": "sig=="},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "agent"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found", "is_error": False}
        ],
    },
    {
        "role": "assistant",
        "content": "Done.\u2028Next line\n",
        "cache_control": {"type": "ephemeral"},
    },
]


# --- round trips --------------------------------------------------------------


@pytest.mark.parametrize("messages", [OPENAI_CONVERSATION, ANTHROPIC_CONVERSATION, []])
def test_chat_shapes_round_trip_through_a_file(tmp_path: Path, messages: list[Any]) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, messages)
    assert load_conversation(path) == messages


def test_the_file_is_json_lines_with_a_version_header(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, [{"role": "user", "content": "hi"}, {"role": "assistant"}])
    assert path.read_bytes() == (
        b'{"conversation":2}\n{"role":"user","content":"hi"}\n{"role":"assistant"}\n'
    )
    assert CONVERSATION_FORMAT == 2


def test_the_document_form_is_versioned() -> None:
    codec = ConversationCodec()
    document = codec.encode([{"role": "user", "content": "hi"}])
    assert document == {"conversation": 2, "messages": [{"role": "user", "content": "hi"}]}
    assert codec.decode({"conversation": 1, "messages": [{"a": 1}]}) == [{"a": 1}]


def test_save_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "item-7.json"
    save_conversation(str(path), [{"role": "user", "content": "x"}])
    assert load_conversation(str(path)) == [{"role": "user", "content": "x"}]


def test_save_replaces_the_previous_conversation(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, OPENAI_CONVERSATION)
    save_conversation(path, ANTHROPIC_CONVERSATION[:1])
    assert load_conversation(path) == ANTHROPIC_CONVERSATION[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.json"]


def test_tuples_come_back_as_lists_and_the_input_is_copied() -> None:
    codec = ConversationCodec()
    original = {"role": "user", "content": ("a", "b"), "meta": {"k": [1]}}
    document = codec.encode([original])
    original["meta"]["k"].append(2)  # type: ignore[index]
    assert codec.decode(document) == [{"role": "user", "content": ["a", "b"], "meta": {"k": [1]}}]


def test_dumps_is_ascii_and_keeps_every_string_exactly() -> None:
    text = "line\nsep\u2028para\u2029nul\x00 emoji😀 lone\ud800 end"
    data = ConversationCodec().dumps([{"role": "user", "content": text}])
    assert data.isascii()
    assert ConversationCodec().loads(data) == [{"role": "user", "content": text}]


# Line separators, a NUL, an astral emoji and a lone surrogate, mixed into any text.
special_characters = st.sampled_from(["\u2028", "\u2029", "\n", "\r", "\x00", "\ud83d", "😀"])
texts = st.text(st.characters() | special_characters)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
    max_leaves=20,
)
messages_strategy = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"])},
        optional={
            "content": json_values,
            "tool_calls": json_values,
            "name": texts,
        },
    ).flatmap(
        lambda base: st.dictionaries(texts, json_values, max_size=3).map(
            lambda extra: {**extra, **base}
        )
    ),
    max_size=6,
)


@settings(deadline=None)  # no timing assertion: the machine may be loaded
@given(messages_strategy)
def test_any_json_messages_round_trip_in_memory(messages: list[dict[str, Any]]) -> None:
    codec = ConversationCodec()
    assert codec.loads(codec.dumps(messages)) == messages
    assert codec.decode(codec.encode(messages)) == messages


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=messages_strategy)
def test_any_json_messages_round_trip_through_a_file(
    tmp_path: Path, messages: list[dict[str, Any]]
) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, messages)
    assert load_conversation(path) == messages


# --- SDK objects ----------------------------------------------------------------


def test_openai_message_objects_are_stored_as_dicts() -> None:
    chat = pytest.importorskip("openai.types.chat")
    message = chat.ChatCompletionMessage(
        role="assistant",
        content=None,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ],
    )
    codec = ConversationCodec()
    [stored] = codec.loads(codec.dumps([message]))
    assert stored == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ],
    }
    rebuilt = chat.ChatCompletionMessage.model_validate(stored)
    assert rebuilt == message


def test_anthropic_content_blocks_inside_a_dict_are_stored_as_dicts() -> None:
    types = pytest.importorskip("anthropic.types")
    content = [
        types.TextBlock(type="text", text="Let me look."),
        types.ToolUseBlock(type="tool_use", id="toolu_9", name="lookup", input={"q": "x"}),
    ]
    codec = ConversationCodec()
    [stored] = codec.loads(codec.dumps([{"role": "assistant", "content": content}]))
    assert stored == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": "x"}},
        ],
    }


# --- redaction ----------------------------------------------------------------


def test_redaction_runs_on_save_on_a_copy(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def redact(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        if isinstance(message.get("content"), str):
            message["content"] = message["content"].replace("s3cret", "[redacted]")
        return message

    messages = [
        {"role": "user", "content": "key is s3cret"},
        {"role": "assistant", "content": "ok"},
    ]
    path = tmp_path / "conv.json"
    save_conversation(path, messages, redact=redact)
    assert load_conversation(path) == [
        {"role": "user", "content": "key is [redacted]"},
        {"role": "assistant", "content": "ok"},
    ]
    assert messages[0]["content"] == "key is s3cret"
    assert len(seen) == 2
    assert b"s3cret" not in path.read_bytes()


def test_redaction_may_replace_the_message() -> None:
    codec = ConversationCodec(redact=lambda m: {"role": m["role"], "content": "…"})
    assert codec.decode(codec.encode([{"role": "user", "content": "x", "pii": 1}])) == [
        {"role": "user", "content": "…"}
    ]


def test_redaction_must_return_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    with pytest.raises(ArgumentTypeError, match=r"`redact` must return a dict for a dict"):
        save_conversation(path, [{"role": "user"}], redact=lambda m: None)  # type: ignore[arg-type,return-value]
    assert not path.exists()


def test_redact_must_be_callable() -> None:
    with pytest.raises(ArgumentTypeError, match="`redact` must be callable"):
        ConversationCodec(redact="no")  # type: ignore[arg-type]


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "error", "message"),
    [
        ("hello", ArgumentTypeError, r"`messages` must be a list of messages \(got str\)"),
        ({"role": "user"}, ArgumentTypeError, r"`messages` must be a list of messages \(got dict"),
        ([{1, 2}], ArgumentTypeError, r"`messages\[0\]` cannot be stored as JSON \(got set"),
        (
            [{"role": "user"}, {"role": "user", "content": {1, 2}}],
            ArgumentTypeError,
            r"`messages\[1\]\['content'\]` cannot be stored as JSON \(got set",
        ),
        ([{"role": "user", 3: "x"}], ArgumentTypeError, r"keys of `messages\[0\]` must be strings"),
        (
            [{"role": "user", "score": [1.0, math.nan]}],
            ArgumentValueError,
            r"`messages\[0\]\['score'\]\[1\]` must be a finite number \(got nan\)",
        ),
        ([{"role": "user", "score": math.inf}], ArgumentValueError, r"finite number \(got inf\)"),
    ],
)
def test_unstorable_messages_are_refused_before_writing(
    tmp_path: Path, messages: Any, error: type[Exception], message: str
) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, [{"role": "user", "content": "old"}])
    with pytest.raises(error, match=message):
        save_conversation(path, messages)
    assert load_conversation(path) == [{"role": "user", "content": "old"}]


@pytest.mark.parametrize(
    "data", [b'{"conversation":3}\n{"role":"user"}\n', b'{"conversation": 3, "messages": []}']
)
def test_a_newer_version_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormatError, match="version 3 is newer") as info:
        load_conversation(path)
    assert info.value.version == 3
    assert info.value.path == str(path)
    with pytest.raises(UnsupportedFormatError):
        ConversationCodec().append(path, [{"role": "user"}])
    assert path.read_bytes() == data  # never appended to


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"conversation": 1, "messages": [\n', "invalid JSON"),
        (b'{"role": "user"}\nnot json\n{"role": "user"}\n', r"conv.json:2: .*invalid JSON"),
        (b'{"conversation": true, "messages": []}', "bad version True"),
        (b'{"conversation": 0, "messages": []}', "bad version 0"),
        (b'{"conversation": 1}', "'messages' is not a list of objects"),
        (b'{"conversation": 1, "messages": ["hi"]}', "'messages' is not a list of objects"),
        (b'{"conversation": 1, "messages": []}\n{"role": "user"}\n', "text after the document"),
    ],
)
def test_a_corrupt_file_is_refused_with_its_path(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(data)
    with pytest.raises(CorruptConversationError, match=reason) as info:
        load_conversation(path)
    assert info.value.path.startswith(str(path))
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, ValueError)


# --- the other formats: conversation-codec's and the old document ---------------


def test_an_old_whole_document_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    old = {"conversation": 1, "messages": OPENAI_CONVERSATION}
    path.write_text(json.dumps(old))  # as agent-resume 0.1 wrote it: one line, no newline
    assert load_conversation(path) == OPENAI_CONVERSATION


def test_appending_to_an_old_document_converts_it_once(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    path.write_text(json.dumps({"conversation": 1, "messages": OPENAI_CONVERSATION[:2]}))
    ConversationCodec().append(path, OPENAI_CONVERSATION[2:])
    assert path.read_bytes().startswith(b'{"conversation":2}\n')
    assert load_conversation(path) == OPENAI_CONVERSATION


def test_a_conversation_codec_file_is_read(tmp_path: Path) -> None:
    # What conversation-codec's Codec::save writes: one JSON value a line, no header.
    path = tmp_path / "conv.jsonl"
    path.write_bytes(
        b'{"role":"user","content":"hello"}\n{"role":"assistant","content":"hi there"}\n'
    )
    assert load_conversation(path) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
    ]


def test_appending_to_a_conversation_codec_file_keeps_its_format(tmp_path: Path) -> None:
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b'{"role":"user","content":"1"}\n')
    ConversationCodec().append(path, [{"role": "assistant", "content": "2"}])
    assert (
        path.read_bytes() == b'{"role":"user","content":"1"}\n{"role":"assistant","content":"2"}\n'
    )


def test_a_last_line_without_newline_is_kept_if_whole_in_a_file_without_header(
    tmp_path: Path,
) -> None:
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}')  # written by hand, no final newline
    assert load_conversation(path) == [{"a": 1}, {"b": 2}]
    ConversationCodec().append(path, [{"c": 3}])
    assert load_conversation(path) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b'{"role":"user"}\n\n   \n{"role":"assistant"}\n\n')
    assert load_conversation(path) == [{"role": "user"}, {"role": "assistant"}]
    path.write_bytes(b'\n{"conversation":2}\n\n{"role":"user"}\n')
    assert load_conversation(path) == [{"role": "user"}]


def test_non_object_messages_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "conv.jsonl"
    messages: list[Any] = [[1, 2, 3], "plain string", 42, None, True, 2.5, {"role": "user"}]
    save_conversation(path, messages)
    assert load_conversation(path) == messages
    path.write_bytes(b'[1,2,3]\n"plain string"\n42\n')  # conversation-codec's own case
    assert load_conversation(path) == [[1, 2, 3], "plain string", 42]


def test_an_empty_file_is_an_empty_conversation(tmp_path: Path) -> None:
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b"")
    assert load_conversation(path) == []
    ConversationCodec().append(path, [{"role": "user"}])
    assert path.read_bytes() == b'{"conversation":2}\n{"role":"user"}\n'


# --- append -------------------------------------------------------------------------


def test_append_writes_only_the_new_messages(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    codec = ConversationCodec()
    codec.append(path, OPENAI_CONVERSATION[:2])  # creates the file, with its header
    size = path.stat().st_size
    codec.append(path, OPENAI_CONVERSATION[2:3])
    added = path.read_bytes()[size:]
    assert added == codec.encode_line(OPENAI_CONVERSATION[2]).encode() + b"\n"
    assert load_conversation(path) == OPENAI_CONVERSATION[:3]


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_a_torn_last_line_is_dropped_on_load_and_cut_before_appending(
    tmp_path: Path, cut: int
) -> None:
    path = tmp_path / "conv.json"
    codec = ConversationCodec()
    codec.save(path, OPENAI_CONVERSATION[:2])
    whole = path.read_bytes()
    line = codec.encode_line(OPENAI_CONVERSATION[2]).encode() + b"\n"
    path.write_bytes(whole + line[:cut])  # a crash in the middle of an append
    assert load_conversation(path) == OPENAI_CONVERSATION[:2]
    codec.append(path, OPENAI_CONVERSATION[2:4])
    assert load_conversation(path) == OPENAI_CONVERSATION[:4]
    assert (
        path.read_bytes()
        == whole + line + codec.encode_line(OPENAI_CONVERSATION[3]).encode() + b"\n"
    )


def test_a_torn_header_is_an_empty_conversation(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(b'{"conver')
    assert load_conversation(path) == []
    ConversationCodec().append(path, [{"role": "user"}])
    assert load_conversation(path) == [{"role": "user"}]


def test_append_refuses_unstorable_messages_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, [{"role": "user"}])
    before = path.read_bytes()
    with pytest.raises(ArgumentTypeError, match=r"`messages\[1\]` cannot be stored"):
        ConversationCodec().append(path, [{"role": "a"}, {1, 2}])
    assert path.read_bytes() == before


# --- one line --------------------------------------------------------------------


def test_encode_line_and_decode_line_round_trip_one_message() -> None:
    message = {"role": "user", "content": "a\nb\u2028c"}
    line = encode_line(message)
    assert "\n" not in line
    assert line.isascii()
    assert decode_line(line) == message
    assert decode_line(line.encode() + b"\n") == message
    assert decode_line('{"role":"user"}') == {"role": "user"}


def test_encode_line_applies_redaction() -> None:
    line = encode_line({"x": 1}, redact=lambda m: {**m, "tagged": True})
    assert json.loads(line) == {"x": 1, "tagged": True}
    assert ConversationCodec(redact=lambda m: {}).encode_line({"secret": 1}) == "{}"


@pytest.mark.parametrize("bad", ["bad", "", "{", b"\xff"])
def test_decode_line_refuses_what_is_not_json(bad: str | bytes) -> None:
    with pytest.raises(CorruptConversationError, match="invalid JSON"):
        decode_line(bad)


# --- ConversationLog: saving a growing conversation ------------------------------------


def test_conversation_log_appends_when_the_list_grows(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    log = ConversationLog(path)
    messages: list[Any] = []
    sizes = []
    for message in OPENAI_CONVERSATION:
        messages.append(message)
        log.save(messages)
        sizes.append(path.stat().st_size)
    assert load_conversation(path) == OPENAI_CONVERSATION
    # Each save added exactly one line: the file was appended to, not rewritten.
    for before, after, message in zip(sizes, sizes[1:], OPENAI_CONVERSATION[1:], strict=False):
        assert after - before == len(encode_line(message)) + 1
    assert log.messages == OPENAI_CONVERSATION


def test_conversation_log_rewrites_when_the_history_changes(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    log = ConversationLog(path)
    messages = [dict(m) for m in OPENAI_CONVERSATION]
    log.save(messages)
    summary = [messages[0], {"role": "user", "content": "summary of the rest"}]
    log.save(summary)  # shortened
    assert load_conversation(path) == summary
    summary[1]["content"] = "edited in place"
    log.save(summary)  # same length, a message changed in place
    assert load_conversation(path) == summary
    log.save([])
    assert load_conversation(path) == []


def test_conversation_log_resumes_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    ConversationLog(path).save(OPENAI_CONVERSATION[:3])
    later = ConversationLog(path)  # a new process: reads the file on first use
    assert later.messages == OPENAI_CONVERSATION[:3]
    before = path.read_bytes()
    later.save([*later.messages, *OPENAI_CONVERSATION[3:]])
    assert path.read_bytes().startswith(before)  # appended, not rewritten
    assert load_conversation(path) == OPENAI_CONVERSATION


def test_conversation_log_replaces_a_corrupt_file_but_not_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(b'{"conversation":2}\n{"role":\n{"role":"user"}\n')  # a bad middle line
    log = ConversationLog(path)
    with pytest.raises(CorruptConversationError):
        log.messages  # noqa: B018  (reading says so)
    log.save([{"role": "user", "content": "fresh"}])
    assert load_conversation(path) == [{"role": "user", "content": "fresh"}]
    newer = b'{"conversation":3}\n{"role":"user"}\n'
    path.write_bytes(newer)
    with pytest.raises(UnsupportedFormatError):
        ConversationLog(path).save([{"role": "user"}])
    assert path.read_bytes() == newer


def test_conversation_log_recreates_a_deleted_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    log = ConversationLog(path)
    log.save(OPENAI_CONVERSATION[:2])
    path.unlink()
    log.save(OPENAI_CONVERSATION[:3])
    assert load_conversation(path) == OPENAI_CONVERSATION[:3]


def test_conversation_log_compares_tuples_and_sdk_shapes_by_value(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    log = ConversationLog(path)
    first = {"role": "user", "content": ("a", "b")}
    log.save([first])
    size = path.stat().st_size
    log.save([first, {"role": "assistant", "content": "c"}])
    assert path.read_bytes()[:size] == b'{"conversation":2}\n{"role":"user","content":["a","b"]}\n'
    assert load_conversation(path)[1] == {"role": "assistant", "content": "c"}


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_conversation(tmp_path / "nothing.json")


# --- atomicity under SIGKILL --------------------------------------------------


def _child_module() -> Any:
    spec = importlib.util.spec_from_file_location("_codec_child", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_a_killed_save_leaves_the_old_or_the_new_conversation(tmp_path: Path) -> None:
    conversation = _child_module().conversation
    path = tmp_path / "conv.json"
    src = os.path.dirname(os.path.dirname(os.path.abspath(agent_resume.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(20260524)
    last_acked = -1
    for _ in range(30):
        start = last_acked + 1
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), str(start)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == f"{start}\n".encode(), "the child did not save"
        # The pause only scatters the kill over the save loop; no timing is asserted.
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL
        acked = [start, *(int(line) for line in rest.split())]
        last_acked = acked[-1]

        messages = load_conversation(path)
        number = messages[0]["n"]
        # Either the last acknowledged save, or the one in flight when killed.
        assert number in (last_acked, last_acked + 1)
        assert messages == json.loads(json.dumps(conversation(number)))
        last_acked = number


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_a_killed_append_leaves_every_acknowledged_message(tmp_path: Path) -> None:
    grown = _child_module().grown
    path = tmp_path / "conv.json"
    src = os.path.dirname(os.path.dirname(os.path.abspath(agent_resume.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(20261129)
    last_acked = -1
    for _ in range(30):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), "0", "grow"], stdout=subprocess.PIPE, env=env
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == f"{last_acked + 1}\n".encode(), "the child did not resume where it was"
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL
        last_acked = [int(first), *(int(line) for line in rest.split())][-1]
        messages = load_conversation(path)
        # Every acknowledged message, and at most the one in flight.
        assert len(messages) in (last_acked + 1, last_acked + 2)
        assert messages == json.loads(json.dumps([grown(n) for n in range(len(messages))]))
        last_acked = len(messages) - 1


def test_removing_a_conversation_takes_the_leftovers_of_killed_saves(tmp_path: Path) -> None:
    from agent_resume._atomic import remove_with_leftovers

    path = tmp_path / "task-1.json"
    save_conversation(path, [{"role": "user", "content": "hi"}])
    (tmp_path / "task-1.json.tmp-123-456").write_text("half a save")
    (tmp_path / "task-10.json").write_text("another item's")
    remove_with_leftovers(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task-10.json"]
    remove_with_leftovers(path)  # nothing left: not an error


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_an_append_that_fails_part_way_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    # A file size limit makes the write stop part-way (then EFBIG), in a child
    # process so that the limit does not touch the test run.
    path = tmp_path / "conv.json"
    save_conversation(path, [{"role": "user", "content": "kept"}])
    before = path.read_bytes()
    child = textwrap.dedent(
        f"""
        import resource, signal, sys
        from agent_resume import ConversationCodec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 20}, resource.RLIM_INFINITY))
        try:
            ConversationCodec().append({str(path)!r}, [{{"role": "assistant", "content": "x" * 100}}])
        except OSError as exc:
            print("OSError", exc.errno)
        """
    )
    src = os.path.dirname(os.path.dirname(os.path.abspath(agent_resume.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.startswith("OSError"), out.stdout + out.stderr
    assert path.read_bytes() == before
    assert load_conversation(path) == [{"role": "user", "content": "kept"}]
