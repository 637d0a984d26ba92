"""The kill campaign, CI subset: children running real jobs are SIGKILLed in every phase.

``AGENT_RESUME_TORTURE_KILLS`` (default 330) is the number of kills shared
among the campaigns; ``python tools/torture.py`` runs the full campaign.
See ``_torture_harness.py`` for what is counted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import _torture_harness as harness
import pytest

TOTAL = int(os.environ.get("AGENT_RESUME_TORTURE_KILLS", "330"))
KILLS = harness.split_kills(TOTAL)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc/self/fd"),
]


def check(tally: harness.Tally, kills: int) -> None:
    assert tally.kills >= kills
    assert tally.problems == []
    assert (tally.lost, tally.doubled, tally.unexpected) == (0, 0, 0)
    assert tally.rerun <= tally.in_flight


def test_the_ci_subset_makes_at_least_300_kills() -> None:
    assert sum(KILLS.values()) >= min(TOTAL, 300)


@pytest.mark.parametrize("name", [n for n in KILLS if n != "postgres"])
def test_killed_jobs_lose_double_and_invent_nothing(tmp_path: Path, name: str) -> None:
    campaign = harness.Campaign(harness.TARGETS[name], tmp_path, seed=TOTAL)
    check(campaign.run(KILLS[name]), KILLS[name])


@pytest.mark.postgres
def test_killed_postgres_workers_lose_double_and_invent_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    campaign = harness.Campaign(harness.TARGETS["postgres"], tmp_path, seed=TOTAL, pg_dsn=pg_dsn)
    check(campaign.run(KILLS["postgres"]), KILLS["postgres"])
