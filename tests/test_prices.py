from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pytest

from agent_resume._accounting._prices import (
    ModelPrice,
    PriceTable,
    UnknownModelWarning,
    default_prices,
)
from agent_resume._accounting._usage import Usage
from agent_resume._errors import ArgumentTypeError, ArgumentValueError


def call(model: str | None, **counts: int) -> Usage:
    return Usage(calls=1, model=model, **counts)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5.1", "gpt-5.1"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ],
)
def test_dated_snapshots_and_routes_match_their_family(model: str, family: str) -> None:
    table = PriceTable(genai_prices=False)
    price = table.lookup(model)
    assert price is not None
    assert price is table.lookup(family)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-audio-preview",
        "gpt-4",
        "claude-sonnet-4-7",
        "gemini-1.0-pro",
        "my-model",
        "o3-pro-x",
    ],
)
def test_other_variants_are_not_priced_as_a_family(model: str) -> None:
    assert PriceTable(genai_prices=False).lookup(model) is None


def test_builtin_entries_name_their_source_and_date() -> None:
    table = PriceTable(genai_prices=False)
    assert len(table.models) >= 25
    for model in table.models:
        price = table.lookup(model)
        assert price is not None
        assert price.source.startswith("https://"), model
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.date), model
        assert price.input > 0
        assert price.output > price.input, model
        if price.cache_read is not None:
            assert price.cache_read < price.input, model


def test_cost_bills_cached_tokens_once_at_their_own_price() -> None:
    price = ModelPrice(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    usage = call(
        None,
        input_tokens=10_000,
        cache_read_tokens=6_000,
        cache_write_tokens=1_000,
        output_tokens=500,
    )
    expected = (3_000 * 3.0 + 6_000 * 0.3 + 1_000 * 3.75 + 500 * 15.0) / 1e6
    assert price.cost(usage) == pytest.approx(expected)


def test_reasoning_tokens_are_not_billed_twice() -> None:
    price = ModelPrice(input=1.0, output=4.0)
    with_reasoning = call(None, input_tokens=10, output_tokens=100, reasoning_tokens=80)
    without = call(None, input_tokens=10, output_tokens=100)
    assert price.cost(with_reasoning) == price.cost(without) == pytest.approx(410 / 1e6)


def test_missing_cache_prices_fall_back_to_the_input_price() -> None:
    price = ModelPrice(input=2.0, output=8.0)
    usage = call(None, input_tokens=1_000, cache_read_tokens=400, cache_write_tokens=100)
    assert price.cost(usage) == pytest.approx(1_000 * 2.0 / 1e6)


def test_cache_counts_above_the_input_are_not_billed_negative() -> None:
    price = ModelPrice(input=2.0, output=8.0, cache_read=1.0)
    usage = call(None, input_tokens=10, cache_read_tokens=50)
    assert price.cost(usage) == pytest.approx(50 * 1.0 / 1e6)


def test_own_prices_win_over_the_builtin_table() -> None:
    table = PriceTable({"gpt-4o": {"input": 1.0, "output": 1.0, "source": "contract"}})
    price = table.lookup("gpt-4o-2024-08-06")
    assert price == ModelPrice(input=1.0, output=1.0, source="contract")
    # The family next door keeps its built-in price.
    mini = table.lookup("gpt-4o-mini")
    assert mini is not None
    assert mini.input == pytest.approx(0.15)
    usage = table.price(call("gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000))
    assert usage.cost_usd == pytest.approx(2.0)


def test_with_prices_returns_a_new_table() -> None:
    base = PriceTable({"a-model": {"input": 1, "output": 2}}, genai_prices=False)
    more = base.with_prices({"b-model": ModelPrice(input=3, output=4)})
    assert base.lookup("b-model") is None
    assert more.lookup("a-model") == ModelPrice(input=1.0, output=2.0)
    assert more.lookup("b-model") == ModelPrice(input=3.0, output=4.0)
    assert "a-model" in more.models


def test_builtin_can_be_left_out() -> None:
    table = PriceTable({"x": {"input": 1, "output": 1}}, builtin=False, genai_prices=False)
    assert table.models == ["x"]
    assert table.lookup("gpt-4o") is None
    assert repr(table) == "PriceTable(<1 own prices>, builtin=False, genai_prices=False)"


@pytest.mark.parametrize(
    ("prices", "error", "match"),
    [
        ({"m": {"input": 1, "output": 2, "cached_input": 0.5}}, ArgumentValueError, "cached_input"),
        ({"m": {"input": 1}}, ArgumentValueError, "output"),
        ({"m": {"input": -1, "output": 2}}, ArgumentValueError, "input"),
        ({"m": {"input": "1", "output": 2}}, ArgumentTypeError, "input"),
        ({"m": 3.0}, ArgumentTypeError, "mapping"),
        ({"": {"input": 1, "output": 1}}, ArgumentValueError, "model names"),
        ([("m", {"input": 1})], ArgumentTypeError, "mapping"),
    ],
)
def test_bad_prices_are_refused(prices: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        PriceTable(prices)  # type: ignore[arg-type]


def test_prices_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"house-model": {"input": 0.5, "output": 1.5, "cache_read": 0.05}}))
    table = PriceTable.from_file(path, genai_prices=False)
    usage = table.price(call("house-model-2025-06-01", input_tokens=2_000, cache_read_tokens=1_000))
    assert usage.cost_usd == pytest.approx((1_000 * 0.5 + 1_000 * 0.05) / 1e6)


def test_prices_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '["gpt-4.1"]\ninput = 1.0\noutput = 4.0\nsource = "our contract"\ndate = "2026-01-01"\n'
    )
    table = PriceTable.from_file(path)
    assert table.lookup("gpt-4.1-2025-04-14") == ModelPrice(
        input=1.0, output=4.0, source="our contract", date="2026-01-01"
    )


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("prices.yaml", "{}", "must end in .json or .toml"),
        ("prices.json", "{not json", "cannot parse"),
        ("prices.json", "[1, 2]", "table of models"),
        ("prices.json", '{"m": {"input": 1}}', "output"),
        # A bare TOML table name's dots nest it: the error says to quote the name.
        (
            "prices.toml",
            "[gemini-2.5-flash]\ninput = 0.3\noutput = 2.5\n",
            r"\['5-flash'\] for 'gemini-2'.*quote a model name that holds a dot, "
            r'\["gemini-2.5-flash"\]',
        ),
    ],
)
def test_bad_price_files_are_refused(tmp_path: Path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ArgumentValueError, match=match):
        PriceTable.from_file(path)


def test_unknown_model_warns_once_per_model_per_table() -> None:
    table = PriceTable(genai_prices=False)
    with pytest.warns(UnknownModelWarning, match="'house-llm'") as record:
        costs = [table.cost(call("house-llm", input_tokens=n)) for n in (5, 7)]
    assert costs == [None, None]
    assert len(record) == 1
    with pytest.warns(UnknownModelWarning, match="'other-llm'"):
        assert table.cost(call("other-llm", input_tokens=5)) is None
    # Another table warns afresh.
    with pytest.warns(UnknownModelWarning, match="'house-llm'"):
        assert PriceTable(genai_prices=False).cost(call("house-llm")) is None


def test_a_mixed_sum_is_not_priced() -> None:
    table = PriceTable(genai_prices=False)
    total = call("gpt-4o", input_tokens=1) + call("gpt-4.1", input_tokens=1)
    with pytest.warns(UnknownModelWarning, match="'mixed'"):
        assert table.cost(total) is None


def test_default_table_is_shared() -> None:
    assert default_prices() is default_prices()


def test_without_genai_prices_installed_unknown_models_cost_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes the import fail
    table = PriceTable()
    with pytest.warns(UnknownModelWarning, match="agent-resume\\[prices\\]"):
        assert table.cost(call("grok-4", input_tokens=10)) is None


# genai-prices (the `prices` extra) installs on every supported Python (0.1.13 is the
# last release for 3.10); CI installs it, so these tests run on 3.10 and 3.13.


def test_genai_prices_prices_models_the_table_lacks() -> None:
    genai_prices = pytest.importorskip("genai_prices")

    usage = call("grok-4", input_tokens=10_000, cache_read_tokens=4_000, output_tokens=700)
    assert PriceTable(genai_prices=False).lookup("grok-4") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = PriceTable().cost(usage)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=700),
        "grok-4",
    ).total_price
    assert cost == pytest.approx(float(expected))
    assert cost is not None
    # Cached tokens cost less there too: the cache rule is the same as ours.
    uncached = PriceTable().cost(call("grok-4", input_tokens=10_000, output_tokens=700))
    assert uncached is not None
    assert cost < uncached


def test_genai_prices_does_not_know_every_model() -> None:
    pytest.importorskip("genai_prices")
    with pytest.warns(UnknownModelWarning, match="no-such-model-xyz"):
        assert PriceTable().cost(call("no-such-model-xyz", input_tokens=1)) is None


def test_builtin_prices_agree_with_genai_prices() -> None:
    pytest.importorskip("genai_prices")
    # A check on the built-in table's numbers against an independent data set.
    table = PriceTable(genai_prices=False)
    offline = PriceTable(builtin=False)
    usage = {"input_tokens": 10_000, "cache_read_tokens": 3_000, "output_tokens": 2_000}
    # Fine-tuned rates are checked by a fine-tune's name, without cached
    # tokens (genai-prices has no cached rate for them; OpenAI lists half the
    # input rate). It has no fine-tuned gpt-4.1 or o4-mini: OpenAI's page only.
    fine_tunes = {
        "ft:gpt-3.5-turbo": "ft:gpt-3.5-turbo-0125:org::id",
        "ft:gpt-4o": "ft:gpt-4o-2024-08-06:org::id",
        "ft:gpt-4o-mini": "ft:gpt-4o-mini-2024-07-18:org::id",
        "ft:gpt-4.1": "ft:gpt-4.1-2025-04-14:org::id",
        "ft:gpt-4.1-mini": "ft:gpt-4.1-mini-2025-04-14:org::id",
        "ft:gpt-4.1-nano": "ft:gpt-4.1-nano-2025-04-14:org::id",
        "ft:o4-mini": "ft:o4-mini-2025-04-16:org::id",
    }
    unknown_there = {"ft:gpt-4.1", "ft:gpt-4.1-mini", "ft:gpt-4.1-nano", "ft:o4-mini"}
    assert {m for m in table.models if m.startswith("ft:")} == set(fine_tunes)
    for model in table.models:
        if model.startswith("claude"):
            usage["cache_write_tokens"] = 1_000
        asked, counts = model, usage
        if model in fine_tunes:
            asked = fine_tunes[model]
            counts = {k: v for k, v in usage.items() if k != "cache_read_tokens"}
        ours = table.cost(call(asked, **counts))
        if model in unknown_there:
            with pytest.warns(UnknownModelWarning):
                assert offline.cost(call(asked, **counts)) is None, model
            continue
        theirs = offline.cost(call(asked, **counts))
        assert theirs is not None, model
        assert ours == pytest.approx(theirs, rel=1e-9), model
        price = table.lookup(model)
        if price is not None and price.priority_input is not None:
            # OpenAI's priority rates, where the table lists them.
            fast = Usage(calls=1, model=asked, service_tier="priority", **counts)
            assert table.cost(fast) == pytest.approx(offline.cost(fast), rel=1e-9), model


def test_priority_rates_of_its_own_replace_the_tier_multiplier() -> None:
    table = PriceTable(genai_prices=False)
    counts = {"input_tokens": 10_000, "cache_read_tokens": 4_000, "output_tokens": 1_000}

    def priority(model: str) -> float | None:
        return table.cost(Usage(calls=1, model=model, service_tier="priority", **counts))

    # gpt-4.1 at priority: $3.50 / $0.875 cached / $14, 1.75 times its standard rates.
    assert priority("gpt-4.1-2025-04-14") == pytest.approx(
        (6_000 * 3.50 + 4_000 * 0.875 + 1_000 * 14.00) / 1e6
    )
    # A model without rates of its own: the multiplier, x2.
    assert priority("gpt-5") == pytest.approx(2 * table.cost(call("gpt-5", **counts)))  # type: ignore[operator]
    own = PriceTable(
        {"house": {"input": 1, "output": 2, "priority_input": 1.5, "priority_output": 3.0}},
        builtin=False,
        genai_prices=False,
    )
    fast = Usage(calls=1, model="house", service_tier="priority", input_tokens=1_000_000)
    assert own.cost(fast) == pytest.approx(1.5)
    assert own.cost(call("house", input_tokens=1_000_000)) == pytest.approx(1.0)
    with pytest.raises(ArgumentValueError, match="priority_output"):
        ModelPrice(input=1, output=1, priority_input=2)
    with pytest.raises(ArgumentValueError, match="priority_input"):
        ModelPrice(input=1, output=1, priority_cache_read=0.5)


def test_a_price_file_with_tiers_ttls_audio_and_searches(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "house-pro": {
                    "input": 1.0,
                    "output": 4.0,
                    "cache_write": 1.25,
                    "cache_write_1h": 2.0,
                    "input_audio": 3.0,
                    "web_search": 10.0,
                    "long_context_threshold": 1_000,
                    "long_input": 2.0,
                    "long_output": 8.0,
                }
            }
        )
    )
    table = PriceTable.from_file(path, builtin=False, genai_prices=False)
    short = call(
        "house-pro",
        input_tokens=1_000,
        cache_write_tokens=300,
        cache_write_1h_tokens=100,
        input_audio_tokens=200,
        output_tokens=10,
        web_search_requests=2,
    )
    # 500 uncached x 1 + 200 5-minute writes x 1.25 + 100 1-hour x 2 + 200 audio x 3 + 10 out x 4
    assert table.cost(short) == pytest.approx((500 + 250 + 200 + 600 + 40) / 1e6 + 2 * 10 / 1_000)
    long = call("house-pro", input_tokens=1_001, output_tokens=10)
    assert table.cost(long) == pytest.approx((1_001 * 2.0 + 10 * 8.0) / 1e6)
    batch = call("house-pro", input_tokens=1_000, output_tokens=10, service_tier="batch")
    assert table.cost(batch) == pytest.approx((1_000 + 40) / 1e6 * 0.5)


@pytest.mark.parametrize(
    ("price", "match"),
    [
        ({"input": 1, "output": 1, "long_input": 2}, "long_context_threshold"),
        ({"input": 1, "output": 1, "long_context_threshold": 0}, "long_context_threshold"),
        ({"input": 1, "output": 1, "web_search": -1}, "web_search"),
    ],
)
def test_bad_tier_and_fee_prices_are_refused(price: dict[str, float], match: str) -> None:
    with pytest.raises(ArgumentValueError, match=match):
        PriceTable({"m": price})


@pytest.mark.parametrize(
    ("key", "model"),
    [
        ("claude-sonnet-4.5", "claude-sonnet-4-5-20250929"),
        ("openai/gpt-4o", "gpt-4o-2024-08-06"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        (
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
    ],
)
def test_an_own_price_is_found_under_its_key_read_as_a_model_name(key: str, model: str) -> None:
    # These keys matched nothing: the calls were billed at the list price, silently.
    table = PriceTable({key: {"input": 1.0, "output": 2.0}}, genai_prices=False)
    priced = table.price(call(model, input_tokens=1_000, output_tokens=1_000))
    assert priced.cost_usd == pytest.approx(0.003)
    assert priced.price_source == "own prices"
    assert table.owns(model)


def test_a_key_given_as_it_reads_wins_and_a_fine_tune_key_is_not_its_base() -> None:
    table = PriceTable(
        {
            "openai/gpt-4o": {"input": 1.0, "output": 1.0},
            "gpt-4o": {"input": 3.0, "output": 3.0},
            "ft:gpt-4o-mini:org:x:id": {"input": 5.0, "output": 5.0},
        },
        builtin=False,
        genai_prices=False,
    )
    assert table.price(call("gpt-4o", input_tokens=1_000_000)).cost_usd == pytest.approx(3.0)
    assert table.lookup("gpt-4o-mini") is None
    # Replacing a key replaces what its reading finds too.
    again = table.with_prices({"openai/gpt-4o": {"input": 7.0, "output": 7.0}})
    assert again.price(call("gpt-4o-2024-08-06", input_tokens=1_000_000)).cost_usd == 3.0
    alone = PriceTable({"openai/gpt-4o": {"input": 1.0, "output": 1.0}}, genai_prices=False)
    replaced = alone.with_prices({"openai/gpt-4o": {"input": 7.0, "output": 7.0}})
    assert replaced.price(call("gpt-4o", input_tokens=1_000_000)).cost_usd == pytest.approx(7.0)


def test_an_anthropic_priority_call_costs_what_a_standard_one_does() -> None:
    # Anthropic bills no priority rate (a commitment drawn down at standard
    # rates); the generic x2 billed such calls twice, against genai-prices.
    table = PriceTable(genai_prices=False)
    for input_tokens in (10_000, 300_000):  # below and above Sonnet 4.5's context tier
        counts = {"input_tokens": input_tokens, "cache_read_tokens": 2_000, "output_tokens": 500}
        standard = table.cost(call("claude-sonnet-4-5-20250929", **counts))
        priority = table.cost(
            Usage(calls=1, model="claude-sonnet-4-5-20250929", service_tier="priority", **counts)
        )
        assert standard is not None and priority == pytest.approx(standard)
    # An OpenAI model with priority rates scales its context tier as it scales input.
    long = {"input_tokens": 300_000, "output_tokens": 1_000}
    fast = table.cost(Usage(calls=1, model="gpt-5.5", service_tier="priority", **long))
    assert fast == pytest.approx(2.5 * table.cost(call("gpt-5.5", **long)))  # type: ignore[operator]
