"""OpenTelemetry for a run: each item as a span, counts, tokens and cost as metrics.

This module needs the ``otel`` extra (``opentelemetry-api``); it is imported
only when :func:`with_otel` is called. Without an SDK configured, the API's
no-op tracer and meter make every call free.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent_resume._errors import MissingExtraError

if TYPE_CHECKING:
    from agent_resume._run._config import RunConfig
    from agent_resume._run._report import ItemOutcome
    from agent_resume._stop import StopReason

__all__ = ["with_otel"]

_SCOPE = "agent_resume"


def with_otel(
    config: RunConfig,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> RunConfig:
    """Return ``config`` with hooks that report the run to OpenTelemetry.

    Every item becomes a span ``agent_resume.item`` (its start and end are the
    item's; its attributes the job, item ID, status, attempt, tokens and cost;
    a failure records the exception and an error status). The counters
    ``agent_resume.items`` (by status), ``agent_resume.tokens`` (by
    direction) and ``agent_resume.cost`` (USD, known costs only) add up as
    items end, and the run's stop becomes a span ``agent_resume.run.stop``.
    Hooks already in ``config`` still run, after these.

    Args:
        config: The run's configuration.
        tracer_provider: The provider to take the tracer from; the global one
            by default.
        meter_provider: The provider to take the meter from; the global one
            by default.

    Returns:
        A new configuration (``dataclasses.replace``); ``config`` is unchanged.

    Raises:
        MissingExtraError: ``opentelemetry-api`` is not installed.
    """
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise MissingExtraError("otel", "with_otel") from None
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
    hooks = _Hooks(config, tracer, meter)
    return dataclasses.replace(config, on_item_done=hooks.on_item_done, on_stop=hooks.on_stop)


class _Hooks:
    """The two hooks, holding the tracer, the meter's counters and the hooks they wrap."""

    def __init__(self, config: RunConfig, tracer: Any, meter: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._error_status: Any = Status
        self._error_code: Any = StatusCode.ERROR
        self._tracer = tracer
        self._job = {"agent_resume.job_id": config.job_id}
        self._then_item: Callable[[ItemOutcome], object] | None = config.on_item_done
        self._then_stop: Callable[[StopReason], object] | None = config.on_stop
        self._items = meter.create_counter(
            "agent_resume.items", unit="{item}", description="Items ended, by status"
        )
        self._tokens = meter.create_counter(
            "agent_resume.tokens", unit="{token}", description="LLM tokens, by direction"
        )
        self._cost = meter.create_counter(
            "agent_resume.cost", unit="USD", description="Known LLM cost"
        )

    def on_item_done(self, outcome: ItemOutcome) -> None:
        usage = outcome.usage
        end = time.time_ns()
        attributes: dict[str, Any] = {
            **self._job,
            "agent_resume.item_id": outcome.item_id,
            "agent_resume.status": outcome.status,
            "agent_resume.attempt": outcome.attempt,
            "agent_resume.calls": usage.calls,
            "agent_resume.input_tokens": usage.input_tokens,
            "agent_resume.output_tokens": usage.output_tokens,
        }
        if usage.cost_usd is not None:
            attributes["agent_resume.cost_usd"] = usage.cost_usd
        if outcome.stop is not None:
            attributes["agent_resume.stop"] = outcome.stop
        span = self._tracer.start_span(
            "agent_resume.item",
            start_time=end - int(outcome.duration_seconds * 1e9),
            attributes=attributes,
        )
        if outcome.error is not None:
            span.record_exception(outcome.error)
            text = f"{type(outcome.error).__name__}: {outcome.error}"
            span.set_status(self._error_status(self._error_code, text))
        span.end(end_time=end)
        self._items.add(1, {**self._job, "agent_resume.status": outcome.status})
        self._tokens.add(usage.input_tokens, {**self._job, "agent_resume.direction": "input"})
        self._tokens.add(usage.output_tokens, {**self._job, "agent_resume.direction": "output"})
        if usage.cost_usd is not None:
            self._cost.add(usage.cost_usd, self._job)
        if self._then_item is not None:
            self._then_item(outcome)

    def on_stop(self, reason: StopReason) -> None:
        span = self._tracer.start_span(
            "agent_resume.run.stop",
            attributes={
                **self._job,
                "agent_resume.stop": reason.name,
                "agent_resume.stop_message": reason.message,
            },
        )
        span.end()
        if self._then_stop is not None:
            self._then_stop(reason)
