"""Optional OpenTelemetry traces (`SLUICE_TRACING=otlp|console`; off by default).

A request's or a run's stages are timed already (the response's `timings_ms`, the report's
`stage_seconds`); a trace is made from those timings after the fact, one span per stage under
one span per call, so the search path carries no tracing code and costs nothing with tracing
off. The exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers).
Needs the `tracing` extra: `pip install 'sluice-rag[tracing]'`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

_provider: Any = None


def configure_tracing(mode: str, service: str = "sluice") -> bool:
    """Installs a tracer provider exporting to `mode` (otlp, console); once per process."""
    global _provider
    if mode == "off" or _provider is not None:
        return _provider is not None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as error:
        raise RuntimeError(
            "SLUICE_TRACING needs the tracing extra: pip install 'sluice-rag[tracing]'"
        ) from error
    exporter: SpanExporter
    if mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def record_stages(
    name: str,
    started_ns: int,
    stages_s: Mapping[str, float],
    attributes: Mapping[str, Any],
    ended_ns: int | None = None,
    sequential: bool = True,
) -> None:
    """One span `name` from `started_ns` to `ended_ns` (default: now) with a child span per
    stage: laid end to end in the order given where the stages ran one after another, else
    (`sequential` false: a run parses beside embedding) each from the start, as long as the
    stage's total time."""
    if _provider is None:
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("sluice")
    ended_ns = ended_ns or time.time_ns()
    parent = tracer.start_span(
        name,
        start_time=started_ns,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    context = trace.set_span_in_context(parent)
    cursor = started_ns
    for stage, seconds in stages_s.items():
        end = min(cursor + int(seconds * 1e9), ended_ns)
        tracer.start_span(stage, context=context, start_time=cursor).end(end_time=end)
        cursor = end if sequential else started_ns
    parent.end(end_time=ended_ns)


def flush_tracing() -> None:
    """Exports what is buffered (a CLI command ends right after its run)."""
    if _provider is not None:
        _provider.force_flush()
