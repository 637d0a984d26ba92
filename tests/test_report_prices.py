"""``agent-resume report --prices FILE``: costing a checkpoint after the fact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    Ledger,
    PriceTable,
    ResultJsonlStore,
    UnknownModelWarning,
    Usage,
    usage_from,
)
from agent_resume._cli._main import main


def response(model: str, prompt: int, completion: int) -> dict[str, object]:
    return {
        "object": "chat.completion",
        "model": model,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """Two items of a model nobody prices, one of gpt-4o, and one that used both."""
    path = tmp_path / "job.jsonl"
    table = PriceTable()
    with pytest.warns(UnknownModelWarning, match="house-model"):
        house = [
            usage_from(response("house-model-v2", 1_000 * n, 100), prices=table) for n in (1, 2)
        ]
    gpt = usage_from(response("gpt-4o", 1_000, 100), prices=table)
    agent = AgentResume(ResultJsonlStore(path))
    with agent.resume_or_start("job-1") as session:
        session.mark_done("a", result=1, usage=house[0])
        session.mark_failed("b", ValueError("flaky"), usage=house[1])
        session.mark_done("c", result=3, usage=gpt)
        session.mark_done("d", result=4, usage=house[0] + gpt)
    return path


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(["report", *argv, "--format", "json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {}, captured.err


def test_report_without_prices_shows_the_unknown_cost(
    capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    code, data, _ = report(capsys, str(checkpoint))
    assert code == 0
    costs = {row["item_id"]: row["cost_usd"] for row in data["items"]}  # type: ignore[attr-defined]
    assert costs["a"] is None and costs["b"] is None and costs["d"] is None
    assert costs["c"] == pytest.approx((1_000 * 2.50 + 100 * 10.00) / 1e6)
    assert data["total"]["cost_usd"] is None  # type: ignore[index]


def test_report_with_prices_costs_the_unknown_model(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    # gpt-4o at a negotiated rate: its recorded cost is replaced too.
    prices.write_text(
        json.dumps(
            {
                "house-model": {"input": 1.0, "output": 2.0},
                "gpt-4o": {"input": 2.0, "output": 8.0},
            }
        )
    )
    code, data, _ = report(capsys, str(checkpoint), "--prices", str(prices))
    assert code == 0
    costs = {row["item_id"]: row["cost_usd"] for row in data["items"]}  # type: ignore[attr-defined]
    assert costs["a"] == pytest.approx((1_000 * 1.0 + 100 * 2.0) / 1e6)
    assert costs["b"] == pytest.approx((2_000 * 1.0 + 100 * 2.0) / 1e6)
    assert costs["c"] == pytest.approx((1_000 * 2.0 + 100 * 8.0) / 1e6)
    # An item whose calls used two models was summed before pricing: it stays unknown.
    assert costs["d"] is None
    assert data["total"]["cost_usd"] is None  # type: ignore[index]


def test_prices_that_name_only_some_models_keep_the_other_recorded_costs(
    checkpoint: Path, tmp_path: Path
) -> None:
    prices = PriceTable({"house-model": {"input": 1.0, "output": 2.0}})
    ledger = Ledger.from_records(ResultJsonlStore(checkpoint).iter_records(), prices=prices)
    c = ledger.item("c")
    assert c is not None
    assert c.usage.cost_usd == pytest.approx((1_000 * 2.50 + 100 * 10.00) / 1e6)
    a = ledger.item("a")
    assert a is not None
    assert a.usage.price_source == "own prices"


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "cannot parse"), ('{"m": {"input": 1}}', "output")],
)
def test_a_bad_price_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path, content: str, match: str
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(content)
    code, _, err = report(capsys, str(checkpoint), "--prices", str(prices))
    assert code == 2
    assert match in err
    assert len(err.strip().splitlines()) == 1


def test_ledger_prices_must_be_a_table() -> None:
    with pytest.raises(TypeError, match="prices"):
        Ledger(prices={"m": {"input": 1, "output": 1}})  # type: ignore[arg-type]
    assert Ledger(prices=PriceTable()).total == Usage()


def test_a_price_file_that_prices_no_model_of_the_job_says_so(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    # `house` matches no `house-model-v2` (no snapshot suffix): the cost stayed
    # unknown, with exit 0 and nothing said.
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"house": {"input": 1.0, "output": 2.0}}))
    code, data, err = report(capsys, str(checkpoint), "--prices", str(prices))
    assert code == 0 and data["total"]["cost_usd"] is None  # type: ignore[index]
    assert "no price for model 'house-model-v2'" in err
    assert "-2024-08-06" in err
    # Once the file names it, nothing is said.
    prices.write_text(json.dumps({"house-model": {"input": 1.0, "output": 2.0}}))
    code, _, err = report(capsys, str(checkpoint), "--prices", str(prices))
    assert (code, err) == (0, "")
