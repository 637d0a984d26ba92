"""The one schema of every JSON report: runs, items, ``report`` and ``status``.

``RunReport.to_dict()`` (and so the run record in the store and ``run
--json``), ``agent-resume status --json`` and ``agent-resume report --format
json`` all follow :data:`SCHEMA`, a JSON Schema (draft 2020-12) document, at
version :data:`SCHEMA_VERSION`:

- times are ISO-8601 in UTC with a ``Z`` (:func:`timestamp_json`);
- durations are seconds, as numbers, in fields ending in ``_seconds``;
- token counts are ``input_tokens``, ``output_tokens``, ...; money is
  ``cost_usd``, rounded to 10 significant digits;
- what is not known is ``null``, never a missing key.

:func:`check` validates a document against a part of the schema without any
third-party package (``jsonschema`` gives the same answers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from agent_resume._accounting._usage import Usage
from agent_resume._render import round_cost

__all__ = [
    "ITEM_STATUSES",
    "RUN_STOP_REASONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "USAGE_FIELDS",
    "check",
    "known_cost",
    "seconds_json",
    "timestamp_json",
    "usage_json",
]

SCHEMA_VERSION = 1
"""The version of :data:`SCHEMA`; a change that renames or removes a field bumps it."""

USAGE_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
)
"""The fields of a usage object, in order (also the usage columns of ``report``)."""

RUN_STOP_REASONS = (
    "completed",
    "time_budget",
    "cost_budget",
    "token_budget",
    "item_budget",
    "signal",
    "fail_fast",
    "failures",
    "error",
    "killed",
)
"""Why a run stopped; ``killed`` is a run with a start record and no end (``status``)."""

ITEM_STATUSES = ("done", "failed", "quarantined", "interrupted")
"""An item's status in ``report``: ``interrupted`` has calls recorded and no outcome."""


def timestamp_json(ts: float | None) -> str | None:
    """POSIX seconds as ISO-8601 UTC with a ``Z``, to the millisecond; ``None`` stays ``None``."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    if not math.isfinite(ts):
        return None
    try:
        moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def seconds_json(value: float | None) -> float | None:
    """A duration in seconds for JSON: rounded to the microsecond, ``None`` when unknown."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return round(float(value), 6)


def known_cost(usage: Usage) -> float | None:
    """A usage's cost: ``None`` when unknown, and 0 when nothing was spent.

    An item (or a job) that made no call, used no token and ran no search
    cost nothing: a known $0, not an unknown cost, whatever its records
    carried (a failure with no usage has none to price).
    """
    cost = usage.cost_usd
    if cost is None and not (
        usage.calls or usage.input_tokens or usage.output_tokens or usage.web_search_requests
    ):
        return 0.0
    return cost


def usage_json(usage: Usage) -> dict[str, Any]:
    """A usage as the schema's usage object (:data:`USAGE_FIELDS`); see :func:`known_cost`."""
    return {
        "calls": usage.calls,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_usd": round_cost(known_cost(usage)),
    }


_TIMESTAMP = {
    "type": "string",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$",
}
_COUNT = {"type": "integer", "minimum": 0}
_USAGE_PROPERTIES: dict[str, Any] = {
    **{name: {"$ref": "#/$defs/count"} for name in USAGE_FIELDS[:-1]},
    "cost_usd": {"$ref": "#/$defs/cost"},
}


_RUN_COUNTERS = ("interrupted", "retried", "call_retries", "rate_limited", "calls_in_flight")


def _nullable(ref: str) -> dict[str, Any]:
    return {"anyOf": [{"$ref": f"#/$defs/{ref}"}, {"type": "null"}]}


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://agent-resume.dev/schema/report/{SCHEMA_VERSION}",
    "title": "agent-resume reports",
    "$defs": {
        "timestamp": _TIMESTAMP,
        "count": _COUNT,
        "seconds": {"type": "number", "minimum": 0},
        "cost": {"type": ["number", "null"], "minimum": 0},
        "version": {"const": SCHEMA_VERSION},
        "usage": {
            "type": "object",
            "required": list(USAGE_FIELDS),
            "properties": _USAGE_PROPERTIES,
            "additionalProperties": False,
        },
        "run": {
            "type": "object",
            "required": [
                "job_id",
                "started_at",
                "ended_at",
                "duration_seconds",
                "stop_reason",
                "stop_message",
                "done",
                "already_done",
                "failed",
                "quarantined",
                "remaining",
                "abandoned",
                *_RUN_COUNTERS,
                "usage",
            ],
            "properties": {
                "schema_version": {"$ref": "#/$defs/version"},
                "job_id": {"type": ["string", "null"]},
                "started_at": _nullable("timestamp"),
                "ended_at": _nullable("timestamp"),
                "duration_seconds": _nullable("seconds"),
                "stop_reason": {"enum": list(RUN_STOP_REASONS)},
                "stop_message": {"type": "string"},
                "done": _nullable("count"),
                "already_done": _nullable("count"),
                "failed": _nullable("count"),
                "quarantined": _nullable("count"),
                "remaining": _nullable("count"),
                "abandoned": _nullable("count"),
                **{name: _nullable("count") for name in _RUN_COUNTERS},
                "usage": {"$ref": "#/$defs/usage"},
            },
            "additionalProperties": False,
        },
        "item": {
            "type": "object",
            "required": [
                "item_id",
                "status",
                "attempts",
                "stop_reason",
                "turns",
                "duration_seconds",
                *USAGE_FIELDS,
            ],
            "properties": {
                "item_id": {"type": "string"},
                "status": {"enum": list(ITEM_STATUSES)},
                "attempts": {"$ref": "#/$defs/count"},
                "stop_reason": {"type": ["string", "null"]},
                "turns": _nullable("count"),
                "duration_seconds": _nullable("seconds"),
                **_USAGE_PROPERTIES,
            },
            "additionalProperties": False,
        },
        "total": {
            "type": "object",
            "required": ["items", *USAGE_FIELDS],
            "properties": {"items": {"$ref": "#/$defs/count"}, **_USAGE_PROPERTIES},
            "additionalProperties": False,
        },
        "run_document": {
            "allOf": [{"$ref": "#/$defs/run"}],
            "required": ["schema_version"],
        },
        "report_document": {
            "type": "object",
            "required": ["schema_version", "job_id", "items", "by_model"],
            "properties": {
                "schema_version": {"$ref": "#/$defs/version"},
                "job_id": {"type": ["string", "null"]},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
                "total": {"$ref": "#/$defs/total"},
                "by_model": {"type": "object", "additionalProperties": {"$ref": "#/$defs/usage"}},
            },
            "additionalProperties": False,
        },
        "status_document": {
            "type": "object",
            "required": [
                "schema_version",
                "store",
                "job_id",
                "created_at",
                "done",
                "failed",
                "quarantined",
                "bad_lines",
                "torn_tail",
                "runs",
                "total",
                "quarantined_items",
                "last_runs",
            ],
            "properties": {
                "schema_version": {"$ref": "#/$defs/version"},
                "store": {"type": "string"},
                "job_id": {"type": ["string", "null"]},
                "created_at": _nullable("timestamp"),
                "done": {"$ref": "#/$defs/count"},
                "failed": {"$ref": "#/$defs/count"},
                "quarantined": {"$ref": "#/$defs/count"},
                "bad_lines": {"$ref": "#/$defs/count"},
                "torn_tail": {"type": "boolean"},
                "runs": {"$ref": "#/$defs/count"},
                "total": {"$ref": "#/$defs/usage"},
                "total_is_lower_bound": {"type": "boolean"},
                "quarantined_items": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["attempts", "error"],
                        "properties": {
                            "attempts": {"$ref": "#/$defs/count"},
                            "error": {"type": ["string", "null"]},
                        },
                        "additionalProperties": False,
                    },
                },
                "last_runs": {"type": "array", "items": {"$ref": "#/$defs/run"}},
                "input": {
                    "type": "object",
                    "required": ["new", "changed", "vanished", "to_do"],
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "additionalProperties": False,
        },
    },
}
"""Every JSON report's definition; each document's schema is one of its ``$defs``."""


def check(instance: Any, definition: str) -> list[str]:
    """Validate a document against ``SCHEMA["$defs"][definition]``.

    Supports the parts of JSON Schema that :data:`SCHEMA` uses (``type``,
    ``enum``, ``const``, ``pattern``, ``minimum``, ``properties``,
    ``required``, ``additionalProperties``, ``items``, ``anyOf``, ``allOf``
    and local ``$ref``).

    Args:
        instance: The decoded JSON document.
        definition: ``"run_document"``, ``"report_document"``,
            ``"status_document"`` or any other name under ``$defs``.

    Returns:
        The problems found, each naming its place in the document; empty when
        the document is valid.
    """
    problems: list[str] = []
    _check(instance, {"$ref": f"#/$defs/{definition}"}, "$", problems)
    return problems


_TYPES: dict[str, Any] = {
    "object": Mapping,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _check(value: Any, schema: Mapping[str, Any], where: str, problems: list[str]) -> None:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        _check(value, SCHEMA["$defs"][name], where, problems)
    for part in schema.get("allOf", ()):
        _check(value, part, where, problems)
    if "anyOf" in schema:
        tries = []
        for part in schema["anyOf"]:
            found: list[str] = []
            _check(value, part, where, found)
            tries.append(found)
        if all(tries):
            problems.append(f"{where}: matches none of {len(tries)} forms ({tries[0][0]})")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            problems.append(f"{where}: {value!r:.60} is not {' or '.join(kinds)}")
            return
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r:.60} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problems.append(f"{where}: {value!r:.60} does not match {schema['pattern']}")
    if "minimum" in schema and _is(value, "number") and value < schema["minimum"]:
        problems.append(f"{where}: {value!r} is below {schema['minimum']}")
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                problems.append(f"{where}: no {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], f"{where}.{key}", problems)
            elif extra is False:
                problems.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, Mapping):
                _check(item, extra, f"{where}.{key}", problems)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{index}]", problems)
