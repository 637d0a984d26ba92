"""usage_dict: the flat fast path accepts exactly what the full JSON check accepts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent_resume import Usage
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._records import usage_dict


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"a": ""},
        {"in": 10, "out": 2, "calls": 1, "cost": 0.5, "model": "gpt-4o", "a": "tok"},
        {"in": True},  # not flat (a bool): the full check, which accepts it
        {"nested": {"x": [1, 2]}},
        {"model": "modèle"},  # non-ASCII text: the full check
    ],
)
def test_usage_dict_keeps_what_encodes(data: dict[str, Any]) -> None:
    out = usage_dict(data)
    assert out == data and out is not data


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_usage_dict_still_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(ArgumentValueError, match="usage"):
        usage_dict({"in": 1, "cost": bad})


def test_usage_dict_still_refuses_a_lone_surrogate_and_objects() -> None:
    with pytest.raises(ArgumentValueError, match="lone surrogate"):
        usage_dict({"model": "\ud800"})
    with pytest.raises(ArgumentTypeError, match="usage"):
        usage_dict({"model": object()})
    with pytest.raises(ArgumentTypeError, match="usage"):
        usage_dict(42)


def test_usage_dict_of_a_usage() -> None:
    assert usage_dict(Usage(input_tokens=3, calls=1, cost_usd=0.25)) == {
        "in": 3,
        "calls": 1,
        "cost": 0.25,
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"turns": 3, "seconds": 0.125, "stop": "max_turns", "usage": {"in": 1, "a": ""}},
        {"seconds": 1e-07, "big": 10**30, "text": 'é "q" \\ \n', "neg": -0.0},
        {"attempt": 2, "fp": "abc", "flag": True, "none": None},
        {"turns": 1, "usage": {"in": 5, "cost": 0.00123, "model": "gpt-é\n\u2028", "a": "t"}},
        {"usage": {"nested": {"list": [1, 2.5, "x"], "none": None}}},
    ],
)
def test_completion_line_writes_plain_values_as_json_does(extra: dict[str, Any]) -> None:
    import json

    from agent_resume._records import completion_line

    line = completion_line("x", 5, extra, None)
    expected = json.dumps({"id": "x", "ts": 5, **extra}, ensure_ascii=False) + "\n"
    assert line == expected and json.loads(line) == {"id": "x", "ts": 5, **extra}


def test_completion_line_still_refuses_a_non_finite_float() -> None:
    from agent_resume._records import completion_line

    with pytest.raises(ValueError, match="not JSON compliant"):
        completion_line("x", 5, {"seconds": math.nan}, None)
