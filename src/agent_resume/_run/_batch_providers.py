"""The providers' batch APIs behind one small interface: OpenAI Batches and Anthropic Message Batches.

An adapter turns the five things batch mode does (submit, find a submission
by its key, read a batch's state, stream its results, cancel) into calls of
the official SDK client it was given, read by duck typing (no SDK is
imported). Async clients are driven from the batch engine's worker thread:
each coroutine is handed to the caller's event loop and awaited there.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from agent_resume._errors import ArgumentTypeError

KEY_FIELD = "agent_resume_key"

MIN_REQUEST_TIMEOUT = 1.0
"""Seconds a call to the batch API may wait at least, however near the deadline."""

REQUEST_TIMEOUT = 60.0
"""Seconds a call to the batch API may wait for a silent connection (to connect, or
for the next bytes read or written) unless the client's own timeout is shorter.

The SDKs wait 600 s, and try twice more: a poll on a connection that went
silent would hold the run for half an hour, past its deadline. A slow upload
or download that still moves is not cut.
"""

Outcome = Literal["succeeded", "errored", "expired", "canceled"]


@dataclass(frozen=True)
class BatchState:
    """A batch as the provider reports it.

    Attributes:
        status: The provider's own word (``in_progress``, ``completed``,
            ``ended``, ...).
        ended: Whether its results are final and can be read.
        counts: The provider's request counts, as a plain dict.
        error: Why the provider rejected the batch as a whole (OpenAI's
            ``failed``: its input did not validate, or the organisation's
            enqueued-token limit was reached), in its own words; ``None``
            for any other status.
    """

    status: str
    ended: bool
    counts: dict[str, int]
    error: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome.

    Attributes:
        custom_id: The request's ID in the batch.
        outcome: ``succeeded``, ``errored``, ``expired`` or ``canceled``.
        response: The response (an SDK object or a dict) when it succeeded.
        error: What went wrong, for people, when it did not.
        status_code: The HTTP status of an errored request, when known.
    """

    custom_id: str
    outcome: Outcome
    response: Any = None
    error: str = ""
    status_code: int | None = None


class _Caller:
    """Calls a client method, awaiting it on the caller's loop when it is a coroutine.

    Args:
        loop: The caller's event loop, for an async client.
        time_left: Seconds left before the run's deadline, when it has one.
        tries: How many times the client tries a request (its retries + 1).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        time_left: Callable[[], float] | None = None,
        tries: int = 1,
    ) -> None:
        self.loop = loop
        self.time_left = time_left
        self.tries = max(1, tries)

    def request(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call an SDK method with a timeout that keeps the run's deadline.

        Each try waits at most :data:`REQUEST_TIMEOUT` on a silent connection,
        and its share of the time left: the client's own retries included, a
        call that hangs ends about when the deadline comes, not minutes after.
        """
        if self.time_left is not None:
            left = self.time_left()
            if left != math.inf:
                share = min(REQUEST_TIMEOUT, left / self.tries)
                kwargs.setdefault("timeout", max(MIN_REQUEST_TIMEOUT, share))
        return self(fn, *args, **kwargs)

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            if self.loop is None:
                raise ArgumentTypeError(
                    "client",
                    fn,
                    "an async client needs arun_batch (run_batch takes a sync client)",
                )
            return asyncio.run_coroutine_threadsafe(_awaited(value), self.loop).result()
        return value

    def iterate(self, value: Any) -> Iterator[Any]:
        """Iterate a sync or an async iterator from this thread, one element at a time."""
        if hasattr(value, "__aiter__"):
            aiter_: AsyncIterator[Any] = value.__aiter__()
            while True:
                try:
                    yield self(aiter_.__anext__)
                except StopAsyncIteration:
                    return
        else:
            yield from value


async def _awaited(value: Any) -> Any:
    return await value


class OpenAIBatches:
    """OpenAI's Files + Batches: a JSONL file of requests, then a batch over it."""

    provider = "openai"
    required = ("model",)
    max_requests = 50_000
    max_bytes = 190 * 1024 * 1024  # the limit is 200 MB; keep room for the envelope

    def __init__(self, client: Any, call: _Caller, endpoint: str) -> None:
        self.client = client
        self.call = call
        self.endpoint = endpoint

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One request line of the input file."""
        record = {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")

    def submit(self, key: str, lines: Sequence[bytes]) -> str:
        """Upload the requests and create the batch, with ``key`` in its metadata."""
        file = self.call.request(
            self.client.files.create, file=("requests.jsonl", b"".join(lines)), purpose="batch"
        )
        batch = self.call.request(
            self.client.batches.create,
            input_file_id=file.id,
            endpoint=self.endpoint,
            completion_window="24h",
            metadata={KEY_FIELD: key},
        )
        return str(batch.id)

    def find(self, key: str, since: float, count: int, known: AbstractSet[str]) -> list[str]:
        """The batch created with ``key`` in its metadata, if the provider has one (``[]``)."""
        listed = self.call.request(self.client.batches.list, limit=100)
        for batch in self.call.iterate(listed):
            if (getattr(batch, "metadata", None) or {}).get(KEY_FIELD) == key:
                return [str(batch.id)]
            if getattr(batch, "created_at", since) < since - 3600:
                break  # newest first: older batches cannot be ours
        return []

    def state(self, batch_id: str) -> BatchState:
        """The batch's status and counts."""
        batch = self.call.request(self.client.batches.retrieve, batch_id)
        counts = batch.request_counts
        ended = batch.status in ("completed", "failed", "expired", "cancelled")
        return BatchState(
            str(batch.status),
            ended,
            {
                "total": int(getattr(counts, "total", 0) or 0),
                "completed": int(getattr(counts, "completed", 0) or 0),
                "failed": int(getattr(counts, "failed", 0) or 0),
            },
            _rejection(getattr(batch, "errors", None)) if batch.status == "failed" else None,
        )

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        """Stream the output and error files, one request at a time."""
        batch = self.call.request(self.client.batches.retrieve, batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = self.call.request(self.client.files.content, file_id)
            for raw in _lines(content):
                if raw.strip():
                    yield _openai_result(json.loads(raw))

    def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch."""
        self.call.request(self.client.batches.cancel, batch_id)


def _rejection(errors: Any) -> str:
    """The first of a failed OpenAI batch's errors (``code: message``), and how many more."""
    data = list(getattr(errors, "data", None) or [])
    if not data:
        return "the provider gave no reason"
    first = data[0]
    text = f"{getattr(first, 'code', None) or 'error'}: {getattr(first, 'message', None) or ''}"
    line = getattr(first, "line", None)
    if line is not None:
        text += f" (line {line} of the requests)"
    return text + (f"; {len(data) - 1} more" if len(data) > 1 else "")


def _lines(content: Any) -> Iterator[str]:
    iter_lines = getattr(content, "iter_lines", None)
    if callable(iter_lines):
        yield from iter_lines()
    else:
        yield from str(getattr(content, "text", content)).split("\n")


def _openai_result(line: dict[str, Any]) -> BatchResult:
    custom_id = str(line.get("custom_id"))
    response = line.get("response") or {}
    error = line.get("error") or {}
    status = response.get("status_code")
    if status == 200 and not error:
        return BatchResult(custom_id, "succeeded", response.get("body"))
    code = str(error.get("code", ""))
    if code == "batch_expired":
        return BatchResult(custom_id, "expired")
    if code == "batch_cancelled":
        return BatchResult(custom_id, "canceled")
    if not error:  # a request the provider answered with an error: its body says why
        body = response.get("body")
        found = body.get("error") if isinstance(body, dict) else None
        error = found if isinstance(found, dict) else {}
        code = str(error.get("code") or error.get("type") or "")
    message = f"HTTP {status}" if status is not None else "no response"
    if code:
        message += f" {code}: {error.get('message', '')}"
    return BatchResult(custom_id, "errored", error=message, status_code=status)


class AnthropicBatches:
    """Anthropic's Message Batches: the requests go in the create call itself.

    A message batch carries no metadata, so a submission cannot be found by
    its key: ``find`` adopts the one batch created since the intent with the
    same number of requests, and the results are then checked against the
    intent's custom IDs (which carry the key).
    """

    provider = "anthropic"
    required = ("model", "max_tokens")
    max_requests = 100_000
    max_bytes = 240 * 1024 * 1024  # the limit is 256 MB

    def __init__(self, client: Any, call: _Caller) -> None:
        self.client = client
        self.call = call

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One request, as JSON, to size the batch by."""
        return json.dumps({"custom_id": custom_id, "params": body}, ensure_ascii=False).encode()

    def submit(self, key: str, lines: Sequence[bytes]) -> str:
        """Create the batch with every request in the call."""
        requests = [json.loads(line) for line in lines]
        batch = self.call.request(self.client.messages.batches.create, requests=requests)
        return str(batch.id)

    def find(self, key: str, since: float, count: int, known: AbstractSet[str]) -> list[str]:
        """The batches of ``count`` requests created since ``since`` that the job has not recorded.

        Message Batches keep no metadata: a batch is recognised by its time and
        size. The job's other batches (``known``) are left out; more than one
        left is a batch that cannot be told apart (another job's, on the account).
        """
        found = []
        for batch in self.call.iterate(
            self.call.request(self.client.messages.batches.list, limit=100)
        ):
            created = _timestamp(getattr(batch, "created_at", None))
            if created is not None and created < since - 5:
                break  # newest first
            counts = batch.request_counts
            total = sum(
                int(getattr(counts, f, 0) or 0)
                for f in ("processing", "succeeded", "errored", "canceled", "expired")
            )
            if total == count and str(batch.id) not in known:
                found.append(str(batch.id))
        return found

    def state(self, batch_id: str) -> BatchState:
        """The batch's status and counts."""
        batch = self.call.request(self.client.messages.batches.retrieve, batch_id)
        counts = batch.request_counts
        return BatchState(
            str(batch.processing_status),
            batch.processing_status == "ended",
            {
                f: int(getattr(counts, f, 0) or 0)
                for f in ("processing", "succeeded", "errored", "canceled", "expired")
            },
        )

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        """Stream the results, one request at a time."""
        for entry in self.call.iterate(
            self.call.request(self.client.messages.batches.results, batch_id)
        ):
            result = entry.result
            kind = str(result.type)
            if kind == "succeeded":
                yield BatchResult(str(entry.custom_id), "succeeded", result.message)
            elif kind == "errored":
                error = getattr(getattr(result, "error", None), "error", None)
                etype = str(getattr(error, "type", "error"))
                status = _ANTHROPIC_ERROR_STATUS.get(etype, 500)
                yield BatchResult(
                    str(entry.custom_id),
                    "errored",
                    error=f"{etype}: {getattr(error, 'message', '')}",
                    status_code=status,
                )
            elif kind == "expired":
                yield BatchResult(str(entry.custom_id), "expired")
            else:
                yield BatchResult(str(entry.custom_id), "canceled")

    def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch."""
        self.call.request(self.client.messages.batches.cancel, batch_id)


# The HTTP status of each of Anthropic's error types, which a batch result names
# without its status: whether the item may be tried again follows from it (a
# billing error or a request too large is not cured by another try).
_ANTHROPIC_ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


Adapter = OpenAIBatches | AnthropicBatches


def adapter_for(
    client: Any,
    loop: asyncio.AbstractEventLoop | None,
    endpoint: str = "/v1/chat/completions",
    time_left: Callable[[], float] | None = None,
) -> Adapter:
    """The adapter for an OpenAI or Anthropic client (sync or async).

    Args:
        client: The SDK client.
        loop: The caller's event loop, for an async client.
        endpoint: The OpenAI endpoint the batch's requests go to.
        time_left: Seconds left before the run's deadline: each call's timeout
            is cut to its share of them.

    Raises:
        ArgumentTypeError: ``client`` is neither.
    """
    client = _bounded(client)
    retries = getattr(client, "max_retries", 0)
    tries = 1 + (retries if isinstance(retries, int) and not isinstance(retries, bool) else 0)
    call = _Caller(loop, time_left, tries)
    messages = getattr(client, "messages", None)
    adapter: Adapter
    if messages is not None and hasattr(messages, "batches"):
        adapter, create = AnthropicBatches(client, call), messages.batches.create
    elif hasattr(client, "batches") and hasattr(client, "files"):
        adapter, create = OpenAIBatches(client, call, endpoint), client.batches.create
    else:
        raise ArgumentTypeError(
            "client",
            client,
            "`client` must be an OpenAI or Anthropic SDK client (openai.OpenAI(), "
            f"anthropic.Anthropic() or their async forms; got {type(client).__name__})",
        )
    if loop is None and inspect.iscoroutinefunction(create):
        raise ArgumentTypeError(
            "client",
            client,
            f"`client` is async ({type(client).__name__}): use arun_batch, or a sync client",
        )
    return adapter


def _bounded(client: Any) -> Any:
    """The client, with calls that wait at most :data:`REQUEST_TIMEOUT` on a silent connection.

    A client whose own timeout is no longer is kept as it is.
    """
    with_options = getattr(client, "with_options", None)
    if with_options is None:
        return client
    current = getattr(client, "timeout", None)
    read = getattr(current, "read", current)  # an httpx.Timeout, or seconds
    if isinstance(read, (int, float)) and not isinstance(read, bool) and read <= REQUEST_TIMEOUT:
        return client
    return with_options(timeout=REQUEST_TIMEOUT)
