"""A loopback server for the providers' batch APIs, for the real SDKs to talk to.

It speaks OpenAI's Files and Batches endpoints (``/v1/files``,
``/v1/files/{id}/content``, ``/v1/batches``, ``/v1/batches/{id}``,
``/v1/batches/{id}/cancel``) and Anthropic's Message Batches
(``/v1/messages/batches``, ``.../{id}``, ``.../{id}/cancel``,
``.../{id}/results``), and counts what it was asked to create. It also
answers online ``/v1/chat/completions`` calls (counted in ``online``), for an
online fallback.

A batch is ``in_progress`` until it has been polled ``polls_to_finish``
times (``None``: it never finishes by itself); then every request is
answered, unless ``outcome(custom_id, body)`` says ``"error"``
(a permanent 400), ``"transient"`` (a 500) or ``"expire"``. A cancelled batch
ends with the requests it had answered before the cancel.

``reject`` makes OpenAI batches fail whole at their first poll, with those
errors (as the Batch API does when the input does not validate, or the
organisation's enqueued-token limit is reached). ``fail`` answers the next
requests of a route with HTTP errors instead: ``{"retrieve": [503, 401]}``
(routes: ``files.create``, ``batches.create``, which creates the batch and
then answers with the error, as a lost answer would, ``retrieve``, ``list``
and ``cancel``, for both providers).

``kill_on`` makes the server SIGKILL a process at a chosen moment:
``("create", pid)`` right after it created a batch and before the client
hears of it, ``("poll", pid)`` at the first poll of a batch (after the client
recorded its ID); ``kill_skip`` lets that many such moments pass first.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = ["BatchServer", "batch_server_fixture"]

INPUT_TOKENS = 100
OUTPUT_TOKENS = 20


@dataclass
class _Batch:
    id: str
    provider: str  # "openai" or "anthropic"
    requests: list[dict[str, Any]]
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = ""
    polls: int = 0
    polls_at_cancel: int = 0
    status: str = "in_progress"
    answered: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


class BatchServer:
    """The server; a context manager listening on 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        self.polls_to_finish: int | None = 2
        # Polls a cancelled batch stays "cancelling" before it ends (None: it never does).
        self.cancel_lands_after: int | None = 0
        self.outcome: Callable[[str, dict[str, Any]], str] = lambda custom_id, body: "ok"
        self.kill_on: tuple[str, int] | None = None
        self.kill_with = signal.SIGKILL  # the signal ``kill_on`` sends
        self.kill_skip = 0  # moments of ``kill_on`` to let pass before the kill
        self.reject: list[dict[str, Any]] | None = None
        self.fail: dict[str, list[int]] = {}
        # Route -> how many of its next requests get no answer at all (a silent
        # connection), until the server closes.
        self.silent: dict[str, int] = {}
        self.hush = threading.Event()  # set on close: the silent requests end
        self.delay = 0.0  # seconds before each POST (an upload, a create) is answered
        self.batches: dict[str, _Batch] = {}
        self.files: dict[str, bytes] = {}
        self.created = {"openai": 0, "anthropic": 0}
        self.cancelled: list[str] = []
        self.online = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> BatchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hush.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- the provider's side ---------------------------------------------------

    def _kill(self, moment: str) -> None:
        if self.kill_on and self.kill_on[0] == moment and self.kill_skip:
            self.kill_skip -= 1  # not this one
            return
        if self.kill_on and self.kill_on[0] == moment:
            pid = self.kill_on[1]
            self.kill_on = None
            os.kill(pid, self.kill_with)
            time.sleep(0.2)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{len(self.batches) + len(self.files) + 1:06d}"

    def create(self, provider: str, requests: list[dict[str, Any]], **extra: Any) -> _Batch:
        with self._lock:
            batch = _Batch(
                self._new_id("batch" if provider == "openai" else "msgbatch"),
                provider,
                requests,
                time.time(),
                **extra,
            )
            self.batches[batch.id] = batch
            self.created[provider] += 1
        return batch

    def silenced(self, route: str) -> bool:
        """Whether this request of ``route`` is one to leave unanswered."""
        with self._lock:
            left = self.silent.get(route, 0)
            if left:
                self.silent[route] = left - 1
            return left > 0

    def failure(self, route: str) -> int | None:
        """The HTTP status to answer this request of ``route`` with instead, if any."""
        with self._lock:
            queued = self.fail.get(route)
            return queued.pop(0) if queued else None

    def poll(self, batch: _Batch) -> None:
        with self._lock:
            first = batch.polls == 0
            batch.polls += 1
            if batch.status == "in_progress" and self.reject and batch.provider == "openai":
                batch.status = "failed"
                batch.errors = self.reject
            elif batch.status == "in_progress" and (
                self.polls_to_finish is not None and batch.polls >= self.polls_to_finish
            ):
                self._finish(batch, len(batch.requests), "completed")
            elif batch.status == "cancelling" and (
                self.cancel_lands_after is not None
                and batch.polls - batch.polls_at_cancel >= self.cancel_lands_after
            ):
                self._finish(batch, len(batch.requests) // 2, "cancelled")
        if first:
            self._kill("poll")

    def cancel(self, batch: _Batch) -> None:
        with self._lock:
            self.cancelled.append(batch.id)
            if batch.status == "in_progress" and self.cancel_lands_after == 0:
                # Half the requests were answered before the cancel arrived.
                self._finish(batch, len(batch.requests) // 2, "cancelled")
            elif batch.status == "in_progress":
                batch.status, batch.polls_at_cancel = "cancelling", batch.polls

    def _finish(self, batch: _Batch, answered: int, status: str) -> None:
        batch.status = status
        batch.answered = answered
        out: list[bytes] = []
        err: list[bytes] = []
        for n, request in enumerate(batch.requests):
            custom_id = request["custom_id"]
            body = request["body"] if batch.provider == "openai" else request["params"]
            outcome = self.outcome(custom_id, body) if n < answered else "cancelled"
            result = _result(batch.provider, custom_id, body, outcome)
            batch.results.append(result)
            if batch.provider == "openai":
                (out if outcome == "ok" else err).append(
                    (json.dumps(_public(result)) + "\n").encode()
                )
        if batch.provider == "openai":
            if out:
                batch.output_file_id = self._new_id("file")
                self.files[batch.output_file_id] = b"".join(out)
            if err:
                batch.error_file_id = self._new_id("file")
                self.files[batch.error_file_id] = b"".join(err)

    def counts(self, batch: _Batch) -> dict[str, int]:
        kinds = [r.get("_outcome") for r in batch.results]
        return {k: kinds.count(k) for k in ("ok", "error", "transient", "expire", "cancelled")}

    def openai_json(self, batch: _Batch) -> dict[str, Any]:
        counts = self.counts(batch)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "request_counts": {
                "total": len(batch.requests),
                "completed": counts["ok"],
                "failed": len(batch.results) - counts["ok"],
            },
            "metadata": batch.metadata,
        }

    def anthropic_json(self, batch: _Batch) -> dict[str, Any]:
        counts = self.counts(batch)
        ended = batch.status not in ("in_progress", "cancelling")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at))
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended"
            if ended
            else "canceling"
            if batch.status == "cancelling"
            else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": counts["ok"],
                "errored": counts["error"] + counts["transient"],
                "canceled": counts["cancelled"],
                "expired": counts["expire"],
            },
            "created_at": created,
            "expires_at": created,
            "ended_at": created if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }


def _result(provider: str, custom_id: str, body: dict[str, Any], outcome: str) -> dict[str, Any]:
    model = body.get("model", "gpt-4o-mini")
    if provider == "openai":
        if outcome == "ok":
            response: dict[str, Any] | None = {
                "status_code": 200,
                "request_id": f"req_{custom_id}",
                "body": {
                    "id": f"chatcmpl-{custom_id}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"answer {custom_id}"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": INPUT_TOKENS,
                        "completion_tokens": OUTPUT_TOKENS,
                        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
                    },
                    "service_tier": "batch",
                },
            }
            error = None
        elif outcome in ("error", "transient"):
            # A request the provider answered with an error: the error is in the
            # response's body, and the line's own `error` is null.
            kind = "invalid_request_error" if outcome == "error" else "server_error"
            response = {
                "status_code": 400 if outcome == "error" else 500,
                "request_id": "",
                "body": {
                    "error": {
                        "message": f"request {custom_id}: {outcome}",
                        "type": kind,
                        "param": None,
                        "code": None,
                    }
                },
            }
            error = None
        else:  # never run: the line's `error` says why
            response = None
            code = "batch_expired" if outcome == "expire" else "batch_cancelled"
            error = {"code": code, "message": f"request {custom_id}: {outcome}"}
        return {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": response,
            "error": error,
            "_outcome": outcome,
        }
    if outcome == "ok":
        result: dict[str, Any] = {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": f"answer {custom_id}"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
            },
        }
    elif outcome in ("error", "transient") or outcome.startswith("error:"):
        # "error:<type>" answers with that Anthropic error type.
        kind = "invalid_request_error" if outcome == "error" else "api_error"
        kind = outcome.partition(":")[2] or kind
        result = {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": outcome}},
        }
    else:
        result = {"type": "canceled" if outcome == "cancelled" else "expired"}
    return {"custom_id": custom_id, "result": result, "_outcome": outcome}


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def _read_route(path: list[str]) -> str | None:
    """The name ``fail`` knows a GET by: ``list`` or ``retrieve`` (either provider)."""
    if path in (["v1", "batches"], ["v1", "messages", "batches"]):
        return "list"
    if (path[:2] == ["v1", "batches"] and len(path) == 3) or (
        path[:3] == ["v1", "messages", "batches"] and len(path) == 4
    ):
        return "retrieve"
    return None


def _handler(server: BatchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _failed(self, route: str | None) -> bool:
            """Answer with the HTTP error queued for ``route``, or not at all, if one is."""
            if route is not None and server.silenced(route):
                server.hush.wait()
                self.close_connection = True
                return True
            status = None if route is None else server.failure(route)
            if status is None:
                return False
            kind = {401: "authentication_error", 403: "permission_error"}.get(status, "api_error")
            message = "Incorrect API key provided" if status == 401 else f"HTTP {status}"
            self._send(status, {"error": {"message": message, "type": kind}})
            return True

        def _batch(self, batch_id: str) -> _Batch | None:
            batch = server.batches.get(batch_id)
            if batch is None:
                self._send(404, {"error": {"message": f"no batch {batch_id}", "type": "not_found"}})
            return batch

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/").split("/")[1:]
            if self._failed(_read_route(path)):
                return
            if path[:2] == ["v1", "files"] and len(path) == 4 and path[3] == "content":
                self._send(200, server.files[path[2]], "application/octet-stream")
            elif path == ["v1", "batches"]:
                limit = int(parse_qs(parts.query).get("limit", ["20"])[0])
                batches = [b for b in server.batches.values() if b.provider == "openai"]
                data = [server.openai_json(b) for b in reversed(batches)][:limit]
                self._send(200, {"object": "list", "data": data, "has_more": False})
            elif path[:2] == ["v1", "batches"] and len(path) == 3:
                if batch := self._batch(path[2]):
                    server.poll(batch)
                    self._send(200, server.openai_json(batch))
            elif path == ["v1", "messages", "batches"]:
                batches = [b for b in server.batches.values() if b.provider == "anthropic"]
                data = [server.anthropic_json(b) for b in reversed(batches)]
                first = data[0]["id"] if data else None
                last = data[-1]["id"] if data else None
                self._send(
                    200, {"data": data, "has_more": False, "first_id": first, "last_id": last}
                )
            elif path[:3] == ["v1", "messages", "batches"] and len(path) == 5:
                if batch := self._batch(path[3]):
                    lines = b"".join(
                        (json.dumps(_public(r)) + "\n").encode() for r in batch.results
                    )
                    self._send(200, lines, "application/x-jsonl")
            elif path[:3] == ["v1", "messages", "batches"] and len(path) == 4:
                if batch := self._batch(path[3]):
                    server.poll(batch)
                    self._send(200, server.anthropic_json(batch))
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path.rstrip("/").split("/")[1:]
            raw = self._body()
            time.sleep(server.delay)
            if path == ["v1", "files"] and self._failed("files.create"):
                return
            if path[-1:] == ["cancel"] and self._failed("cancel"):
                return
            if path == ["v1", "files"]:
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = BytesParser().parsebytes(head + raw)
                content = b""
                for part in message.get_payload():  # type: ignore[union-attr]
                    if part.get_param("name", header="content-disposition") == "file":
                        content = part.get_payload(decode=True)
                file_id = server._new_id("file")
                server.files[file_id] = content
                self._send(
                    200,
                    {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(content),
                        "created_at": int(time.time()),
                        "filename": "batch.jsonl",
                        "purpose": "batch",
                        "status": "processed",
                    },
                )
            elif path == ["v1", "batches"]:
                body = json.loads(raw)
                lines = server.files[body["input_file_id"]].decode().splitlines()
                batch = server.create(
                    "openai",
                    [json.loads(line) for line in lines if line.strip()],
                    metadata=body.get("metadata") or {},
                    endpoint=body["endpoint"],
                    input_file_id=body["input_file_id"],
                )
                server._kill("create")
                if not self._failed("batches.create"):
                    self._send(200, server.openai_json(batch))
            elif path[:2] == ["v1", "batches"] and path[-1] == "cancel":
                if batch := self._batch(path[2]):
                    server.cancel(batch)
                    self._send(200, server.openai_json(batch))
            elif path == ["v1", "chat", "completions"]:
                # Online calls, for the fallback: the same answer as a batch's, at full price.
                with server._lock:
                    server.online += 1
                body = json.loads(raw)
                result = _result("openai", f"online-{server.online}", body, "ok")
                answer = dict(result["response"]["body"])
                answer.pop("service_tier")
                self._send(200, answer)
            elif path == ["v1", "messages", "batches"]:
                batch = server.create("anthropic", json.loads(raw)["requests"])
                server._kill("create")
                if not self._failed("batches.create"):
                    self._send(200, server.anthropic_json(batch))
            elif path[:3] == ["v1", "messages", "batches"] and path[-1] == "cancel":
                if batch := self._batch(path[3]):
                    server.cancel(batch)
                    self._send(200, server.anthropic_json(batch))
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

    return Handler


@pytest.fixture(name="batch_server")
def batch_server_fixture() -> Iterator[BatchServer]:
    """A running `BatchServer`, shut down after the test."""
    with BatchServer() as server:
        yield server
    gc.collect()  # as in llm_server: a dropped client's connection warns in this test
