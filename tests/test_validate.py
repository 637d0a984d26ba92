"""The one set of argument checks shared by RunConfig, AgentResume and the command line."""

import math
from datetime import timedelta

import pytest

from agent_resume import AgentResume, ArgumentTypeError, ArgumentValueError, RunConfig
from agent_resume import _validate as validate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("1.5", 1.5),
        (".5s", 0.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30", 90.0),
        (" 2 h ", 7200.0),
    ],
)
def test_duration_text_is_read_the_same_everywhere(text, seconds):
    assert validate.parse_duration(text) == seconds
    assert validate.duration("time_budget", text, text=True) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-5s", "1e3", "5m 3x", "30 1m", "nan", "inf"])
def test_bad_duration_text_is_refused_naming_the_parameter(text):
    with pytest.raises(ArgumentValueError) as info:
        validate.duration("time_budget", text, text=True)
    assert info.value.parameter == "time_budget"
    assert info.value.value == text
    assert "`time_budget`" in str(info.value) and repr(text) in str(info.value)


def test_duration_takes_numbers_and_timedelta_and_none_is_no_limit():
    assert validate.duration("d", 3) == 3.0
    assert validate.duration("d", timedelta(minutes=1)) == 60.0
    assert validate.duration("d", None) == math.inf
    assert validate.duration("d", math.inf) == math.inf
    assert validate.duration("d", 0, allow_zero=True) == 0.0


@pytest.mark.parametrize(
    ("value", "options", "error"),
    [
        ("5m", {}, ArgumentTypeError),  # text only where the caller allows it
        (True, {}, ArgumentTypeError),
        (None, {"allow_none": False}, ArgumentTypeError),
        (float("nan"), {}, ArgumentValueError),
        (-1, {}, ArgumentValueError),
        (0, {}, ArgumentValueError),
        (-1, {"allow_zero": True}, ArgumentValueError),
        (math.inf, {"allow_none": False, "allow_inf": False}, ArgumentValueError),
        (timedelta(seconds=-1), {}, ArgumentValueError),
    ],
)
def test_bad_durations_are_typed_errors(value, options, error):
    with pytest.raises(error) as info:
        validate.duration("grace_period", value, **options)
    assert info.value.parameter == "grace_period"


def test_positive_ints_refuse_bools_floats_and_zero():
    assert validate.positive_int("n", 3) == 3
    assert validate.optional_positive_int("n", None) is None
    for bad, error in (
        (True, ArgumentTypeError),
        (1.0, ArgumentTypeError),
        (0, ArgumentValueError),
    ):
        with pytest.raises(error, match=r"`n` must be"):
            validate.positive_int("n", bad)


def test_choice_compares_types_too():
    assert validate.choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ArgumentValueError, match=r"`mode` must be one of 'a', 'b' \(got 'c'\)"):
        validate.choice("mode", "c", ("a", "b"))
    # 1 == True in Python; a choice of booleans does not take 1.
    with pytest.raises(ArgumentValueError):
        validate.choice("flag", 1, (True, False))


def test_job_ids_must_be_non_empty_utf8_strings():
    assert validate.job_id("nightly") == "nightly"
    with pytest.raises(ArgumentTypeError, match="`job_id` must be a str"):
        validate.job_id(7)
    with pytest.raises(ArgumentValueError, match="lone surrogate"):
        validate.job_id("bad\udcff")


# -- RunConfig and AgentResume share the checks ---------------------------------

BAD_SETTINGS = [
    ("job_id", "bad\udcff", ArgumentValueError),
    ("job_id", 7, ArgumentTypeError),
    ("max_attempts", True, ArgumentTypeError),
    ("max_attempts", 0, ArgumentValueError),
    ("fingerprint", 42, ArgumentTypeError),
    ("fingerprint", "sha256", ArgumentTypeError),
    ("on_change", "skip", ArgumentValueError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_SETTINGS)
def test_run_config_refuses_at_construction_what_the_session_refuses(name, value, error):
    with pytest.raises(error) as made:
        RunConfig(**{"job_id": "j", "store": "memory:", name: value})
    kwargs = {"max_attempts": 3, "fingerprint": None, "on_change": "rerun"}
    job = "j"
    if name == "job_id":
        job = value
    else:
        kwargs[name] = value
    with pytest.raises(error) as opened:
        AgentResume("memory:").resume_or_start(job, **kwargs)
    assert made.value.parameter == opened.value.parameter == name
    assert str(made.value) == str(opened.value)


@pytest.mark.parametrize(
    ("store", "error"),
    [
        ("checkpoint.txt", ArgumentValueError),
        ("mysql://host/db", ArgumentValueError),
        (42, ArgumentTypeError),
        (b"job.jsonl", ArgumentTypeError),
    ],
)
def test_run_config_refuses_a_store_open_store_cannot_open(store, error):
    with pytest.raises(error) as made:
        RunConfig(job_id="j", store=store)
    assert made.value.parameter == "store"
    with pytest.raises(error):
        AgentResume(store)


def test_shared_store_settings_use_the_same_checks(tmp_path):
    from fractions import Fraction

    from agent_resume import SqliteStore

    store = SqliteStore(str(tmp_path / "a.db"), lease_seconds=Fraction(30), batch_size=2)
    assert store.lease_seconds == 30.0
    with pytest.raises(ArgumentTypeError, match="`batch_size` must be an int"):
        SqliteStore(str(tmp_path / "b.db"), batch_size=True)
    with pytest.raises(ArgumentTypeError, match="`lease_seconds` must be"):
        SqliteStore(str(tmp_path / "c.db"), lease_seconds="30s")
    with pytest.raises(ArgumentValueError, match="`lease_seconds`"):
        SqliteStore(str(tmp_path / "d.db"), lease_seconds=float("nan"))


def test_numpy_integer_ids_name_the_same_items_as_ints(tmp_path) -> None:
    # A pandas frame's IDs are numpy integers (df.itertuples(), df.iterrows()).
    import numpy as np

    from agent_resume import JsonlStore

    assert validate.identifier(np.int64(7)) == validate.identifier(np.uint8(7)) == "7"
    with pytest.raises(ArgumentTypeError, match="got bool"):
        validate.identifier(np.bool_(True))
    path = str(tmp_path / "ck.jsonl")
    with AgentResume(JsonlStore(path)).resume_or_start("frame") as session:
        for item in session.remaining([{"id": np.int64(n)} for n in range(3)]):
            session.mark_done(item["id"])
    with AgentResume(JsonlStore(path)).resume_or_start("frame") as session:
        assert list(session.remaining([{"id": n} for n in range(4)])) == [{"id": 3}]
