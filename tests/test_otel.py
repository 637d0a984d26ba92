"""OpenTelemetry hooks, read back through the real OpenTelemetry SDK's in-memory exporters."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent_resume import InMemoryStore, MissingExtraError, ResumableRun, RunConfig
from agent_resume._run._otel import with_otel

try:
    from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
except ImportError:  # pragma: no cover - the test extra installs it
    ERROR_TYPE = "error.type"
from agent_resume.testing import SimulatedLLM


@pytest.fixture
def telemetry() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


def sums(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, object], ...]], float]:
    data = reader.get_metrics_data()
    out: dict[tuple[str, tuple[tuple[str, object], ...]], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if not hasattr(point, "value"):
                        continue  # a histogram: see test_otel_genai.py
                    key = tuple(
                        sorted(
                            (k, v)
                            for k, v in point.attributes.items()
                            if k != "agent_resume.job_id"
                        )
                    )
                    out[(metric.name, key)] = point.value
    return out


def test_every_item_is_a_span_and_the_counters_add_up(telemetry) -> None:  # type: ignore[no-untyped-def]
    tracer_provider, exporter, meter_provider, reader = telemetry
    llm = SimulatedLLM(seed=3)
    seen: list[str] = []

    def process(item: str, ctx) -> str:  # type: ignore[no-untyped-def]
        if item == "bad":
            raise ValueError("no good")
        ctx.record_usage(llm.complete([{"role": "user", "content": item}]))
        return item

    config = RunConfig(
        job_id="otel-job",
        store=InMemoryStore(),
        progress=False,
        prices=llm.prices,
        on_item_done=lambda outcome: seen.append(outcome.item_id),
    )
    instrumented = with_otel(config, tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert config.on_item_done is not instrumented.on_item_done  # the original is unchanged
    report = ResumableRun(instrumented).run(process, ["a", "b", "bad"])

    assert seen == ["a", "b", "bad"]  # the hook given in the config still runs
    spans = {
        s.attributes["agent_resume.item_id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "agent_resume.item"
    }
    assert set(spans) == {"a", "b", "bad"}
    assert spans["a"].name == "agent_resume.item"
    assert spans["a"].attributes["agent_resume.status"] == "done"
    assert spans["a"].attributes["agent_resume.job_id"] == "otel-job"
    assert spans["a"].end_time >= spans["a"].start_time
    assert spans["bad"].attributes["agent_resume.status"] == "failed"
    assert spans["bad"].status.status_code is StatusCode.ERROR
    assert "ValueError: no good" in (spans["bad"].status.description or "")
    assert [e.name for e in spans["bad"].events] == ["exception"]
    assert spans["bad"].attributes[ERROR_TYPE] == "ValueError"

    totals = sums(reader)
    assert totals[("agent_resume.items", (("agent_resume.status", "done"),))] == 2
    assert totals[("agent_resume.items", (("agent_resume.status", "failed"),))] == 1
    usage = report.usage
    assert (
        totals[("agent_resume.tokens", (("agent_resume.direction", "input"),))]
        == usage.input_tokens
    )
    assert (
        totals[("agent_resume.tokens", (("agent_resume.direction", "output"),))]
        == usage.output_tokens
    )
    assert usage.cost_usd is not None and usage.cost_usd > 0
    assert totals[("agent_resume.cost", ())] == pytest.approx(usage.cost_usd)
    assert spans["a"].attributes["agent_resume.cost_usd"] > 0


def test_an_early_stop_is_on_the_run_span_and_the_original_hook_runs(telemetry) -> None:  # type: ignore[no-untyped-def]
    tracer_provider, exporter, meter_provider, _ = telemetry
    stops: list[str] = []
    config = RunConfig(
        job_id="otel-stop",
        store=InMemoryStore(),
        progress=False,
        max_items=2,
        on_stop=lambda reason: stops.append(reason.name),
    )
    run = ResumableRun(
        with_otel(config, tracer_provider=tracer_provider, meter_provider=meter_provider)
    )
    report = run.run(lambda item, ctx: item, ["a", "b", "c", "d"])
    assert report.stop_reason == "item_budget"
    assert stops == ["max_items"]  # the stop condition that fired; the report names the budget
    runs = [s for s in exporter.get_finished_spans() if s.name == "invoke_workflow otel-stop"]
    assert len(runs) == 1
    assert runs[0].attributes["agent_resume.stop"] == stops[0]
    assert [e.name for e in runs[0].events] == ["agent_resume.stop"]


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtraError, match=r"agent-resume\[otel\]") as info:
        with_otel(RunConfig(job_id="x", store=InMemoryStore(), progress=False))
    assert info.value.extra == "otel"
