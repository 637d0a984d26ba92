"""`agent-resume run` flags and TOML keys for calls: --rpm, --tpm, --retry-attempts, --call-timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_resume import RateLimit, Retry
from agent_resume._cli._main import build_parser, main
from agent_resume._cli._run import _settings


def _config(tmp_path: Path, *argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["run", "job:process", "--items", "x.jsonl", *argv])
    config, _ = _settings(args)
    return config


def test_flags_build_the_rate_limit_and_the_retry(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "--rpm",
        "500",
        "--tpm",
        "200000",
        "--retry-attempts",
        "6",
        "--call-timeout",
        "30s",
    )
    assert config["rate_limit"] == RateLimit(requests_per_minute=500, tokens_per_minute=200_000)
    assert config["retry"] == Retry(attempts=6)
    assert config["call_timeout"] == 30.0


def test_toml_keys_do_the_same(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('rpm = 600\ntpm = 1e5\nretry_attempts = 2\ncall_timeout = "1m"\n')
    config = _config(tmp_path, "--config", str(toml))
    assert config["rate_limit"] == RateLimit(requests_per_minute=600, tokens_per_minute=100_000)
    assert config["retry"] == Retry(attempts=2)
    assert config["call_timeout"] == 60.0
    # A flag overrides the file's key of the same name; the others stay.
    assert _config(tmp_path, "--config", str(toml), "--rpm", "60")["rate_limit"] == RateLimit(
        requests_per_minute=60, tokens_per_minute=100_000
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rpm", "fast"], "rpm (--rpm) must be a number (got 'fast')"),
        (["--retry-attempts", "2.5"], "retry_attempts (--retry-attempts) must be an integer"),
        (["--rpm", "0"], "--rpm: `requests_per_minute` must be finite and greater than 0"),
        (["--retry-attempts", "0"], "--retry-attempts: `attempts` must be at least 1 (got 0)"),
        # The flag is named, not only the parameter of the class it builds.
        (["--stop-max-turns", "0"], "--stop-max-turns: `n` must be at least 1 (got 0)"),
        (["--stop-max-cost", "nan"], "--stop-max-cost: `usd` must be greater than 0 (got nan)"),
        (["--call-timeout", "soon"], "call_timeout"),
    ],
)
def test_bad_values_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a"}\n')
    code = main(["run", "json:dumps", "--items", str(items), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_status_counts_the_calls_of_a_killed_run_and_says_the_total_is_a_lower_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path = tmp_path / "ck.jsonl"
    usage = {"in": 100, "out": 20, "calls": 1, "model": "gpt-4o-mini"}
    lines = [
        {"agent_resume": 1, "job_id": "j", "created": 1},
        {"run": "start", "ts": 2, "pid": 1},
        {"call": "a", "a": "t1", "ts": 2, "usage": usage},
        {"call": "a", "a": "t1", "ts": 2, "usage": usage},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["status", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total"]["calls"] == 2
    assert info["total"]["input_tokens"] == 200
    assert info["total_is_lower_bound"] is True
    assert main(["status", str(path)]) == 0
    assert "at least: a run has not ended" in capsys.readouterr().out
    assert main(["report", str(path)]) == 0
    assert "the total is a lower bound" in capsys.readouterr().out
