"""Helpers for tests, demos and recipes: a deterministic simulated LLM and crash triggers.

``SimulatedLLM`` answers chat messages the way an OpenAI-compatible endpoint
would, as a plain dict of the Chat Completions shape (``model``, ``choices``,
``usage``), so ``usage_from`` and ``ctx.record_usage`` read it like a real
response. The same prompt always gets the same text, token counts and
latency, for a given ``seed``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent_resume._accounting._prices import PriceTable
from agent_resume._accounting._responses import text_and_tools
from agent_resume._deadline import MockClock
from agent_resume._errors import AgentResumeError, ArgumentValueError

__all__ = ["Crash", "MockClock", "SimulatedError", "SimulatedLLM", "reply_text"]

_WORDS = (
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"),
)


class SimulatedError(AgentResumeError):
    """A failure the simulated LLM was told to produce (``fail_rate``)."""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(
            str(block.get("text", "")) if isinstance(block, Mapping) else str(block)
            for block in content
        )
    return "" if content is None else str(content)


def reply_text(response: Any) -> str:
    """The text of a Chat Completions (or Anthropic) response, as a dict or an SDK object."""
    text, _ = text_and_tools(response)
    return text or ""


class SimulatedLLM:
    """A deterministic stand-in for an OpenAI-compatible chat model.

    Args:
        latency: Seconds per call: a number, or ``(low, high)`` for a
            deterministic spread per prompt.
        seed: Changes every text, count and latency.
        model: The model name put in responses.
        input_price: USD per million input tokens, for ``prices``.
        output_price: USD per million output tokens.
        finish_after: From this turn on (counting the assistant messages
            already in the conversation, plus one), the reply ends with
            ``finish_word``; ``None`` never finishes.
        finish_word: The word that marks a final answer.
        fail_rate: The fraction of prompts (chosen by hash) whose call raises
            ``SimulatedError``.

    Example:
        >>> llm = SimulatedLLM(seed=1)
        >>> response = llm.complete([{"role": "user", "content": "hi"}])
        >>> response == llm.complete([{"role": "user", "content": "hi"}])
        True
    """

    def __init__(
        self,
        *,
        latency: float | tuple[float, float] = 0.0,
        seed: int = 0,
        model: str = "sim-1",
        input_price: float = 1.0,
        output_price: float = 4.0,
        finish_after: int | None = None,
        finish_word: str = "DONE",
        fail_rate: float = 0.0,
    ) -> None:
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if not 0 <= low <= high:
            raise ArgumentValueError(
                "latency", latency, f"`latency` must be at least 0, low <= high (got {latency!r})"
            )
        if not 0 <= fail_rate <= 1:
            raise ArgumentValueError(
                "fail_rate", fail_rate, f"`fail_rate` must be between 0 and 1 (got {fail_rate!r})"
            )
        self.latency = (float(low), float(high))
        self.seed = seed
        self.model = model
        self.input_price = input_price
        self.output_price = output_price
        self.finish_after = finish_after
        self.finish_word = finish_word
        self.fail_rate = fail_rate
        self.calls = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimulatedLLM(model={self.model!r}, seed={self.seed}, latency={self.latency!r})"

    @property
    def prices(self) -> PriceTable:
        """A price table that knows this model (give it to ``RunConfig(prices=...)``)."""
        return PriceTable(
            {self.model: {"input": self.input_price, "output": self.output_price}},
            genai_prices=False,
        )

    def _digest(self, messages: Sequence[Mapping[str, Any]]) -> bytes:
        text = "\x1e".join(
            f"{m.get('role', '')}\x1f{_content_text(m.get('content'))}" for m in messages
        )
        return hashlib.sha256(f"{self.seed}\x1d{text}".encode()).digest()

    def latency_for(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """The latency of a call with these messages."""
        low, high = self.latency
        if low == high:
            return low
        fraction = int.from_bytes(self._digest(messages)[8:12], "big") / 2**32
        return low + (high - low) * fraction

    def respond(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Build the response to ``messages`` without waiting.

        Raises:
            SimulatedError: The prompt falls in ``fail_rate``.
        """
        digest = self._digest(messages)
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.fail_rate and int.from_bytes(digest[12:16], "big") / 2**32 < self.fail_rate:
            raise SimulatedError(f"simulated failure of {self.model} (call {call})")
        count = 3 + digest[0] % 10
        words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 1 + count]]
        turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
        if self.finish_after is not None and turn >= self.finish_after:
            words.append(self.finish_word)
        text = " ".join(words)
        text = text[0].upper() + text[1:] + "."
        prompt_tokens = sum(4 + len(_content_text(m.get("content"))) // 4 for m in messages)
        completion_tokens = len(words) + 1 + digest[20] % 8
        return {
            "id": f"chatcmpl-sim-{digest[:6].hex()}",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def complete(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Answer ``messages`` after the simulated latency (sleeping)."""
        delay = self.latency_for(messages)
        if delay:
            time.sleep(delay)
        return self.respond(messages)

    async def acomplete(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Answer ``messages`` after the simulated latency (``asyncio.sleep``)."""
        delay = self.latency_for(messages)
        if delay:
            await asyncio.sleep(delay)
        return self.respond(messages)


class Crash:
    """Kills this process with a signal at the ``at``-th call, to test resumption.

    Args:
        at: Which call kills (from 1); ``None`` reads the environment variable
            ``env`` and never kills when it is unset or empty.
        sig: The signal; ``SIGKILL`` by default, which nothing can catch.
        env: The environment variable read when ``at`` is ``None``.

    Example:
        >>> crash = Crash(at=None, env="NO_SUCH_VARIABLE")
        >>> crash()  # never kills
    """

    def __init__(
        self,
        at: int | None = None,
        *,
        sig: int = signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM,
        env: str = "AGENT_RESUME_CRASH_AT",
    ) -> None:
        if at is None:
            value = os.environ.get(env, "")
            at = int(value) if value.strip() else None
        if at is not None and at < 1:
            raise ArgumentValueError("at", at, f"`at` must be at least 1 (got {at!r})")
        self.at = at
        self.sig = sig
        self.count = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Crash(at={self.at!r}, sig={self.sig!r})"

    def __call__(self) -> None:
        """Count a call, and kill the process if it is the chosen one."""
        with self._lock:
            self.count += 1
            count = self.count
        if self.at is not None and count == self.at:
            os.kill(os.getpid(), self.sig)
            time.sleep(5)  # the signal is delivered before this returns
