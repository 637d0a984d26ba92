"""OpenTelemetry for a run, in the GenAI semantic conventions (version `SEMCONV_VERSION`).

This module needs the ``otel`` extra (``opentelemetry-api``); it is imported
only when :func:`with_otel` is called. Without an SDK configured, the API's
no-op tracer and meter make every call free.

Spans: the run is ``invoke_workflow {job_id}`` (``gen_ai.operation.name =
invoke_workflow``, ``gen_ai.workflow.name`` = the job ID); each item attempt
is a child ``agent_resume.item``, current while ``process`` runs, so spans
that auto-instrumented SDKs start inside it nest under it; each call wrapped
in `agent_resume._run._tracing.call_span` is a ``{operation} {model}`` client
span under the item with the ``gen_ai.*`` request, response and usage
attributes. Token counts go in ``gen_ai.usage.*`` on call spans only (an
item span carries its totals as ``agent_resume.*``, so a backend adding up
``gen_ai.usage`` never counts a call twice). Cost has no convention: it is
``agent_resume.cost_usd`` on spans and the ``agent_resume.cost`` counter.

Metrics: ``gen_ai.client.token.usage`` (a histogram per recorded call, by
``gen_ai.token.type``), ``gen_ai.client.operation.duration`` (per call span),
and ``agent_resume.items``, ``agent_resume.tokens``, ``agent_resume.cost``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from agent_resume._accounting._model_names import parse_model
from agent_resume._errors import MissingExtraError
from agent_resume._records import error_text
from agent_resume._version import __version__

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage
    from agent_resume._run._config import RunConfig
    from agent_resume._run._report import ItemOutcome
    from agent_resume._stop import StopReason

__all__ = ["SEMCONV_VERSION", "provider_name", "with_otel"]

SEMCONV_VERSION = "1.44.0"
"""The OpenTelemetry semantic conventions the names follow."""

_SCOPE = "agent_resume"
_SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# Attribute and metric names of the conventions (checked against
# opentelemetry-semantic-conventions in the tests; not imported, so the
# otel extra needs only opentelemetry-api).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
WORKFLOW = "gen_ai.workflow.name"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
ERROR_TYPE = "error.type"
TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"

# Bucket boundaries the conventions advise for the two histograms.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24]
_DURATION_BUCKETS += [20.48, 40.96, 81.92]

_PREFIXES = (
    ("claude", "anthropic"),
    ("gemini", "gcp.gemini"),
    ("gpt", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("grok", "x_ai"),
    ("deepseek", "deepseek"),
    ("mistral", "mistral_ai"),
    ("command", "cohere"),
)


def provider_name(model: str | None) -> str:
    """The ``gen_ai.provider.name`` a model name implies, ``_OTHER`` when unknown.

    Bedrock IDs give ``aws.bedrock`` and Vertex paths ``gcp.vertex_ai``;
    otherwise the model family names the provider.

    Args:
        model: A model name as the provider reports it.

    Returns:
        The provider name.
    """
    if not model:
        return "_OTHER"
    ref = parse_model(model)
    if ref.provider == "aws":
        return "aws.bedrock"
    if ref.provider == "google" and "publishers/" in ref.raw:
        return "gcp.vertex_ai"
    for prefix, provider in _PREFIXES:
        if ref.name.startswith(prefix):
            return provider
    return "_OTHER"


def _error_type(error: BaseException) -> str:
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def with_otel(
    config: RunConfig,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> RunConfig:
    """Return ``config`` reporting its runs to OpenTelemetry (see the module docstring).

    The run becomes an ``invoke_workflow`` span and each item attempt an
    ``agent_resume.item`` span under it, started before ``process`` runs and
    current while it runs; a failure sets ``error.type``, records the
    exception and an error status. Hooks already in ``config``
    (``on_item_done``, ``on_usage``, ``on_stop``) still run, after these.

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
    tracer = trace.get_tracer(
        _SCOPE, __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA_URL
    )
    meter = metrics.get_meter(
        _SCOPE, __version__, meter_provider=meter_provider, schema_url=_SCHEMA_URL
    )
    otel = _OtelRun(config, tracer, meter)
    return dataclasses.replace(
        config,
        on_item_done=otel.on_item_done,
        on_usage=otel.on_usage,
        on_stop=otel.on_stop,
        tracing=otel,
    )


class _OtelCall:
    """The call scope of a traced call: sets the response and usage attributes."""

    def __init__(self, span: Any) -> None:
        self.span = span
        self.response_model: str | None = None

    def record(self, usage: Usage | None = None, *, response_model: str | None = None) -> None:
        model = response_model or (usage.model if usage is not None else None)
        if model is not None:
            self.response_model = model
            self.span.set_attribute(RESPONSE_MODEL, model)
        if usage is None:
            return
        self.span.set_attributes(
            {
                INPUT_TOKENS: usage.input_tokens,
                OUTPUT_TOKENS: usage.output_tokens,
                CACHE_READ_TOKENS: usage.cache_read_tokens,
                CACHE_CREATION_TOKENS: usage.cache_write_tokens,
                REASONING_TOKENS: usage.reasoning_tokens,
            }
        )
        if usage.cost_usd is not None:
            self.span.set_attribute("agent_resume.cost_usd", usage.cost_usd)


class _OtelRun:
    """The tracing scopes and hooks of one instrumented configuration."""

    def __init__(self, config: RunConfig, tracer: Any, meter: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._trace = trace
        self._kind_client: Any = SpanKind.CLIENT
        self._kind_internal: Any = SpanKind.INTERNAL
        self._status: Any = Status
        self._error: Any = StatusCode.ERROR
        self._tracer = tracer
        self._job = {"agent_resume.job_id": config.job_id}
        self._then_item: Callable[[ItemOutcome], object] | None = config.on_item_done
        self._then_usage: Callable[[str, Usage], object] | None = config.on_usage
        self._then_stop: Callable[[StopReason], object] | None = config.on_stop
        self._run_span: Any = None
        self._run_context: Any = None
        self._item: contextvars.ContextVar[Any] = contextvars.ContextVar("agent_resume_item")
        self._lock = threading.Lock()
        self._totals: dict[str, float] = {}
        self._items = meter.create_counter(
            "agent_resume.items", unit="{item}", description="Items ended, by status"
        )
        self._tokens = meter.create_counter(
            "agent_resume.tokens", unit="{token}", description="LLM tokens, by direction"
        )
        self._cost = meter.create_counter(
            "agent_resume.cost", unit="USD", description="Known LLM cost"
        )
        self._token_usage = meter.create_histogram(
            TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def __repr__(self) -> str:
        return f"<with_otel tracing of job {self._job['agent_resume.job_id']!r}>"

    # -- scopes (RunTracing) -----------------------------------------------------

    @contextmanager
    def run(self, job_id: str) -> Iterator[object]:
        span = self._tracer.start_span(
            f"invoke_workflow {job_id}",
            kind=self._kind_internal,
            attributes={OPERATION: "invoke_workflow", WORKFLOW: job_id, **self._job},
        )
        with self._lock:
            self._run_span, self._run_context = span, self._trace.set_span_in_context(span)
            self._totals = {}
        try:
            with self._trace.use_span(span, end_on_exit=False, record_exception=True):
                yield span
        except BaseException as error:
            span.set_attribute(ERROR_TYPE, _error_type(error))
            raise
        finally:
            with self._lock:
                totals = {f"agent_resume.{key}": value for key, value in self._totals.items()}
                self._run_span = self._run_context = None
            span.set_attributes(totals)
            span.end()

    @contextmanager
    def item(self, item_id: str, attempt: int) -> Iterator[object]:
        with self._lock:
            parent = self._run_context
        span = self._tracer.start_span(
            "agent_resume.item",
            context=parent,
            kind=self._kind_internal,
            attributes={
                **self._job,
                "agent_resume.item_id": item_id,
                "agent_resume.attempt": attempt,
            },
        )
        token = self._item.set(span)
        try:
            with self._trace.use_span(span, end_on_exit=True, record_exception=True):
                yield span
        finally:
            self._item.reset(token)

    @contextmanager
    def call(
        self, *, operation: str = "chat", provider: str | None = None, model: str | None = None
    ) -> Iterator[_OtelCall]:
        provider = provider or provider_name(model)
        attributes: dict[str, Any] = {OPERATION: operation, PROVIDER: provider}
        if model is not None:
            attributes[REQUEST_MODEL] = model
        name = f"{operation} {model}" if model else operation
        span = self._tracer.start_span(name, kind=self._kind_client, attributes=attributes)
        scope = _OtelCall(span)
        started = time.monotonic()
        metric = dict(attributes)
        try:
            with self._trace.use_span(span, end_on_exit=False, record_exception=True):
                yield scope
        except BaseException as error:
            span.set_attribute(ERROR_TYPE, _error_type(error))
            metric[ERROR_TYPE] = _error_type(error)
            raise
        finally:
            if scope.response_model is not None:
                metric[RESPONSE_MODEL] = scope.response_model
            self._duration.record(time.monotonic() - started, metric)
            span.end()

    # -- hooks ---------------------------------------------------------------------

    def on_usage(self, item_id: str, usage: Usage) -> None:
        attributes: dict[str, Any] = {
            **self._job,
            OPERATION: "chat",
            PROVIDER: provider_name(usage.model),
        }
        if usage.model is not None:
            attributes[RESPONSE_MODEL] = usage.model
        self._token_usage.record(usage.input_tokens, {**attributes, TOKEN_TYPE: "input"})
        self._token_usage.record(usage.output_tokens, {**attributes, TOKEN_TYPE: "output"})
        if self._then_usage is not None:
            self._then_usage(item_id, usage)

    def on_item_done(self, outcome: ItemOutcome) -> None:
        usage = outcome.usage
        attributes: dict[str, Any] = {
            "agent_resume.status": outcome.status,
            "agent_resume.calls": usage.calls,
            "agent_resume.input_tokens": usage.input_tokens,
            "agent_resume.output_tokens": usage.output_tokens,
        }
        if usage.cost_usd is not None:
            attributes["agent_resume.cost_usd"] = usage.cost_usd
        if outcome.stop is not None:
            attributes["agent_resume.stop"] = outcome.stop
        span = self._item.get(None)
        after_the_fact = span is None
        if after_the_fact:
            # Not inside the run loop's item scope: a span for the item's duration.
            end = time.time_ns()
            with self._lock:
                parent = self._run_context
            span = self._tracer.start_span(
                "agent_resume.item",
                context=parent,
                start_time=end - int(outcome.duration_seconds * 1e9),
                attributes={
                    **self._job,
                    "agent_resume.item_id": outcome.item_id,
                    "agent_resume.attempt": outcome.attempt,
                },
            )
        span.set_attributes(attributes)
        if outcome.error is not None:
            span.set_attribute(ERROR_TYPE, _error_type(outcome.error))
            span.record_exception(outcome.error)
            text = error_text(outcome.error)
            span.set_status(self._status(self._error, text))
        if after_the_fact:
            span.end()
        with self._lock:
            totals = self._totals
            for key, value in (
                (f"items_{outcome.status}", 1),
                ("input_tokens", usage.input_tokens),
                ("output_tokens", usage.output_tokens),
                ("cost_usd", usage.cost_usd or 0.0),
            ):
                totals[key] = totals.get(key, 0) + value
        self._items.add(1, {**self._job, "agent_resume.status": outcome.status})
        self._tokens.add(usage.input_tokens, {**self._job, "agent_resume.direction": "input"})
        self._tokens.add(usage.output_tokens, {**self._job, "agent_resume.direction": "output"})
        if usage.cost_usd is not None:
            self._cost.add(usage.cost_usd, self._job)
        if self._then_item is not None:
            self._then_item(outcome)

    def on_stop(self, reason: StopReason) -> None:
        with self._lock:
            span = self._run_span
        attributes = {"agent_resume.stop": reason.name, "agent_resume.stop_message": reason.message}
        if span is not None:
            span.set_attributes(attributes)
            span.add_event("agent_resume.stop", attributes)
        if self._then_stop is not None:
            self._then_stop(reason)
