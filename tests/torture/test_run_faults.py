"""The run-fault campaign (issue 17 items 2 and 3) at CI size.

``tools/torture.py --run-faults N`` runs it at full size and prints the counts.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import _torture_run_faults as faults
import pytest

ROUNDS = int(os.environ.get("AGENT_RESUME_TORTURE_RUN_FAULTS", "12"))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_run_fault_campaign_finds_nothing(tmp_path: Path) -> None:
    tally = faults.run_faults(ROUNDS, tmp_path, random.Random("ci-run-faults"))
    assert tally.attempts == ROUNDS
    assert tally.problems == []
    assert (tally.silent, tally.hung, tally.lost, tally.doubled, tally.crashed) == (0,) * 5
    assert tally.raised > 0
