"""Tracing hooks of the run loop: a scope around the run, each item attempt and each call.

The run loop enters ``tracing.run(job_id)`` around the whole run and
``tracing.item(item_id, attempt)`` around each call of ``process``, so an
implementation can make its item span current while ``process`` runs (and
spans started inside nest under it). `call_span` is for code that makes one
LLM call (``ctx.call``/``ctx.acall``): it opens a span for the call when the
run is traced, and does nothing otherwise. ``with_otel`` provides the
OpenTelemetry implementation; nothing here imports OpenTelemetry.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage

__all__ = ["CallScope", "RunTracing", "call_span", "item_scope", "run_scope"]


class CallScope(Protocol):
    """What a call span is told while it is open."""

    def record(self, usage: Usage | None = None, *, response_model: str | None = None) -> None:
        """Note the call's usage and the model that answered.

        Args:
            usage: The call's usage (its tokens and cost), when known.
            response_model: The model the provider says answered.
        """


@runtime_checkable
class RunTracing(Protocol):
    """Scopes the run loop enters; see the module docstring."""

    def run(self, job_id: str) -> AbstractContextManager[object]:
        """A scope around the whole run."""

    def item(self, item_id: str, attempt: int) -> AbstractContextManager[object]:
        """A scope around one call of ``process`` (one attempt of one item)."""

    def call(
        self,
        *,
        operation: str = "chat",
        provider: str | None = None,
        model: str | None = None,
    ) -> AbstractContextManager[CallScope]:
        """A scope around one LLM call."""


class _NoCall:
    """The call scope of an untraced run: records nothing."""

    def record(self, usage: Usage | None = None, *, response_model: str | None = None) -> None:
        return None

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


_NO_CALL = _NoCall()
_NO_SCOPE: AbstractContextManager[object] = nullcontext()


def call_span(
    tracing: RunTracing | None,
    *,
    operation: str = "chat",
    provider: str | None = None,
    model: str | None = None,
) -> AbstractContextManager[CallScope]:
    """Open a span for one LLM call when the run is traced (``RunConfig.tracing``).

    Use it around the SDK call; the span is the child of the item's span and
    ends when the block does, with ``error.type`` when the block raises::

        with call_span(config.tracing, provider="openai", model="gpt-4o") as span:
            response = client.chat.completions.create(...)
            span.record(usage_from(response), response_model=response.model)

    Args:
        tracing: The run's tracing, ``None`` when untraced.
        operation: The GenAI operation name (``chat``, ``embeddings``, ...).
        provider: The GenAI provider name (``openai``, ``anthropic``,
            ``gcp.gemini``, ``aws.bedrock``, ...), guessed from the model
            when ``None``.
        model: The model requested.

    Returns:
        A context manager giving a `CallScope`.
    """
    if tracing is None:
        return _NO_CALL
    return tracing.call(operation=operation, provider=provider, model=model)


def item_scope(
    tracing: RunTracing | None, item_id: str, attempt: int
) -> AbstractContextManager[object]:
    """The scope the run loop enters around one ``process`` call (a no-op when untraced)."""
    if tracing is None:
        return _NO_SCOPE
    return tracing.item(item_id, attempt)


def run_scope(tracing: RunTracing | None, job_id: str) -> AbstractContextManager[object]:
    """The scope the run loop enters around the run (a no-op when untraced)."""
    if tracing is None:
        return _NO_SCOPE
    return tracing.run(job_id)
