"""Error classification, provider waits and the Retry policy, with the real SDKs' exception classes."""

from __future__ import annotations

import email.utils
import random
from datetime import timedelta

import anthropic
import httpx
import openai
import pytest
import requests

from agent_resume import ArgumentTypeError, ArgumentValueError, Deadline, DeadlineExceeded, Retry
from agent_resume._retry import (
    classify_error,
    error_headers,
    job_wide_error,
    parse_duration,
    provider_wait,
)

_REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def _openai_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx.Response(status, headers=headers or {}, request=_REQUEST, json={"error": {}})
    client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    error = client._make_status_error_from_response(response)
    client.close()
    return error


def _anthropic_error(status: int) -> anthropic.APIStatusError:
    response = httpx.Response(status, request=_REQUEST, json={"type": "error", "error": {}})
    client = anthropic.Anthropic(api_key="test", base_url="http://127.0.0.1:9")
    error = client._make_status_error_from_response(response)
    client.close()
    return error


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 529, 599])
def test_transient_statuses_of_both_sdks(status: int) -> None:
    assert classify_error(_openai_error(status)) == "transient"
    assert classify_error(_anthropic_error(status)) == "transient"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    assert classify_error(_openai_error(status)) == "permanent"
    assert classify_error(_anthropic_error(status)) == "permanent"


def test_connection_errors_and_timeouts_are_transient() -> None:
    errors: list[BaseException] = [
        openai.APIConnectionError(request=_REQUEST),
        openai.APITimeoutError(request=_REQUEST),
        anthropic.APIConnectionError(request=_REQUEST),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("closed"),
        requests.ConnectionError("refused"),
        requests.Timeout("slow"),
        ConnectionResetError(104, "reset"),
        TimeoutError("slow"),
    ]
    assert [classify_error(e) for e in errors] == ["transient"] * len(errors)


def test_status_of_httpx_and_requests_errors_is_read_from_the_response() -> None:
    response = httpx.Response(503, request=_REQUEST)
    error = httpx.HTTPStatusError("bad", request=_REQUEST, response=response)
    assert classify_error(error) == "transient"
    raw = requests.Response()
    raw.status_code = 401
    assert classify_error(requests.HTTPError("no", response=raw)) == "permanent"


def test_google_genai_errors_by_code() -> None:
    from google.genai import errors

    assert classify_error(errors.ServerError(503, {"error": {"message": "busy"}})) == "transient"
    assert classify_error(errors.ClientError(429, {"error": {"message": "slow"}})) == "transient"
    assert classify_error(errors.ClientError(400, {"error": {"message": "bad"}})) == "permanent"


def _not_found(sdk: str, body: dict[str, object]) -> BaseException:
    response = httpx.Response(404, request=_REQUEST, json=body)
    client: openai.OpenAI | anthropic.Anthropic
    if sdk == "openai":
        client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    else:
        client = anthropic.Anthropic(api_key="test", base_url="http://127.0.0.1:9")
    error = client._make_status_error_from_response(response)
    client.close()
    return error


def test_errors_that_fail_every_item_alike_are_told_from_an_items_own() -> None:
    from google.genai import errors

    refused = "access_refused"
    assert job_wide_error(_openai_error(401)) == (refused, "AuthenticationError (HTTP 401)")
    assert job_wide_error(_openai_error(403)) == (refused, "PermissionDeniedError (HTTP 403)")
    assert job_wide_error(_anthropic_error(401)) == (refused, "AuthenticationError (HTTP 401)")
    assert job_wide_error(_anthropic_error(403)) == (refused, "PermissionDeniedError (HTTP 403)")
    denied = errors.ClientError(403, {"error": {"message": "denied"}})
    assert job_wide_error(denied) == (refused, "ClientError (HTTP 403)")
    wrapped = RuntimeError("the agent failed")
    wrapped.__cause__ = _openai_error(401)  # raise ... from
    assert job_wide_error(wrapped) == (refused, "AuthenticationError (HTTP 401)")
    fallback = ValueError("the fallback provider refused this item's text")
    fallback.__context__ = _openai_error(401)  # raised while handling the refusal
    assert job_wide_error(fallback) is None
    assert classify_error(fallback) == "permanent"  # retries still judge by the context
    missing = "model_not_found"
    openai_model = {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}}
    anthropic_model = {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}
    gemini_model = {"error": {"code": 404, "message": "models/x is not found for API version v1"}}
    assert job_wide_error(_not_found("openai", openai_model)) == (
        missing,
        "NotFoundError (HTTP 404)",
    )
    assert job_wide_error(_not_found("anthropic", anthropic_model)) == (
        missing,
        "NotFoundError (HTTP 404)",
    )
    assert job_wide_error(errors.ClientError(404, gemini_model)) == (
        missing,
        "ClientError (HTTP 404)",
    )
    raw = requests.Response()
    raw.status_code = 403
    not_ours: list[BaseException] = [
        _openai_error(400),
        _openai_error(404),  # a file or a batch not found: that item's
        _not_found("openai", {"error": {"message": "No such file", "code": "not_found"}}),
        _not_found("anthropic", {"type": "error", "error": {"message": "file: f-1"}}),
        _openai_error(429),
        errors.ClientError(400, {"error": {"message": "bad"}}),
        errors.ClientError(404, {"error": {"message": "files/abc is not found"}}),
        requests.HTTPError("a page refused", response=raw),  # an item's fetch, not the provider
        httpx.HTTPStatusError(
            "no", request=_REQUEST, response=httpx.Response(401, request=_REQUEST)
        ),
        PermissionError(13, "denied"),
        ValueError("bug"),
    ]
    assert [job_wide_error(e) for e in not_ours] == [None] * len(not_ours)


def test_plain_errors_are_unknown_unless_raised_from_a_provider_error() -> None:
    assert classify_error(ValueError("bug")) == "unknown"
    outer = RuntimeError("wrapped")
    outer.__cause__ = _openai_error(503)
    assert classify_error(outer) == "transient"


def test_our_deadline_is_never_retried() -> None:
    error = DeadlineExceeded(Deadline.from_now(0), 1.0)
    assert classify_error(error) == "permanent"
    assert not Retry().retryable(error)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("7us", 7e-6),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1s junk", "-1", "nan", "inf"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    assert parse_duration(text) is None


def test_provider_wait_reads_every_header_form() -> None:
    now = 1_800_000_000.0
    assert provider_wait({"retry-after-ms": "250"}, now) == 0.25
    assert provider_wait({"retry-after": "3"}, now) == 3.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert provider_wait({"retry-after": date}, now) == pytest.approx(7.0)
    headers = {
        "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-remaining-tokens": "100",
    }
    assert provider_wait(headers, now) == pytest.approx(0.02)  # the exhausted one
    del headers["x-ratelimit-remaining-requests"]
    assert provider_wait(headers, now) == 360.0  # else the longer
    assert provider_wait({"retry-after": "soon"}, now) is None
    assert provider_wait({}, now) is None


def test_headers_are_read_from_a_real_sdk_error() -> None:
    error = _openai_error(429, {"Retry-After": "2", "X-RateLimit-Limit-Requests": "600"})
    headers = error_headers(error)
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert error_headers(ValueError()) == {}


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = Retry(attempts=6, initial=0.5, maximum=4.0)
    rng = random.Random(7)
    for tries, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [policy.backoff(tries, rng) for _ in range(200)]
        assert all(0.0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8  # spread over the whole range, not pinned
        assert min(waits) < cap * 0.2


def test_predicates_override_the_classification() -> None:
    policy = Retry(
        retry_on=lambda e: isinstance(e, KeyError), give_up_on=lambda e: "fatal" in str(e)
    )
    assert policy.retryable(KeyError("x"))
    assert not policy.retryable(ValueError("x"))
    assert policy.retryable(_openai_error(503))
    assert not policy.retryable(TimeoutError("fatal"))


def test_retry_validates_and_reads_like_its_constructor() -> None:
    assert repr(Retry(attempts=2, initial=timedelta(seconds=1), maximum=2)) == (
        "Retry(attempts=2, initial=1.0, maximum=2.0)"
    )
    with pytest.raises(ArgumentValueError, match="`attempts` must be at least 1 \\(got 0\\)"):
        Retry(attempts=0)
    with pytest.raises(ArgumentTypeError, match="`attempts` must be an int"):
        Retry(attempts=True)
    with pytest.raises(ArgumentValueError, match="`maximum` must be at least `initial`"):
        Retry(initial=5, maximum=1)
    with pytest.raises(ArgumentValueError, match="`initial`"):
        Retry(initial=-1)
    with pytest.raises(ArgumentTypeError, match="`retry_on` must be callable"):
        Retry(retry_on=3)  # type: ignore[arg-type]
