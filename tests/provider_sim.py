"""A provider simulator: a loopback HTTP server with rate limits, failures and hangs, counting what it served.

It speaks the OpenAI chat-completions (``/v1/chat/completions``) and Anthropic
messages (``/v1/messages``) shapes, so the real ``openai`` and ``anthropic``
SDK clients talk to it (``base_url=sim.openai_url`` / ``sim.url``). Like a
real provider it:

- enforces requests and tokens per "minute" over a sliding window (the
  minute is ``window`` seconds, so tests scale time down), answering HTTP 429
  with ``retry-after``, ``retry-after-ms`` and OpenAI's ``x-ratelimit-*`` (or
  Anthropic's ``anthropic-ratelimit-*``) headers;
- fails a fraction of requests with a transient error (500, 502, 503 or
  Anthropic's 529), and always fails the requests of a fraction of items
  ("poisoned") with HTTP 400;
- leaves a fraction of requests hanging (``hang`` seconds, then the
  connection is closed without an answer);
- counts everything: requests, 200s served with their tokens, 429s, errors,
  per item, with times.

An item is named in the request by a ``[item:ID]`` marker in its text. The
tokens charged and returned for a request are its characters / 4 in and
``output_tokens`` out (or ``max_tokens`` when smaller).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_server import Reply, anthropic_message, openai_chat

__all__ = ["ProviderSim", "SimConfig"]

_ITEM = re.compile(r"\[item:([^\]]+)\]")


@dataclass
class SimConfig:
    """What the simulated provider enforces and injects."""

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    latency: tuple[float, float] = (0.0, 0.0)
    transient: float = 0.0
    permanent_items: float = 0.0
    hang_rate: float = 0.0
    hang: float = 30.0
    output_tokens: int = 20
    send_limit_headers: bool = True
    seed: int = 1


@dataclass
class Served:
    """One request answered with HTTP 200, admitted at ``at`` (monotonic seconds)."""

    at: float
    item: str | None
    input_tokens: int
    output_tokens: int


@dataclass
class _Counts:
    requests: int = 0
    served: list[Served] = field(default_factory=list)
    rate_limited: int = 0
    transient: int = 0
    permanent: int = 0
    hung: int = 0
    per_item: Counter[str] = field(default_factory=Counter)
    log: list[tuple[float, int]] = field(default_factory=list)
    """Every request as ``(admitted at, status)``; a hung one has status 0."""
    served_items: Counter[str] = field(default_factory=Counter)
    permanent_requests: Counter[str] = field(default_factory=Counter)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class ProviderSim:
    """The simulator; a context manager listening on 127.0.0.1 on a free port."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.counts = _Counts()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._window: deque[tuple[float, int]] = deque()
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL of an Anthropic client."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """The base URL of an OpenAI client."""
        return f"{self.url}/v1"

    def __enter__(self) -> ProviderSim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # -- what was served ---------------------------------------------------------

    def poisoned(self, item: str | None) -> bool:
        """Whether every request of this item fails with HTTP 400."""
        if item is None or not self.config.permanent_items:
            return False
        digest = hashlib.sha256(f"{self.config.seed}:{item}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.config.permanent_items

    def served_totals(self) -> tuple[int, int, int]:
        """``(calls, input tokens, output tokens)`` answered with HTTP 200."""
        with self._lock:
            served = list(self.counts.served)
        return (
            len(served),
            sum(s.input_tokens for s in served),
            sum(s.output_tokens for s in served),
        )

    def max_in_window(self) -> tuple[int, int]:
        """The most requests and tokens served within any one window (the limit's test)."""
        with self._lock:
            served = sorted(self.counts.served, key=lambda s: s.at)
        most_requests = most_tokens = 0
        tokens = 0
        start = 0
        for end, s in enumerate(served):
            tokens += s.input_tokens + s.output_tokens
            while served[start].at <= s.at - self.config.window:
                tokens -= served[start].input_tokens + served[start].output_tokens
                start += 1
            most_requests = max(most_requests, end - start + 1)
            most_tokens = max(most_tokens, tokens)
        return most_requests, most_tokens

    # -- deciding a request -------------------------------------------------------------

    def _admit(self, cost: int, now: float) -> float | None:
        """Charge the window for a request; the seconds until it would fit if it does not."""
        config = self.config
        window = self._window
        while window and window[0][0] <= now - config.window:
            window.popleft()
        over_requests = config.rpm is not None and len(window) + 1 > config.rpm
        used = sum(c for _, c in window)
        over_tokens = config.tpm is not None and used + cost > config.tpm
        if not over_requests and not over_tokens:
            window.append((now, cost))
            return None
        # The wait until enough of the window has expired.
        wait = 0.0
        if over_requests:
            assert config.rpm is not None
            wait = window[len(window) - config.rpm][0] + config.window - now
        if over_tokens:
            assert config.tpm is not None
            need = used + cost - config.tpm
            freed = 0
            for at, c in window:
                freed += c
                if freed >= need:
                    wait = max(wait, at + config.window - now)
                    break
        return max(wait, 0.001)

    def _limit_headers(self, anthropic: bool, now: float, wait: float | None) -> dict[str, str]:
        config = self.config
        if not config.send_limit_headers:
            return {}
        used = len(self._window)
        tokens = sum(c for _, c in self._window)
        # Limits are advertised per real minute, as providers do, whatever the window.
        scale = 60.0 / config.window
        reset = wait if wait is not None else 0.0
        headers: dict[str, str] = {}
        if anthropic:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + reset))
            if config.rpm is not None:
                headers["anthropic-ratelimit-requests-limit"] = str(round(config.rpm * scale))
                headers["anthropic-ratelimit-requests-remaining"] = str(max(0, config.rpm - used))
                headers["anthropic-ratelimit-requests-reset"] = stamp
            if config.tpm is not None:
                headers["anthropic-ratelimit-tokens-limit"] = str(round(config.tpm * scale))
                headers["anthropic-ratelimit-tokens-remaining"] = str(max(0, config.tpm - tokens))
                headers["anthropic-ratelimit-tokens-reset"] = stamp
        else:
            if config.rpm is not None:
                headers["x-ratelimit-limit-requests"] = str(round(config.rpm * scale))
                headers["x-ratelimit-remaining-requests"] = str(max(0, config.rpm - used))
                headers["x-ratelimit-reset-requests"] = f"{reset * 1000:.0f}ms"
            if config.tpm is not None:
                headers["x-ratelimit-limit-tokens"] = str(round(config.tpm * scale))
                headers["x-ratelimit-remaining-tokens"] = str(max(0, config.tpm - tokens))
                headers["x-ratelimit-reset-tokens"] = f"{reset * 1000:.0f}ms"
        return headers

    def decide(self, body: dict[str, Any], anthropic: bool) -> tuple[str, Any, dict[str, str]]:
        """What to do with a request: ``("ok", (in, out), headers)``, ``("error", status, headers)`` or ``("hang", None, {})``."""
        text = json.dumps(body.get("messages", ""), ensure_ascii=False) + str(
            body.get("system", "")
        )
        match = _ITEM.search(text)
        item = match.group(1) if match else None
        input_tokens = max(1, math.ceil(len(text) / 4))
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        output_tokens = self.config.output_tokens
        if isinstance(limit, int):
            output_tokens = min(output_tokens, limit)
        now = time.monotonic()
        with self._lock:
            counts = self.counts
            counts.requests += 1
            if item is not None:
                counts.per_item[item] += 1
            wait = self._admit(input_tokens + output_tokens, now)
            headers = self._limit_headers(anthropic, now, wait)
            if wait is not None:
                counts.log.append((now, 429))
                counts.rate_limited += 1
                headers["retry-after"] = str(math.ceil(wait))
                headers["retry-after-ms"] = f"{wait * 1000:.0f}"
                return "error", 429, headers
            if self.poisoned(item):
                counts.permanent += 1
                if item is not None:
                    counts.permanent_requests[item] += 1
                counts.log.append((now, 400))
                return "error", 400, headers
            roll = self._rng.random()
            if roll < self.config.transient:
                counts.transient += 1
                status = self._rng.choice((500, 502, 503, 529 if anthropic else 503))
                counts.log.append((now, status))
                return "error", status, headers
            if roll < self.config.transient + self.config.hang_rate:
                counts.hung += 1
                counts.log.append((now, 0))
                return "hang", None, {}
            latency = self._rng.uniform(*self.config.latency)
            counts.log.append((now, 200))
        return "ok", (item, input_tokens, output_tokens, latency, now), headers

    def served(self, item: str | None, input_tokens: int, output_tokens: int, at: float) -> None:
        """Count a 200 whose body was written (``at``: when the request was admitted)."""
        with self._lock:
            self.counts.served.append(Served(at, item, input_tokens, output_tokens))
            if item is not None:
                self.counts.served_items[item] += 1


def _error_body(status: int, anthropic: bool) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}
    kind = kinds.get(status, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": f"simulated {status}"}}
    return {"error": {"message": f"simulated {status}", "type": kind, "code": None}}


def _handler(sim: ProviderSim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?", 1)[0]
            anthropic = path.endswith("/messages")
            if not anthropic and not path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route for {path}"}}, {})
                return
            what, detail, headers = sim.decide(body if isinstance(body, dict) else {}, anthropic)
            if what == "hang":
                time.sleep(sim.config.hang)
                self.close_connection = True
                return
            if what == "error":
                self._send(detail, _error_body(detail, anthropic), headers)
                return
            item, input_tokens, output_tokens, latency, admitted = detail
            if latency:
                time.sleep(latency)
            reply = Reply(
                text=f"done {item}", input_tokens=input_tokens, output_tokens=output_tokens
            )
            model = str(body.get("model") or "sim-model")
            answer = anthropic_message(reply, model) if anthropic else openai_chat(reply, model)
            if self._send(200, answer, headers):
                sim.served(item, input_tokens, output_tokens, admitted)

        def _send(self, status: int, body: Any, headers: dict[str, str]) -> bool:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:  # the client went away
                self.close_connection = True
                return False
            return True

    return Handler
