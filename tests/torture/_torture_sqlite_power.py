"""Simulated power loss for ``SqliteStore``, shared by the test and ``tools/torture.py``.

SQLite syncs from C, out of Python's reach, so the child runs under an
``LD_PRELOAD`` shim (``_fsync_snapshot.c``, built here with the C compiler)
that copies a file's whole content aside after each successful ``fsync`` or
``fdatasync``. After a ``SIGKILL`` at a random moment, each file goes back to
its last synced copy (a file never synced is emptied) and the ``-shm`` index
is dropped: what a power cut that keeps only synced data leaves. Then the
store is opened and the completions the child had acknowledged are counted.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

SHIM_SOURCE = Path(__file__).with_name("_fsync_snapshot.c")
COLUMNS = ["cuts", "acked", "lost", "cuts_with_loss"]

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


def build_shim(directory: Path) -> Path | None:
    """Compile the shim into ``directory``; ``None`` without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = directory / "fsync_snapshot.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True
    )
    return out


def cut_once(
    directory: Path, durability: str, shim: Path, rng: random.Random
) -> tuple[set[str], int]:
    """Run a child on ``directory/job.db``, kill it after a random number of acks, cut.

    Returns:
        The items acknowledged, and how many of them the cut store lost.
    """
    from agent_resume.stores import SqliteStore

    path = directory / "job.db"
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


@dataclass
class SqlitePowerTally:
    """What a campaign of cuts found."""

    name: str
    cuts: int = 0
    acked: int = 0
    lost: int = 0
    cuts_with_loss: int = 0
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        return {
            "campaign": self.name,
            "cuts": self.cuts,
            "acked": self.acked,
            "lost": self.lost,
            "cuts_with_loss": self.cuts_with_loss,
        }


def campaign(durability: str, cuts: int, tmp: Path, shim: Path, seed: int) -> SqlitePowerTally:
    """``cuts`` power cuts of a SQLite job; with ``fsync`` any lost acknowledgement is a problem."""
    rng = random.Random(f"{seed}-sqlite-power-{durability}")
    tally = SqlitePowerTally(f"sqlite-power-{durability}")
    for cut in range(cuts):
        directory = tmp / f"cut-{cut}"
        directory.mkdir(parents=True)
        acked, lost = cut_once(directory, durability, shim, rng)
        tally.cuts += 1
        tally.acked += len(acked)
        tally.lost += lost
        tally.cuts_with_loss += lost > 0
        if lost and durability == "fsync":
            tally.problems.append(
                f"cut {cut}: {lost} of {len(acked)} acknowledged completions lost"
            )
    return tally
