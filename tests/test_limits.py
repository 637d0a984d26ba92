"""RateLimit, the token buckets, token estimates and header adoption (a mock clock, no sleeping)."""

from __future__ import annotations

import threading

import pytest

from agent_resume import ArgumentTypeError, ArgumentValueError, RateLimit
from agent_resume._deadline import MockClock
from agent_resume._limits import HEADROOM, Cost, Limiter, LocalBuckets, estimate_cost


def _starts(limiter: Limiter, clock: MockClock, costs: list[Cost]) -> list[float]:
    """When each call may start, calls reserved back to back at time 0."""
    return [clock() + limiter.reserve(cost) for cost in costs]


def test_requests_are_spread_evenly_never_a_burst() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(requests_per_minute=600), 8, clock)
    starts = _starts(limiter, clock, [Cost()] * 50)
    gap = 60.0 / (600 * HEADROOM)
    assert starts[0] == 0.0
    assert starts == pytest.approx([i * gap for i in range(50)])
    # Any one-second window holds at most the per-second share of the limit.
    assert sum(1 for s in starts if s < 1.0) <= 10


def test_a_minute_of_calls_stays_under_the_limit_in_every_sliding_window() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(requests_per_minute=120, tokens_per_minute=12_000), 4, clock)
    starts = _starts(limiter, clock, [Cost(1, 150, 100, 50)] * 400)
    for first in range(len(starts)):
        window = [s for s in starts[first:] if s < starts[first] + 60.0]
        assert len(window) <= 120
        assert 150 * len(window) <= 12_000


def test_the_tightest_bucket_decides() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(requests_per_minute=6000, tokens_per_minute=6000), 4, clock)
    starts = _starts(limiter, clock, [Cost(1, 1000, 1000, 0)] * 3)
    gap = 1000 / (6000 * HEADROOM / 60)
    assert starts == pytest.approx([0.0, gap, 2 * gap])


def test_settle_corrects_an_estimate_with_the_real_usage() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(tokens_per_minute=6000), 4, clock)
    estimated = Cost(1, 1000, 1000, 0)
    limiter.reserve(estimated)
    limiter.settle(estimated, Cost(1, 100, 80, 20))  # it took far less
    # The next call may start after 100 tokens' worth of time, not 1000.
    assert limiter.reserve(Cost(1, 10, 10, 0)) == pytest.approx(100 / (6000 * HEADROOM / 60))


def test_a_failed_call_gives_its_tokens_back() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(tokens_per_minute=6000), 4, clock)
    estimated = Cost(1, 1000, 1000, 0)
    limiter.reserve(estimated)
    limiter.settle(estimated, None)
    assert limiter.reserve(Cost(1, 10, 10, 0)) == 0.0


def test_a_429_pauses_everyone_and_halves_the_calls_in_flight() -> None:
    clock = MockClock()
    limiter = Limiter(None, 8, clock)
    assert limiter.reserve(Cost()) == 0.0  # no limits known: no wait
    limiter.pause(2.5)
    assert limiter.reserve(Cost()) == 2.5
    assert limiter.allowed == 4
    assert [limiter.try_enter() for _ in range(5)] == [True] * 4 + [False]
    limiter.pause(0)
    assert limiter.allowed == 4  # the 429s of one burst halve it once
    clock.advance(1.0)
    limiter.pause(0)
    assert limiter.allowed == 2
    for _ in range(4):
        limiter.leave()
    # Quiet periods let it double back, up to the run's concurrency.
    clock.advance(4.0)
    limiter.settle(Cost(), Cost(1, 10, 5, 5))
    assert limiter.allowed == 2  # not quiet long enough yet
    for expected in (4, 8, 8):
        clock.advance(5.0)
        limiter.settle(Cost(), Cost(1, 10, 5, 5))
        assert limiter.allowed == expected


def test_limits_are_adopted_from_headers_only_when_not_configured() -> None:
    clock = MockClock()
    limiter = Limiter(RateLimit(requests_per_minute=60), 4, clock)
    limiter.adopt(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-limit-tokens": "30000",
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-input-tokens-limit": "junk",
        }
    )
    assert limiter.rates == {"requests": 60.0, "tokens": 30000.0, "output_tokens": 8000.0}


def test_estimates_read_messages_inputs_and_output_maximums() -> None:
    messages = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 40}]
    cost = estimate_cost({"model": "m", "messages": messages, "max_tokens": 200})
    assert cost.input_tokens == 110 + 8
    assert cost.output_tokens == 200
    assert cost.tokens == 318
    parts = [{"role": "user", "content": [{"type": "text", "text": "z" * 80}]}]
    assert estimate_cost({"messages": parts, "max_completion_tokens": 5}).input_tokens == 24
    gemini = estimate_cost({"contents": "w" * 8, "config": {"max_output_tokens": 9}})
    assert (gemini.input_tokens, gemini.output_tokens) == (2, 9)
    assert estimate_cost({"input": "v" * 4}, usual_output=30).output_tokens == 30


def test_the_limiter_learns_the_usual_output_when_no_maximum_is_given() -> None:
    limiter = Limiter(None, 1, MockClock())
    for out in (100, 300):
        limiter.settle(Cost(), Cost(1, out, 0, out))
    assert limiter.estimate({"messages": []}).output_tokens == 200


def test_local_buckets_are_thread_safe() -> None:
    clock = MockClock()
    buckets = LocalBuckets(clock)
    starts: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            wait = buckets.reserve([("requests", 10.0, 1.0)])
            with lock:
                starts.append(wait)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(starts) == pytest.approx([i / 10 for i in range(800)])


def test_rate_limit_validates_and_reads_like_its_constructor() -> None:
    limit = RateLimit(requests_per_minute=500, tokens_per_minute=200_000, shared=True)
    assert repr(limit) == (
        "RateLimit(requests_per_minute=500.0, tokens_per_minute=200000.0, shared=True)"
    )
    assert limit.per_minute() == {"requests": 500.0, "tokens": 200000.0}
    with pytest.raises(
        ArgumentValueError,
        match="`requests_per_minute` must be finite and greater than 0 \\(got 0\\)",
    ):
        RateLimit(requests_per_minute=0)
    with pytest.raises(ArgumentTypeError, match="`tokens_per_minute` must be a number"):
        RateLimit(tokens_per_minute="1000")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="`shared` must be a bool"):
        RateLimit(shared=1)  # type: ignore[arg-type]
