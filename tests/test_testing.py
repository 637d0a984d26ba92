import asyncio
import os
import signal
import subprocess
import sys

import pytest

from agent_resume._accounting._responses import usage_from
from agent_resume.testing import Crash, SimulatedError, SimulatedLLM, reply_text

MESSAGES = [{"role": "user", "content": "Summarise the report."}]


def test_same_prompt_same_answer_and_seed_changes_it():
    llm = SimulatedLLM(seed=1)
    assert llm.complete(MESSAGES) == llm.complete(MESSAGES)
    assert reply_text(llm.complete(MESSAGES)) != reply_text(SimulatedLLM(seed=2).complete(MESSAGES))


def test_usage_from_reads_the_response_and_prices_it():
    llm = SimulatedLLM(input_price=2.0, output_price=8.0)
    response = llm.complete(MESSAGES)
    usage = usage_from(response, prices=llm.prices)
    assert usage.model == "sim-1"
    assert usage.input_tokens == response["usage"]["prompt_tokens"]
    assert usage.output_tokens == response["usage"]["completion_tokens"]
    expected = (usage.input_tokens * 2.0 + usage.output_tokens * 8.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected)


def test_async_complete_matches_sync():
    llm = SimulatedLLM(latency=0.001)
    assert asyncio.run(llm.acomplete(MESSAGES)) == llm.complete(MESSAGES)


def test_latency_range_is_deterministic_per_prompt():
    llm = SimulatedLLM(latency=(0.1, 0.5))
    first = llm.latency_for(MESSAGES)
    assert 0.1 <= first <= 0.5
    assert llm.latency_for(MESSAGES) == first


def test_finish_after_marks_the_final_turn():
    llm = SimulatedLLM(finish_after=2)
    assert "DONE" not in reply_text(llm.respond(MESSAGES))
    second = [*MESSAGES, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    assert reply_text(llm.respond(second)).endswith("DONE.")


def test_fail_rate_fails_a_deterministic_share():
    llm = SimulatedLLM(fail_rate=0.5)
    outcomes = []
    for n in range(200):
        try:
            llm.respond([{"role": "user", "content": str(n)}])
            outcomes.append(True)
        except SimulatedError:
            outcomes.append(False)
    assert 60 < outcomes.count(False) < 140


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="latency"):
        SimulatedLLM(latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="fail_rate"):
        SimulatedLLM(fail_rate=2)
    with pytest.raises(ValueError, match="at"):
        Crash(at=0)


def test_crash_without_a_setting_never_kills(monkeypatch):
    monkeypatch.delenv("AGENT_RESUME_CRASH_AT", raising=False)
    crash = Crash()
    for _ in range(5):
        crash()
    assert crash.count == 5


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_crash_kills_the_process_at_the_chosen_call():
    code = "from agent_resume.testing import Crash\nc = Crash(at=3)\nfor i in range(5):\n    print(i, flush=True)\n    c()\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["0", "1", "2"]
