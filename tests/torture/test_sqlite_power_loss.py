"""Simulated power loss for ``SqliteStore``: ``durability="fsync"`` keeps every acknowledgement.

SQLite syncs from C, out of Python's reach, so the child runs under an
``LD_PRELOAD`` shim (``_fsync_snapshot.c``, built here with the C compiler)
that copies a file's whole content aside after each successful ``fsync`` or
``fdatasync``. After a ``SIGKILL`` at a random moment, the harness puts back
each file's last synced copy (a file never synced is emptied) and drops the
``-shm`` index: what a power cut that keeps only synced data leaves. Then it
opens the store and checks the completions the child had acknowledged.

- ``fsync`` (``synchronous=FULL``): no acknowledged completion is lost, ever;
- ``flush`` (``synchronous=NORMAL``): the recent ones are lost, which shows
  that the simulation bites (and that ``fsync`` is what keeps them).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent_resume.stores import SqliteStore

CUTS = max(4, int(os.environ.get("AGENT_RESUME_TORTURE_KILLS", "330")) // 30)
SHIM_SOURCE = Path(__file__).with_name("_fsync_snapshot.c")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD, SIGKILL and /proc"),
]

CHILD = textwrap.dedent(
    """
    import sys
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore
    path, durability, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SqliteStore(path, durability=durability)
    with AgentResume(store).resume_or_start("power") as s:
        for item in s.remaining([f"item-{i:04d}" for i in range(n)]):
            s.mark_done(item, result={"i": item})
            print("acked", item, flush=True)
    print("finished", flush=True)
    """
)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fsync shim")
    out = tmp_path_factory.mktemp("shim") / "fsync_snapshot.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True
    )
    return out


def _cut(
    directory: Path, path: Path, durability: str, shim: Path, rng: random.Random
) -> tuple[set[str], int]:
    """Run the child, kill it after a random number of acks, cut to what was synced.

    Returns:
        The items acknowledged, and how many of them the cut store lost.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LD_PRELOAD": str(shim),
        "POWER_DIR": str(directory),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), durability, "400"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    stop_after = rng.randint(1, 120)
    acked: set[str] = set()
    for line in proc.stdout:
        word, *rest = line.split()
        if word == "acked":
            acked.add(rest[0])
            if len(acked) >= stop_after:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    # The power cut: every file goes back to its last synced content.
    for name in os.listdir(directory):
        if name.endswith((".synced", ".synced-tmp")):
            continue
        file = directory / name
        synced = directory / (name + ".synced")
        if name.endswith("-shm"):
            file.unlink()
        elif synced.exists():
            os.replace(synced, file)
        else:
            file.write_bytes(b"")
    for name in os.listdir(directory):
        if name.endswith((".synced", ".synced-tmp")):
            (directory / name).unlink()
    store = SqliteStore(path)
    with_job = store.describe().job_id is not None
    done = {item for item, _ in store.iter_results()} if with_job else set()
    return acked, len(acked - done)


def test_power_loss_in_fsync_mode_loses_no_acknowledged_completion(
    tmp_path: Path, shim: Path
) -> None:
    rng = random.Random(CUTS)
    acked_total = 0
    for cut in range(CUTS):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        acked, lost = _cut(directory, directory / "job.db", "fsync", shim, rng)
        acked_total += len(acked)
        assert lost == 0, f"cut {cut}: {lost} of {len(acked)} acknowledged completions lost"
    assert acked_total > 0


def test_power_loss_in_flush_mode_loses_the_latest_completions(tmp_path: Path, shim: Path) -> None:
    rng = random.Random(CUTS + 1)
    lost_total = 0
    for cut in range(CUTS):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        _, lost = _cut(directory, directory / "job.db", "flush", shim, rng)
        lost_total += lost
    assert lost_total > 0  # the simulated power cut does remove what was not synced
