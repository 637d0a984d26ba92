"""Simulated power loss for the ``fsync`` and ``group`` durability modes.

The child reports every successful fsync (of a file: its length when the
fsync began; of a directory: its path). After the SIGKILL the harness cuts
the checkpoint back to its last synced length and drops any file or
directory the child created whose parent directory was not synced after
it: what a power cut could leave. Then:

- ``fsync``: every acknowledged completion must survive;
- ``group``: every completion acknowledged before the last fsync began must
  survive; the later ones are the window, counted and reported.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import _torture_harness as harness
import pytest

CUTS = max(10, int(os.environ.get("AGENT_RESUME_TORTURE_KILLS", "330")) // 10)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc/self/fd"),
]


def test_power_loss_in_fsync_mode_loses_no_acknowledged_completion(tmp_path: Path) -> None:
    tally = harness.power_campaign("fsync", CUTS, tmp_path, seed=CUTS)
    assert tally.problems == []
    assert tally.lost_durable == 0
    assert tally.lost_in_window == 0
    assert tally.acked_durable == tally.acked > 0


def test_power_loss_in_group_mode_loses_only_the_last_window(tmp_path: Path) -> None:
    tally = harness.power_campaign("group", CUTS, tmp_path, seed=CUTS, items=3000)
    assert tally.problems == []
    assert tally.lost_durable == 0
    assert tally.acked_durable > 0
    assert tally.cut_bytes > 0  # the cuts did remove unsynced data


@pytest.mark.parametrize("durability", ["fsync", "group"])
def test_a_new_checkpoint_survives_power_loss_once_something_is_acknowledged(
    tmp_path: Path, durability: str
) -> None:
    spec = {"target": "jsonl", "durability": durability, "items": 50, "phase": "work"}
    cut = harness.power_cut(tmp_path / "job.jsonl", {**spec, "phase_at": 3}, random.Random(1))
    assert len(cut.acked) == 2
    assert not cut.dropped
    if durability == "fsync":
        assert {item for item, _ in cut.acked} <= cut.survivors


def test_a_new_checkpoint_in_new_directories_survives_power_loss(tmp_path: Path) -> None:
    spec = {"target": "jsonl", "durability": "fsync", "items": 50, "phase": "work", "phase_at": 3}
    cut = harness.power_cut(tmp_path / "a" / "b" / "job.jsonl", spec, random.Random(1))
    assert len(cut.acked) == 2
    assert not cut.dropped
    assert {item for item, _ in cut.acked} <= cut.survivors
