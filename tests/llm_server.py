"""A loopback HTTP server that answers like the OpenAI, Anthropic and Gemini APIs.

Real SDK clients are pointed at it (``base_url=server.openai_url`` and so
on, ``api_key="test"``) so tests get the SDK's own response objects, whatever
HTTP library the SDK uses underneath. Answers are recorded-shape JSON built
from a `Reply`; set ``server.reply`` for every request, or queue replies with
``server.queue(...)`` to script a sequence (errors, then success).

Routes (POST):

- ``.../chat/completions``: OpenAI Chat Completions; with ``"stream": true``
  an SSE stream, ending with a usage chunk (empty ``choices``) when the
  request has ``stream_options.include_usage``.
- ``.../responses``: OpenAI Responses, plain or streamed.
- ``.../messages``: Anthropic Messages, plain or streamed.
- ``.../models/{model}:generateContent`` and ``:streamGenerateContent``:
  Gemini.

Token counts in a `Reply` follow agent-resume's convention (input includes
cached tokens, output includes reasoning); the server converts them to each
provider's wire form (Anthropic's ``input_tokens`` leaves the cache out,
Gemini's ``candidatesTokenCount`` leaves thoughts out).

Use it as the fixture ``llm_server``: put
``from llm_server import llm_server_fixture  # noqa: F401`` in a test module
(the ``tests`` directory is on ``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = [
    "LLMServer",
    "RecordedRequest",
    "Reply",
    "close_clients_fixture",
    "closed_after_test",
    "llm_server_fixture",
]


@dataclass
class Reply:
    """What the server answers. ``model=None`` echoes the model of the request."""

    text: str = "Hello from the loopback server."
    model: str | None = None
    input_tokens: int = 120
    output_tokens: int = 40
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    latency: float = 0.0
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"  # OpenAI chat: "length" when max_tokens cut the answer


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class LLMServer:
    """The server; a context manager that listens on 127.0.0.1 on a free port."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply = reply or Reply()
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL for Anthropic and Gemini clients."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """The base URL for an OpenAI client (``.../v1``)."""
        return f"{self.url}/v1"

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, then with ``self.reply``."""
        with self._lock:
            self._queue.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else self.reply

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> LLMServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(name="llm_server")
def llm_server_fixture() -> Iterator[LLMServer]:
    """A started `LLMServer`, closed after the test, as the fixture ``llm_server``.

    Register it in a test module with
    ``from llm_server import llm_server_fixture  # noqa: F401``
    (imported under this name, it does not clash with test parameters).
    """
    with LLMServer() as server:
        yield server
    # SDK clients the test dropped sit in reference cycles until a collection;
    # collected here, an unclosed connection warns in this test, not in
    # whichever later test the collector happens to run in.
    gc.collect()


_CLIENTS: list[Any] = []


def closed_after_test(client: Any) -> Any:
    """Return ``client``, to be closed when the test ends (with ``close_clients_fixture``).

    A dropped SDK client keeps its connection open until the collector frees
    it, and warns then, in whichever test is running.
    """
    _CLIENTS.append(client)
    return client


@pytest.fixture(name="close_clients", autouse=True)
def close_clients_fixture() -> Iterator[None]:
    """Close the clients given to `closed_after_test` (autouse where imported)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


# ---- response bodies -------------------------------------------------------


def openai_chat_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": reply.cache_read_tokens,
            "cache_write_tokens": reply.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chat(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 1748107200,
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": openai_chat_usage(reply),
    }


def openai_chat_stream(reply: Reply, model: str, include_usage: bool) -> Iterator[bytes]:
    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body: dict[str, Any] = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": 1748107200,
            "model": model,
            "system_fingerprint": "fp_loopback",
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage
        return _sse(body)

    yield chunk(
        [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    )
    for piece in _pieces(reply.text):
        yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage:
        yield chunk([], openai_chat_usage(reply))
    yield b"data: [DONE]\n\n"


def openai_response(reply: Reply, model: str, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": "resp_loopback",
        "object": "response",
        "created_at": 1748107200,
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_loopback",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        ]
        if done
        else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {
                "cached_tokens": reply.cache_read_tokens,
                "cache_write_tokens": reply.cache_write_tokens,
            },
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        if done
        else None,
    }


def openai_response_stream(reply: Reply, model: str) -> Iterator[bytes]:
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    item = {"type": "message", "id": "msg_loopback", "status": "in_progress", "role": "assistant"}
    part = {"type": "output_text", "text": "", "annotations": []}
    done_part = {**part, "text": reply.text}
    where = {"item_id": "msg_loopback", "output_index": 0, "content_index": 0}
    yield event("response.created", response=openai_response(reply, model, "in_progress"))
    yield event("response.output_item.added", output_index=0, item={**item, "content": []})
    yield event("response.content_part.added", **where, part=part)
    for piece in _pieces(reply.text):
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    yield event("response.output_text.done", **where, text=reply.text, logprobs=[])
    yield event("response.content_part.done", **where, part=done_part)
    done_item = {**item, "status": "completed", "content": [done_part]}
    yield event("response.output_item.done", output_index=0, item=done_item)
    yield event("response.completed", response=openai_response(reply, model))


def anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        # Anthropic's input_tokens leave out cache reads and writes.
        "input_tokens": reply.input_tokens - reply.cache_read_tokens - reply.cache_write_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "service_tier": "standard",
    }


def anthropic_message(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(reply, reply.output_tokens),
    }


def anthropic_stream(reply: Reply, model: str) -> Iterator[bytes]:
    start = {**anthropic_message(reply, model), "content": [], "stop_reason": None}
    start["usage"] = anthropic_usage(reply, 1)
    yield _sse({"type": "message_start", "message": start}, event="message_start")
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        event="content_block_start",
    )
    for piece in _pieces(reply.text):
        yield _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            event="content_block_delta",
        )
    yield _sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
        event="message_delta",
    )
    yield _sse({"type": "message_stop"}, event="message_stop")


def gemini_response(reply: Reply, model: str, text: str | None = None) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": reply.text if text is None else text}],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": reply.input_tokens,
            # Gemini counts thoughts apart from the candidates.
            "candidatesTokenCount": reply.output_tokens - reply.reasoning_tokens,
            "thoughtsTokenCount": reply.reasoning_tokens,
            "cachedContentTokenCount": reply.cache_read_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        },
        "modelVersion": model,
        "responseId": "loopback",
    }


def gemini_stream(reply: Reply, model: str) -> Iterator[bytes]:
    for piece in _pieces(reply.text):
        yield _sse(gemini_response(reply, model, piece))


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _sse(body: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(body)}\n\n".encode()


def _make_handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?", 1)[0]
            server.record(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
            reply = server.next_reply()
            if reply.latency:
                time.sleep(reply.latency)
            if reply.status != 200:
                error = reply.error_body or {
                    "error": {"message": "loopback error", "type": "server_error"}
                }
                self._send_json(reply.status, error, reply.headers)
                return
            request = body if isinstance(body, dict) else {}
            requested = str(request.get("model") or "")
            stream = bool(request.get("stream"))
            if path.endswith("/chat/completions"):
                model = reply.model or requested
                if stream:
                    options = request.get("stream_options") or {}
                    include = bool(options.get("include_usage"))
                    self._send_stream(openai_chat_stream(reply, model, include), reply.headers)
                else:
                    self._send_json(200, openai_chat(reply, model), reply.headers)
            elif path.endswith("/responses"):
                model = reply.model or requested
                if stream:
                    self._send_stream(openai_response_stream(reply, model), reply.headers)
                else:
                    self._send_json(200, openai_response(reply, model), reply.headers)
            elif path.endswith("/messages"):
                model = reply.model or requested
                if stream:
                    self._send_stream(anthropic_stream(reply, model), reply.headers)
                else:
                    self._send_json(200, anthropic_message(reply, model), reply.headers)
            elif ":generateContent" in path or ":streamGenerateContent" in path:
                name, _, method = path.rpartition("/")[2].partition(":")
                model = reply.model or name
                if method == "streamGenerateContent":
                    self._send_stream(gemini_stream(reply, model), reply.headers)
                else:
                    self._send_json(200, gemini_response(reply, model), reply.headers)
            else:
                self._send_json(404, {"error": {"message": f"no route for {path}"}}, {})

        def _send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, chunks: Iterator[bytes], headers: dict[str, str]) -> None:
            # No Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
            self.close_connection = True

    return Handler
