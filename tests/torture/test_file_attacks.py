"""The file-attack campaigns (issue 17) at CI size: other names, foreign files, deep/long/blank lines, forks.

``tools/torture.py --files N`` runs them at full size and prints the counts.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import _torture_files as files
import pytest

ROUNDS = int(os.environ.get("AGENT_RESUME_TORTURE_FILES", "20"))


@pytest.mark.parametrize("name", list(files.CAMPAIGNS))
def test_file_attack_campaign_finds_nothing(tmp_path: Path, name: str) -> None:
    campaign, share = files.CAMPAIGNS[name]
    tally = campaign(max(2, int(ROUNDS * share)), tmp_path, random.Random(f"ci-{name}"))
    assert tally.attempts > 0
    assert tally.problems == []
    assert (tally.lost, tally.doubled, tally.not_refused, tally.changed, tally.crashed) == (0,) * 5
    if name in ("aliases", "foreign"):
        assert tally.refused == tally.attempts
