import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from agent_resume import ArgumentTypeError, ArgumentValueError, InMemoryStore
from agent_resume._accounting._prices import PriceTable
from agent_resume._deadline import MockClock
from agent_resume._run._config import RunConfig
from agent_resume._stop import Custom, LoopState, MaxTokens, MaxTurns


def test_durations_accept_seconds_and_timedelta_and_none_means_no_limit():
    config = RunConfig(
        job_id="j",
        store="memory:",
        time_budget=timedelta(minutes=2),
        item_timeout=30,
        grace_period=timedelta(seconds=5),
    )
    assert config.time_budget == 120.0
    assert config.item_timeout == 30.0
    assert config.grace_period == 5.0
    assert RunConfig(job_id="j", store="memory:").time_budget == math.inf
    assert RunConfig(job_id="j", store="memory:", time_budget=math.inf).time_budget == math.inf


def test_replace_validates_again_and_keeps_normalised_values():
    config = RunConfig(job_id="j", store="memory:", time_budget=timedelta(seconds=9))
    derived = dataclasses.replace(config, concurrency=8)
    assert derived.concurrency == 8
    assert derived.time_budget == 9.0
    assert derived == dataclasses.replace(derived)
    with pytest.raises(ArgumentValueError, match="concurrency"):
        dataclasses.replace(config, concurrency=0)


def test_config_is_frozen_and_keyword_only():
    config = RunConfig(job_id="j", store="memory:")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.concurrency = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        RunConfig("j", "memory:")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("job_id", "", ArgumentValueError),
        ("time_budget", 0, ArgumentValueError),
        ("time_budget", -1.0, ArgumentValueError),
        ("time_budget", "1h", ArgumentTypeError),
        ("item_timeout", float("nan"), ArgumentValueError),
        ("grace_period", -1, ArgumentValueError),
        ("max_cost_usd", 0, ArgumentValueError),
        ("max_cost_usd", math.inf, ArgumentValueError),
        ("max_cost_usd", "5", ArgumentTypeError),
        ("max_cost_usd", 10**400, ArgumentValueError),  # no float holds it: infinite
        ("job_max_cost_usd", -(10**400), ArgumentValueError),
        ("max_tokens", 0, ArgumentValueError),
        ("max_items", 1.5, ArgumentTypeError),
        ("max_attempts", 0, ArgumentValueError),
        ("concurrency", True, ArgumentTypeError),
        ("fail_fast", 1, ArgumentTypeError),
        ("progress", "fancy", ArgumentValueError),
        ("on_item_done", "print", ArgumentTypeError),
        ("stop", 3, ArgumentTypeError),
        ("finish_by", "06:00", ArgumentTypeError),
        ("on_change", "skip", ArgumentValueError),
        ("store", 42, ArgumentTypeError),
        ("prices", [1], ArgumentTypeError),
        ("rate_limit", "nope", ArgumentTypeError),  # was an AttributeError (.shared)
    ],
)
def test_bad_values_are_refused_with_the_field_and_value_named(field, value, error):
    kwargs = {"job_id": "j", "store": "memory:", field: value}
    with pytest.raises(error) as info:
        RunConfig(**kwargs)
    assert info.value.parameter == field
    assert f"`{field}`" in str(info.value)


def test_a_cost_budget_takes_a_decimal_as_MaxCost_does():
    from decimal import Decimal

    config = RunConfig(job_id="j", store="memory:", max_cost_usd=Decimal("5.00"))
    assert config.max_cost_usd == 5.0 and type(config.max_cost_usd) is float


def test_grace_period_of_zero_is_allowed():
    assert RunConfig(job_id="j", store="memory:", grace_period=0).grace_period == 0.0


def test_a_plain_callable_stop_becomes_a_custom_condition():
    def too_long(state: LoopState) -> bool:
        return state.turns > 2

    config = RunConfig(job_id="j", store="memory:", stop=too_long)
    assert isinstance(config.stop, Custom)
    assert config.stop_condition is config.stop


def test_prices_mapping_becomes_a_price_table():
    config = RunConfig(job_id="j", store="memory:", prices={"sim-1": {"input": 1.0, "output": 2.0}})
    assert isinstance(config.prices, PriceTable)
    assert config.prices.lookup("sim-1") is not None


def test_repr_shows_only_what_was_configured():
    config = RunConfig(
        job_id="nightly",
        store="checkpoints/nightly.jsonl",
        time_budget=3600,
        stop=MaxTurns(8) | MaxTokens(40_000),
        concurrency=8,
    )
    assert repr(config) == (
        "RunConfig(job_id='nightly', store='checkpoints/nightly.jsonl', time_budget=3600.0, "
        "stop=MaxTurns(8) | MaxTokens(40000), concurrency=8)"
    )


def test_repr_names_hooks_and_injected_clocks():
    def on_done(outcome: object) -> None:
        pass

    clock = MockClock()
    config = RunConfig(job_id="j", store=InMemoryStore(), on_item_done=on_done, clock=clock)
    text = repr(config)
    assert "on_item_done=test_repr_names_hooks_and_injected_clocks.<locals>.on_done" in text
    assert "clock=MockClock(now=0.0)" in text
    assert "wall_clock" not in text


def test_finish_by_takes_a_datetime():
    when = datetime(2030, 1, 1, 6, tzinfo=timezone.utc)
    assert RunConfig(job_id="j", store="memory:", finish_by=when).finish_by == when


def test_progress_on_and_off_are_accepted_as_true_and_false():
    assert RunConfig(job_id="j", store="memory:", progress="off").progress is False
    assert RunConfig(job_id="j", store="memory:", progress="on").progress is True
    with pytest.raises(ArgumentValueError, match="`progress` must be one of"):
        RunConfig(job_id="j", store="memory:", progress=1)  # type: ignore[arg-type]


def test_fields_hold_the_normalised_types_they_declare():
    config = RunConfig(
        job_id="j",
        store="memory:",
        time_budget=timedelta(seconds=90),
        progress_interval=timedelta(seconds=2),
        max_cost_usd=2,
        stop=lambda s: s.turns > 3,
    )
    assert type(config.time_budget) is float and config.time_budget == 90.0
    assert type(config.item_timeout) is float and config.item_timeout == math.inf
    assert type(config.progress_interval) is float and config.progress_interval == 2.0
    assert type(config.max_cost_usd) is float and config.max_cost_usd == 2.0
    assert isinstance(config.stop, Custom)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.time_budget = 5  # type: ignore[misc, assignment]
    assert config == dataclasses.replace(config)


def test_progress_interval_must_be_finite():
    with pytest.raises(ArgumentValueError, match="`progress_interval`"):
        RunConfig(job_id="j", store="memory:", progress_interval=math.inf)


def test_a_config_shows_its_store_url_without_the_password() -> None:
    from agent_resume._render import masked_url

    config = RunConfig(job_id="j", store="postgresql://app:hunter2@db:5432/jobs?schema=n")
    assert "hunter2" not in repr(config) and "app:***@db:5432" in repr(config)
    assert config.store == "postgresql://app:hunter2@db:5432/jobs?schema=n"  # the value is kept
    cases = {
        "postgres://app:p@ss@db/jobs": "postgres://app:***@db/jobs",
        "postgresql://db/jobs?user=a&password=x&schema=q": "postgresql://db/jobs?user=a&password=***&schema=q",
        "postgresql://app@db/jobs": "postgresql://app@db/jobs",
        "checkpoints/night:1@x.jsonl": "checkpoints/night:1@x.jsonl",
        "host=db password=hunter2 dbname=jobs": "host=db password=*** dbname=jobs",
        "host=db password = 'a b\\'c' user=u": "host=db password = *** user=u",
    }
    for url, shown in cases.items():
        assert masked_url(url) == shown, url


def test_a_rich_display_without_rich_is_refused_before_the_run(tmp_path):
    # The display's thread died with a ModuleNotFoundError traceback once the run
    # had started. A finder that refuses `rich` stands for an install without it.
    code = textwrap.dedent(
        f"""
        import sys
        class NoRich:
            def find_spec(self, name, path=None, target=None):
                if name == "rich" or name.startswith("rich."):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, NoRich())
        from agent_resume import MissingExtraError, RunConfig
        store = {str(tmp_path / "job.jsonl")!r}
        try:
            RunConfig(job_id="job", store=store, progress="rich")
        except MissingExtraError as exc:
            print("REFUSED", exc.extra, exc)
        print("AUTO", RunConfig(job_id="job", store=store, progress="auto").progress)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "REFUSED rich progress='rich' needs the 'rich' extra" in out, out
    assert "AUTO auto" in out  # auto falls back to log lines
    assert not (tmp_path / "job.jsonl").exists()
