"""Simulated power loss for ``SqliteStore``: ``durability="fsync"`` keeps every acknowledgement.

See ``_torture_sqlite_power.py`` for how a power cut is simulated (an
``LD_PRELOAD`` shim snapshots each file at every successful sync).

- ``fsync`` (``synchronous=FULL``): no acknowledged completion is lost, ever;
- ``flush`` (``synchronous=NORMAL``): the recent ones are lost, which shows
  that the simulation bites (and that ``fsync`` is what keeps them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import _torture_sqlite_power as power
import pytest

CUTS = max(4, int(os.environ.get("AGENT_RESUME_TORTURE_KILLS", "330")) // 30)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD, SIGKILL and /proc"),
]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = power.build_shim(tmp_path_factory.mktemp("shim"))
    if built is None:
        pytest.skip("no C compiler to build the fsync shim")
    return built


def test_power_loss_in_fsync_mode_loses_no_acknowledged_completion(
    tmp_path: Path, shim: Path
) -> None:
    tally = power.campaign("fsync", CUTS, tmp_path, shim, seed=CUTS)
    assert tally.problems == []
    assert tally.lost == 0
    assert tally.acked > 0


def test_power_loss_in_flush_mode_loses_the_latest_completions(tmp_path: Path, shim: Path) -> None:
    tally = power.campaign("flush", CUTS, tmp_path, shim, seed=CUTS)
    assert tally.lost > 0  # the simulated power cut does remove what was not synced
