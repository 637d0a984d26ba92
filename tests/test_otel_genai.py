"""OpenTelemetry in the GenAI semantic conventions: the span tree and the names.

Read back through the real OpenTelemetry SDK's in-memory exporters; names are
compared with the constants of opentelemetry-semantic-conventions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind, StatusCode

import agent_resume
from agent_resume import InMemoryStore, ResumableRun, RunConfig, usage_from
from agent_resume._run import _otel
from agent_resume._run._otel import SEMCONV_VERSION, provider_name, with_otel
from agent_resume._run._tracing import call_span
from agent_resume.testing import SimulatedLLM


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def config(self, job_id: str, **kwargs: Any) -> RunConfig:
        config = RunConfig(job_id=job_id, store=InMemoryStore(), progress=False, **kwargs)
        return with_otel(
            config, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def histograms(self, name: str) -> list[HistogramDataPoint]:
        points: list[HistogramDataPoint] = []
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)  # type: ignore[arg-type]
        return points


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def tree_of(spans: list[ReadableSpan]) -> dict[str, str | None]:
    """Span name (with the item ID for items) -> its parent's, within one trace."""
    by_id = {span.context.span_id: span for span in spans}
    assert len({span.context.trace_id for span in spans}) == 1, "one trace for the run"

    def label(span: ReadableSpan) -> str:
        item = (span.attributes or {}).get("agent_resume.item_id")
        return f"{span.name}[{item}]" if item is not None else span.name

    out: dict[str, str | None] = {}
    for span in spans:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        out[label(span)] = None if parent is None else label(parent)
    return out


def process_with_calls(telemetry: Telemetry, llm: SimulatedLLM, config: RunConfig) -> Any:
    sdk_tracer = telemetry.tracer_provider.get_tracer("some.instrumented.sdk")

    def process(item: str, ctx: Any) -> str:
        # What an auto-instrumented SDK does: start a span in the current context.
        with sdk_tracer.start_as_current_span(f"sdk {item}"):
            pass
        with call_span(config.tracing, model=llm.model) as span:
            response = llm.complete([{"role": "user", "content": item}])
            usage = ctx.record_usage(response)
            span.record(usage, response_model=response["model"])
        if item == "bad":
            raise ValueError("no good")
        return item

    return process


@pytest.mark.parametrize("concurrency", [1, 2])
def test_run_item_and_inner_spans_form_one_tree(telemetry: Telemetry, concurrency: int) -> None:
    llm = SimulatedLLM(seed=1)
    config = telemetry.config("tree-job", prices=llm.prices, concurrency=concurrency)
    ResumableRun(config).run(process_with_calls(telemetry, llm, config), ["a", "b", "bad"])
    tree = tree_of(telemetry.spans())
    model = llm.model
    assert tree == {
        "invoke_workflow tree-job": None,
        **{f"agent_resume.item[{i}]": "invoke_workflow tree-job" for i in ("a", "b", "bad")},
        **{f"sdk {i}": f"agent_resume.item[{i}]" for i in ("a", "b", "bad")},
        # Three call spans share a name; the last one written wins in this dict.
        f"chat {model}": tree[f"chat {model}"],
    }
    calls = [s for s in telemetry.spans() if s.name == f"chat {model}"]
    items = {s.context.span_id: s for s in telemetry.spans() if s.name == "agent_resume.item"}
    assert len(calls) == 3
    assert all(call.parent is not None and call.parent.span_id in items for call in calls)


def test_async_items_nest_the_same_way(telemetry: Telemetry) -> None:
    sdk_tracer = telemetry.tracer_provider.get_tracer("some.instrumented.sdk")

    async def process(item: str, ctx: Any) -> str:
        await asyncio.sleep(0)
        with sdk_tracer.start_as_current_span(f"sdk {item}"):
            await asyncio.sleep(0)
        return item

    config = telemetry.config("async-job", concurrency=2)
    asyncio.run(ResumableRun(config).arun(process, ["a", "b"]))
    assert tree_of(telemetry.spans()) == {
        "invoke_workflow async-job": None,
        "agent_resume.item[a]": "invoke_workflow async-job",
        "agent_resume.item[b]": "invoke_workflow async-job",
        "sdk a": "agent_resume.item[a]",
        "sdk b": "agent_resume.item[b]",
    }


def test_names_follow_the_semantic_conventions(telemetry: Telemetry) -> None:
    llm = SimulatedLLM(seed=2)
    config = telemetry.config("names-job", prices=llm.prices)
    ResumableRun(config).run(process_with_calls(telemetry, llm, config), ["a", "bad"])
    spans = telemetry.spans()
    run = next(s for s in spans if s.name == "invoke_workflow names-job")
    assert run.attributes is not None
    assert run.attributes[gen_ai.GEN_AI_OPERATION_NAME] == (
        gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value
    )
    assert run.attributes[gen_ai.GEN_AI_WORKFLOW_NAME] == "names-job"
    assert run.attributes["agent_resume.items_done"] == 1
    assert run.attributes["agent_resume.items_failed"] == 1

    call = next(s for s in spans if s.name == f"chat {llm.model}")
    attributes = call.attributes
    assert attributes is not None
    assert call.kind is SpanKind.CLIENT
    assert attributes[gen_ai.GEN_AI_OPERATION_NAME] == gen_ai.GenAiOperationNameValues.CHAT.value
    assert attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "_OTHER"
    assert attributes[gen_ai.GEN_AI_REQUEST_MODEL] == llm.model
    assert attributes[gen_ai.GEN_AI_RESPONSE_MODEL] == llm.model
    for name in (
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS,
        gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    ):
        assert isinstance(attributes[name], int), name
    assert attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert attributes["agent_resume.cost_usd"] > 0

    bad = next(
        s
        for s in spans
        if s.name == "agent_resume.item"
        and s.attributes
        and s.attributes["agent_resume.item_id"] == "bad"
    )
    assert bad.attributes is not None
    assert bad.attributes[ERROR_TYPE] == "ValueError"
    assert bad.status.status_code is StatusCode.ERROR
    # Items carry totals as agent_resume.*, never gen_ai.usage.* (no double counting).
    assert not any(key.startswith("gen_ai.usage.") for key in bad.attributes)

    # The module's own names are the conventions' names.
    assert _otel.TOKEN_USAGE == gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
    assert _otel.OPERATION_DURATION == gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
    assert _otel.TOKEN_TYPE == gen_ai.GEN_AI_TOKEN_TYPE
    assert _otel.ERROR_TYPE == ERROR_TYPE


def test_the_two_histograms_carry_their_required_attributes(telemetry: Telemetry) -> None:
    llm = SimulatedLLM(seed=3)
    config = telemetry.config("metrics-job", prices=llm.prices)
    report = ResumableRun(config).run(process_with_calls(telemetry, llm, config), ["a", "b"])
    tokens = telemetry.histograms(gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE)
    by_type = {p.attributes[gen_ai.GEN_AI_TOKEN_TYPE]: p for p in tokens}  # type: ignore[index]
    assert set(by_type) == {
        gen_ai.GenAiTokenTypeValues.INPUT.value,
        gen_ai.GenAiTokenTypeValues.OUTPUT.value,
    }
    assert by_type["input"].sum == report.usage.input_tokens
    assert by_type["output"].sum == report.usage.output_tokens
    assert by_type["input"].count == 2
    for point in tokens:
        assert point.attributes is not None
        assert point.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
        assert gen_ai.GEN_AI_PROVIDER_NAME in point.attributes
        assert point.attributes[gen_ai.GEN_AI_RESPONSE_MODEL] == llm.model
    durations = telemetry.histograms(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert sum(p.count for p in durations) == 2
    for point in durations:
        assert point.attributes is not None
        assert point.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
        assert gen_ai.GEN_AI_PROVIDER_NAME in point.attributes
        assert ERROR_TYPE not in point.attributes


def test_a_failed_call_has_error_type_on_span_and_duration(telemetry: Telemetry) -> None:
    config = telemetry.config("call-error")

    def process(item: str, ctx: Any) -> str:
        with call_span(config.tracing, provider="openai", model="gpt-4o"):
            raise TimeoutError("provider too slow")

    ResumableRun(config).run(process, ["a"])
    call = next(s for s in telemetry.spans() if s.name == "chat gpt-4o")
    assert call.attributes is not None
    assert call.attributes[ERROR_TYPE] == "TimeoutError"
    assert call.status.status_code is StatusCode.ERROR
    (point,) = telemetry.histograms(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert point.attributes is not None
    assert point.attributes[ERROR_TYPE] == "TimeoutError"
    assert point.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"


def test_call_span_without_tracing_does_nothing() -> None:
    with call_span(None, model="gpt-4o") as span:
        span.record(
            usage_from({"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        )


def test_scope_carries_the_package_version_and_schema(telemetry: Telemetry) -> None:
    ResumableRun(telemetry.config("scope-job")).run(lambda item, ctx: item, ["a"])
    for span in telemetry.spans():
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "agent_resume"
        assert span.instrumentation_scope.version == agent_resume.__version__
        assert (
            span.instrumentation_scope.schema_url
            == f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
        )
    assert f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}" in {s.value for s in Schemas}


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-2024-08-06", gen_ai.GenAiProviderNameValues.OPENAI.value),
        ("claude-sonnet-4-5", gen_ai.GenAiProviderNameValues.ANTHROPIC.value),
        ("gemini-2.5-pro", gen_ai.GenAiProviderNameValues.GCP_GEMINI.value),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            gen_ai.GenAiProviderNameValues.AWS_BEDROCK.value,
        ),
        (
            "publishers/google/models/gemini-2.5-pro",
            gen_ai.GenAiProviderNameValues.GCP_VERTEX_AI.value,
        ),
        ("grok-4", gen_ai.GenAiProviderNameValues.X_AI.value),
        ("house-model", "_OTHER"),
        (None, "_OTHER"),
    ],
)
def test_provider_names_are_the_conventions_values(model: str | None, provider: str) -> None:
    assert provider_name(model) == provider


def test_an_instrumented_config_says_so_in_its_repr(telemetry: Telemetry) -> None:
    assert "tracing=<with_otel tracing of job 'repr-job'>" in repr(telemetry.config("repr-job"))


def test_an_exception_out_of_the_run_sets_error_type_on_the_run_span(telemetry: Telemetry) -> None:
    def process(item: str, ctx: Any) -> str:
        raise KeyError(item)

    with pytest.raises(KeyError):
        ResumableRun(telemetry.config("fail-job", fail_fast=True)).run(process, ["a", "b"])
    run = next(s for s in telemetry.spans() if s.name == "invoke_workflow fail-job")
    assert run.attributes is not None
    assert run.attributes[ERROR_TYPE] == "KeyError"
    assert run.attributes["agent_resume.items_failed"] == 1
    assert run.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ctx_call_opens_one_call_span_per_try_under_the_item(
    telemetry: Telemetry, mode: str
) -> None:
    import openai

    from agent_resume import Retry
    from llm_server import LLMServer, Reply

    with LLMServer() as server:
        # The first try of item "b" gets a 500 (retried), then the answer.
        server.queue(Reply(), Reply(status=500, error_body={"error": {"message": "boom"}}))
        config = telemetry.config(
            f"calls-{mode}", retry=Retry(attempts=3, initial=0.001, maximum=0.002)
        )
        messages = [{"role": "user", "content": "hi"}]
        if mode == "sync":
            client: Any = openai.OpenAI(base_url=server.openai_url, api_key="t", max_retries=0)

            def process(item: str, ctx: Any) -> str:
                r = ctx.call(client.chat.completions.create, model="gpt-4o-mini", messages=messages)
                return str(r.choices[0].message.content)

            ResumableRun(config).run(process, ["a", "b"])
            client.close()
        else:
            client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="t", max_retries=0)

            async def aprocess(item: str, ctx: Any) -> str:
                r = await ctx.acall(
                    client.chat.completions.create, model="gpt-4o-mini", messages=messages
                )
                return str(r.choices[0].message.content)

            async def main() -> None:
                await ResumableRun(config).arun(aprocess, ["a", "b"])
                await client.close()

            asyncio.run(main())
    spans = telemetry.spans()
    items = {s.context.span_id: s for s in spans if s.name == "agent_resume.item"}
    calls = [s for s in spans if s.name == "chat gpt-4o-mini"]
    assert len(calls) == 3  # a, b's failed try, b's retry
    assert all(c.parent is not None and c.parent.span_id in items for c in calls)
    failed = [c for c in calls if c.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and (failed[0].attributes or {}).get(ERROR_TYPE)
    ok = [c for c in calls if c.status.status_code != StatusCode.ERROR]
    for call in ok:
        attrs = call.attributes or {}
        assert attrs[gen_ai.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert attrs[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 120
        assert attrs[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 40
        assert attrs[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
