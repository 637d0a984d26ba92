from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import signal
import subprocess
import sys
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
    CorruptConversationError,
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


def test_document_is_versioned(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    save_conversation(path, [{"role": "user", "content": "hi"}])
    document = json.loads(path.read_bytes())
    assert document == {"conversation": 1, "messages": [{"role": "user", "content": "hi"}]}
    assert CONVERSATION_FORMAT == 1


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


@given(messages_strategy)
def test_any_json_messages_round_trip_in_memory(messages: list[dict[str, Any]]) -> None:
    codec = ConversationCodec()
    assert codec.loads(codec.dumps(messages)) == messages
    assert codec.decode(codec.encode(messages)) == messages


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
    with pytest.raises(ArgumentTypeError, match=r"`redact` must return a dict \(got NoneType"):
        save_conversation(path, [{"role": "user"}], redact=lambda m: None)  # type: ignore[arg-type,return-value]
    assert not path.exists()


def test_redact_must_be_callable() -> None:
    with pytest.raises(ArgumentTypeError, match="`redact` must be callable"):
        ConversationCodec(redact="no")  # type: ignore[arg-type]


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "error", "message"),
    [
        ("hello", ArgumentTypeError, r"`messages` must be a list of dicts \(got str\)"),
        ({"role": "user"}, ArgumentTypeError, r"`messages` must be a list of dicts \(got dict\)"),
        ([["user", "hi"]], ArgumentTypeError, r"`messages\[0\]` must be a dict"),
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


def test_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    path.write_text(json.dumps({"conversation": 2, "messages": []}))
    with pytest.raises(UnsupportedFormatError, match="version 2 is newer") as info:
        load_conversation(path)
    assert info.value.version == 2
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "invalid JSON"),
        (b'{"conversation": 1, "messages": [', "invalid JSON"),
        (b"[]", "no 'conversation' version field"),
        (b'{"messages": []}', "no 'conversation' version field"),
        (b'{"conversation": true, "messages": []}', "bad version True"),
        (b'{"conversation": 0, "messages": []}', "bad version 0"),
        (b'{"conversation": 1}', "'messages' is not a list of objects"),
        (b'{"conversation": 1, "messages": ["hi"]}', "'messages' is not a list of objects"),
    ],
)
def test_a_corrupt_file_is_refused_with_its_path(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(data)
    with pytest.raises(CorruptConversationError, match=reason) as info:
        load_conversation(path)
    assert info.value.path == str(path)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, ValueError)


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


def test_removing_a_conversation_takes_the_leftovers_of_killed_saves(tmp_path: Path) -> None:
    from agent_resume._atomic import remove_with_leftovers

    path = tmp_path / "task-1.json"
    save_conversation(path, [{"role": "user", "content": "hi"}])
    (tmp_path / "task-1.json.tmp-123-456").write_text("half a save")
    (tmp_path / "task-10.json").write_text("another item's")
    remove_with_leftovers(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task-10.json"]
    remove_with_leftovers(path)  # nothing left: not an error
