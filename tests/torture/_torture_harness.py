"""The torture campaigns: children killed at chosen moments, checked Jepsen-style.

Used by the pytest subset (``tests/torture/test_kill_campaign.py``,
``test_power_loss.py``) and by the full campaign runner (``tools/torture.py``).

After every kill the parent reads the checkpoint *without* the library (its
own JSON parse of the file, or plain SQL) and counts:

- ``lost``: completions the child acknowledged (``mark_done`` returned) that
  the checkpoint does not hold;
- ``doubled``: items with more than one completion record;
- ``unexpected``: anything else out of place: an ID that is not an item, an
  item recorded done that was never begun, a corrupt line in the middle of a
  file (other than the garbage the parent injected on purpose), a missing or
  wrong header, an item begun again after it was acknowledged, or a re-run
  item that was not in flight at any crash;
- per crash, the items in flight (begun, not acknowledged) and how many of
  them were run again later: re-runs never exceed what was in flight.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _sqlite_rows import COMPLETIONS

CHILD = str(Path(__file__).with_name("_torture_child.py"))
JOB = "torture-job"
GARBAGE = b"#torture-garbage#"

FLUSH_PHASES = [
    None,
    None,
    None,
    "work",
    "encode",
    "write-before",
    "write-mid",
    "write-after",
    "open-load",
    "open-cut-before",
    "open-cut-after",
]
SYNC_PHASES = [*FLUSH_PHASES, "sync-before", "sync-after"]
SQL_PHASES = [None, None, None, "work", "encode", "write-before", "write-after", "open-load"]
RUN_PHASES = [None, None, None, "work", "encode", "write-before", "write-mid", "write-after"]
MAINTENANCE_PHASES = [None, "sync-before", "link", "replace-before", "replace-after", "dirsync"]


@dataclass(frozen=True)
class Target:
    """One kind of job the campaign kills."""

    name: str
    target: str
    durability: str = "flush"
    items: int = 5000
    phases: tuple[str | None, ...] = tuple(FLUSH_PHASES)
    concurrency: int = 1
    work_seconds: float = 0.0
    max_delay: float = 0.08


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("jsonl-flush", "jsonl"),
        Target("jsonl-group", "jsonl", "group", phases=tuple(SYNC_PHASES)),
        Target("jsonl-fsync", "jsonl", "fsync", items=600, phases=tuple(SYNC_PHASES)),
        Target("results-flush", "results"),
        Target("results-fsync", "results", "fsync", items=600, phases=tuple(SYNC_PHASES)),
        Target("sqlite", "sqlite", items=600, phases=tuple(SQL_PHASES), max_delay=0.25),
        Target("postgres", "postgres", items=600, phases=tuple(SQL_PHASES), max_delay=0.25),
        Target(
            "run-sync",
            "run-sync",
            items=1200,
            phases=tuple(RUN_PHASES),
            concurrency=4,
            work_seconds=0.001,
            max_delay=0.25,
        ),
        Target(
            "run-async",
            "run-async",
            items=1200,
            phases=tuple(RUN_PHASES),
            concurrency=8,
            work_seconds=0.002,
            max_delay=0.25,
        ),
        Target("repair", "repair", phases=tuple(MAINTENANCE_PHASES)),
        Target("compact", "compact", phases=tuple(MAINTENANCE_PHASES)),
    ]
}

# The share of a campaign's kills each target gets (they sum to 1).
SHARES: dict[str, float] = {
    "jsonl-flush": 0.12,
    "jsonl-group": 0.12,
    "jsonl-fsync": 0.10,
    "results-flush": 0.10,
    "results-fsync": 0.06,
    "sqlite": 0.09,
    "postgres": 0.09,
    "run-sync": 0.09,
    "run-async": 0.09,
    "repair": 0.07,
    "compact": 0.07,
}


@dataclass
class Tally:
    """The counts of one campaign."""

    name: str
    kills: int = 0
    rounds: int = 0
    completed_jobs: int = 0
    acked: int = 0
    lost: int = 0
    doubled: int = 0
    unexpected: int = 0
    in_flight: int = 0
    rerun: int = 0
    max_in_flight: int = 0
    max_rerun_per_crash: int = 0
    torn_tails: int = 0
    leftovers: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.unexpected)

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def row(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "kills": self.kills,
            "acked": self.acked,
            "lost": self.lost,
            "doubled": self.doubled,
            "unexpected": self.unexpected,
            "in_flight": self.in_flight,
            "rerun": self.rerun,
            "max_in_flight": self.max_in_flight,
            "max_rerun_per_crash": self.max_rerun_per_crash,
            "torn_tails": self.torn_tails,
            "completed_jobs": self.completed_jobs,
            "phases": dict(sorted(self.phases.items())),
        }


class Child:
    """A torture child process whose stdout lines are collected as they come."""

    def __init__(self, spec: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.paused = threading.Event()
        self.ended = threading.Event()
        self.killed_at: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line == "ready":
                self.ready.set()
            elif line.startswith("phase "):
                self.paused.set()
        self.ready.set()
        self.ended.set()

    def kill(self) -> bool:
        """SIGKILL the child; return whether it was still running."""
        if self.proc.poll() is not None:
            return False
        self.killed_at = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        return True

    def finish(self, timeout: float = 120.0) -> int:
        returncode = self.proc.wait(timeout)
        self._reader.join(timeout)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return returncode

    def error_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-3000:]

    def close(self) -> None:
        self.stderr.close()

    def ids(self, kind: str) -> list[str]:
        return [ln.split()[1] for ln in self.lines if ln.startswith(kind + " ")]


# -- reading a checkpoint without the library -------------------------------------


@dataclass
class Observed:
    """What a checkpoint holds, read by the harness's own parser."""

    done: Counter[str] = field(default_factory=Counter)
    bad_middle: int = 0
    torn_tail: bool = False
    header_ok: bool = True


def read_jsonl(data: bytes) -> Observed:
    seen = Observed()
    if not data:
        return seen
    lines = data.split(b"\n")
    tail = lines.pop()
    seen.torn_tail = bool(tail)
    for number, raw in enumerate(lines, 1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if number == len(lines) and not tail:
                seen.torn_tail = True  # a last line that does not parse is a torn tail
            elif GARBAGE not in raw:
                seen.bad_middle += 1
            continue
        if number == 1:
            seen.header_ok = record.get("agent_resume") == 1 and record.get("job_id") == JOB
            continue
        if "id" in record and record.get("status", "done") == "done":
            seen.done[str(record["id"])] += 1
    return seen


def read_sqlite(path: str) -> Observed:
    seen = Observed()
    if not os.path.exists(path):
        return seen
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            rows = conn.execute(COMPLETIONS).fetchall()
            (events,) = conn.execute("SELECT count(*) FROM events WHERE kind = 'done'").fetchone()
        except sqlite3.OperationalError:
            return seen  # killed before the schema was made
    finally:
        conn.close()
    seen.done.update(r[0] for r in rows)
    # One place among the records per completion: a 'done' event (schema version 1) or after_seq.
    placed = sum(r[2] is not None for r in rows)
    seen.bad_middle = abs(events + placed - len(rows))
    return seen


def read_postgres(url: str) -> Observed:
    import psycopg

    seen = Observed()
    dsn, _, schema = url.partition("?schema=")
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = 'completions'",
            (schema,),
        ).fetchone()
        if not exists or not exists[0]:
            return seen
        rows = conn.execute(f"SELECT item_id FROM {schema}.completions").fetchall()
        events = conn.execute(
            f"SELECT count(*) FROM {schema}.events WHERE kind = 'done'"
        ).fetchone()
        has_seq = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'completions' AND column_name = 'seq'",
            (schema,),
        ).fetchone()
        placed = (
            conn.execute(f"SELECT count(DISTINCT seq) FROM {schema}.completions").fetchone()
            if has_seq and has_seq[0]
            else None
        )
    seen.done.update(r[0] for r in rows)
    # One place among the records per completion: a 'done' event (schema version 1)
    # or its own distinct seq (schema version 2).
    seen.bad_middle = abs((events[0] if events else 0) + (placed[0] if placed else 0) - len(rows))
    return seen


# -- the kill campaign ---------------------------------------------------------------


class Campaign:
    """Kills children of one target again and again, checking after every kill."""

    def __init__(self, target: Target, workdir: Path, seed: int, pg_dsn: str | None = None) -> None:
        self.t = target
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(f"{target.name}-{seed}")
        self.pg_dsn = pg_dsn
        self.tally = Tally(target.name)
        self.cycle = 0
        self.items = {f"item-{i:05d}" for i in range(target.items)}
        self._reset()

    # The checkpoint, one per cycle (a cycle ends when the job completes).

    def _reset(self) -> None:
        self.cycle += 1
        self.acked: set[str] = set()
        self.begun: set[str] = set()
        self.in_flight_at_crash: dict[str, int] = {}  # item -> crash number
        self.rerun_per_crash: Counter[int] = Counter()
        if self.t.target == "postgres":
            assert self.pg_dsn, "the postgres target needs a DSN"
            self.location = f"{self.pg_dsn}?schema=torture_{os.getpid()}_{self.cycle}"
        elif self.t.target == "sqlite":
            self.location = str(self.dir / f"c{self.cycle}" / "job.db")
        else:
            self.location = str(self.dir / f"c{self.cycle}" / "job.jsonl")

    def observe(self) -> Observed:
        if self.t.target == "sqlite":
            return read_sqlite(self.location)
        if self.t.target == "postgres":
            return read_postgres(self.location)
        try:
            data = Path(self.location).read_bytes()
        except FileNotFoundError:
            return Observed()
        return read_jsonl(data)

    def spec(self, target: str, phase: str | None) -> dict[str, Any]:
        return {
            "target": target,
            "path": self.location,
            "durability": self.t.durability,
            "items": self.t.items,
            "phase": phase,
            "phase_at": self.rng.randint(1, 10),
            "concurrency": self.t.concurrency,
            "work_seconds": self.t.work_seconds,
        }

    def round(self) -> None:
        """One child (for maintenance targets: a job child, then a maintenance child)."""
        if self.t.target in ("repair", "compact"):
            self._job_round("results", self.rng.choice([None, None, "write-mid", "work"]))
            self._maintenance_round()
        else:
            self._job_round(self.t.target, self.rng.choice(self.t.phases))

    def _prepare(self, phase: str | None) -> None:
        if phase and phase.startswith("open-cut") and os.path.exists(self.location):
            # Recovery must cut a torn tail: leave one, as a kill inside a write does.
            with open(self.location, "ab") as f:
                f.write(b'{"id": "item-torn-by-the-harness", "ts": 17')

    def _job_round(self, target: str, phase: str | None) -> None:
        self._prepare(phase)
        child = Child(self.spec(target, phase))
        try:
            killed = self._kill(child, phase)
            code = child.finish()
            if not killed and code != 0:
                self.tally.unexpected += 1
                self.tally.problem(f"child exited {code}: {child.error_text()}")
            self._account(child, killed, phase)
        finally:
            child.close()

    def _maintenance_round(self) -> None:
        if not os.path.exists(self.location):
            return
        phase = self.rng.choice(self.t.phases)
        if self.t.target == "repair" and Path(self.location).read_bytes().endswith(b"\n"):
            # A corrupt middle line once the next record is appended: repair must drop it.
            with open(self.location, "ab") as f:
                f.write(GARBAGE + b" injected for repair to drop\n")
        child = Child({**self.spec(self.t.target, phase), "phase_at": 1})
        try:
            killed = self._kill(child, phase)
            code = child.finish()
            if not killed and code != 0:
                self.tally.unexpected += 1
                self.tally.problem(f"{self.t.target} exited {code}: {child.error_text()}")
            if killed:
                self.tally.kills += 1
                self.tally.phases[f"{self.t.target}:{phase or 'random'}"] += 1
            self.tally.rounds += 1
            self._check()
        finally:
            child.close()
        leftovers = [p for p in os.listdir(os.path.dirname(self.location)) if ".tmp-" in p]
        self.tally.leftovers = max(self.tally.leftovers, len(leftovers))

    def _kill(self, child: Child, phase: str | None) -> bool:
        if phase is None:
            child.ready.wait(30)
            if child.ended.is_set():
                return False
            time.sleep(self.rng.uniform(0, self.t.max_delay))
            return child.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if child.paused.wait(0.01):
                return child.kill()
            if child.ended.is_set():
                return False
        return child.kill()

    def _account(self, child: Child, killed: bool, phase: str | None) -> None:
        tally = self.tally
        tally.rounds += 1
        crash = tally.kills + 1 if killed else 0
        begun_now = child.ids("begin")
        acked_now = set(child.ids("ack"))
        for item in begun_now:
            if item in self.acked:
                tally.unexpected += 1
                tally.problem(f"{item} was begun again after it was acknowledged")
            elif item in self.begun:
                tally.rerun += 1
                origin = self.in_flight_at_crash.pop(item, None)
                if origin is None:
                    tally.unexpected += 1
                    tally.problem(f"{item} was run again but was not in flight at a crash")
                else:
                    self.rerun_per_crash[origin] += 1
                    tally.max_rerun_per_crash = max(
                        tally.max_rerun_per_crash, self.rerun_per_crash[origin]
                    )
        self.begun.update(begun_now)
        self.acked |= acked_now
        tally.acked += len(acked_now)
        if killed:
            tally.kills += 1
            tally.phases[phase or "random"] += 1
            in_flight = set(begun_now) - acked_now
            tally.in_flight += len(in_flight)
            tally.max_in_flight = max(tally.max_in_flight, len(in_flight))
            if len(in_flight) > max(self.t.concurrency, 1):
                tally.unexpected += 1
                tally.problem(
                    f"{len(in_flight)} items in flight at concurrency {self.t.concurrency}"
                )
            for item in in_flight:
                self.in_flight_at_crash[item] = crash
        self._check()

    def _check(self) -> None:
        tally = self.tally
        seen = self.observe()
        tally.torn_tails += seen.torn_tail
        lost = self.acked - set(seen.done)
        if lost:
            tally.lost += len(lost)
            tally.problem(f"acknowledged then lost: {sorted(lost)[:5]}")
            self.acked -= lost  # count each loss once
        doubled = [i for i, n in seen.done.items() if n > 1]
        if doubled:
            tally.doubled += len(doubled)
            tally.problem(f"recorded twice: {doubled[:5]}")
        strangers = set(seen.done) - self.items
        never_begun = (set(seen.done) & self.items) - self.begun
        bad = len(strangers) + len(never_begun) + seen.bad_middle + (not seen.header_ok)
        if bad:
            tally.unexpected += bad
            tally.problem(
                f"unexpected: strangers={sorted(strangers)[:3]} never_begun="
                f"{sorted(never_begun)[:3]} bad_middle={seen.bad_middle} header_ok={seen.header_ok}"
            )
        if set(seen.done) >= self.items:
            tally.completed_jobs += 1
            self._reset()

    def finish_job(self) -> None:
        """Run the job to its end without a kill, and check every item is done exactly once."""
        if self.t.target != "postgres" and not os.path.exists(self.location):
            return  # the last cycle completed; nothing of this one was begun
        target = "results" if self.t.target in ("repair", "compact") else self.t.target
        cycle = self.cycle
        child = Child(self.spec(target, None))
        try:
            code = child.finish(600)
            if code != 0:
                self.tally.unexpected += 1
                self.tally.problem(f"the last child exited {code}: {child.error_text()}")
                return
            self._account(child, False, None)
        finally:
            child.close()
        if self.cycle == cycle:
            self.tally.unexpected += 1
            self.tally.problem("a run without a kill did not complete the job")

    def run(self, kills: int) -> Tally:
        rounds = 0
        while self.tally.kills < kills:
            rounds += 1
            if rounds > kills * 4 + 20:
                self.tally.problem("children kept finishing before the kill")
                self.tally.unexpected += 1
                break
            self.round()
        self.finish_job()
        return self.tally


def split_kills(total: int, names: list[str] | None = None) -> dict[str, int]:
    """Share ``total`` kills among the campaigns (every campaign gets at least 5)."""
    names = names or list(SHARES)
    weight = sum(SHARES[n] for n in names)
    return {n: max(5, round(total * SHARES[n] / weight)) for n in names}


# -- simulated power loss ------------------------------------------------------------


@dataclass
class PowerTally:
    """The counts of a power-loss campaign."""

    name: str
    cuts: int = 0
    acked: int = 0
    acked_durable: int = 0
    lost_durable: int = 0
    lost_in_window: int = 0
    cut_bytes: int = 0
    files_dropped: int = 0
    max_sync_lag_ms: float = 0.0
    max_window_loss_age_ms: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost_durable

    def row(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "cuts": self.cuts,
            "acked": self.acked,
            "acked_durable": self.acked_durable,
            "lost_durable": self.lost_durable,
            "lost_in_window": self.lost_in_window,
            "cut_bytes": self.cut_bytes,
            "files_dropped": self.files_dropped,
            "max_sync_lag_ms": round(self.max_sync_lag_ms, 2),
            "max_window_loss_age_ms": round(self.max_window_loss_age_ms, 2),
        }


POWER_PHASES = [None, None, None, "sync-before", "sync-after", "write-mid", "write-after"]


@dataclass
class PowerCut:
    """The outcome of one child run and one simulated power cut."""

    acked: list[tuple[str, float]]
    durable_length: int | None
    dropped: bool
    survivors: set[str]
    last_sync_start: float | None
    syncs: list[tuple[int, float]]
    killed_at: float | None
    cut_bytes: int = 0


def power_cut(
    path: Path, spec: dict[str, Any], rng: random.Random, max_delay: float = 0.05
) -> PowerCut:
    """Run a child with fsyncs traced, kill it, and cut the files back to what was synced.

    A file keeps only the bytes of its last successful fsync (or what it held
    when the child started, taken as synced); a file or directory created by
    the child survives only if its parent directory was synced after.
    """
    real = os.path.realpath(path)
    created: list[str] = []
    probe = real
    while not os.path.exists(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    start_length = os.path.getsize(real) if not created else 0
    child = Child({**spec, "path": str(path), "trace_sync": True})
    try:
        phase = spec.get("phase")
        if phase is None:
            child.ready.wait(30)
            time.sleep(rng.uniform(0, max_delay))
        else:
            deadline = time.monotonic() + 30
            while not child.paused.wait(0.01) and not child.ended.is_set():
                if time.monotonic() > deadline:
                    break
        child.kill()
        child.finish()
    finally:
        child.close()
    syncs: list[tuple[int, float]] = []
    dirsyncs: set[str] = set()
    acked: list[tuple[str, float]] = []
    for line in child.lines:
        parts = line.split()
        if parts[0] == "synced" and parts[1] == real:
            syncs.append((int(parts[2]), float(parts[3])))
        elif parts[0] == "dirsync":
            dirsyncs.add(parts[1])
        elif parts[0] == "ack":
            acked.append((parts[1], float(parts[2])))
    dropped = any(os.path.dirname(entry) not in dirsyncs for entry in created)
    if dropped:
        top = created[-1]
        if os.path.isdir(top):
            import shutil

            shutil.rmtree(top)
        else:
            os.unlink(top)
        return PowerCut(acked, None, True, set(), None, syncs, child.killed_at)
    durable = syncs[-1][0] if syncs else start_length
    size = os.path.getsize(real)
    os.truncate(real, min(durable, size))
    survivors = set(read_jsonl(Path(real).read_bytes()).done) if os.path.exists(real) else set()
    last_start = syncs[-1][1] if syncs else None
    return PowerCut(
        acked, durable, False, survivors, last_start, syncs, child.killed_at, max(0, size - durable)
    )


def power_campaign(
    durability: str, cuts: int, workdir: Path, seed: int, items: int = 400
) -> PowerTally:
    """Kill a ``fsync`` or ``group`` job ``cuts`` times, simulating a power cut each time."""
    # An existing directory: new directories are another story (see test_power_loss.py).
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"power-{durability}-{seed}")
    tally = PowerTally(f"power-{durability}")
    cycle = 0
    path = workdir / "power-0.jsonl"
    all_acked: set[str] = set()
    while tally.cuts < cuts:
        if not path.exists() or len(all_acked) >= items:
            cycle += 1
            path = workdir / f"power-{cycle}.jsonl"
            all_acked = set()
        spec = {
            "target": "jsonl",
            "durability": durability,
            "items": items,
            "phase": rng.choice(POWER_PHASES),
            "phase_at": rng.randint(1, 20),
        }
        cut = power_cut(path, spec, rng)
        tally.cuts += 1
        tally.acked += len(cut.acked)
        if cut.dropped:
            # Killed before the new file's directory entry was synced: fine while
            # nothing was acknowledged yet.
            tally.files_dropped += 1
            lost = len(cut.acked) + len(all_acked)
            if lost:
                tally.lost_durable += lost
                tally.problems.append(f"{path.name}: dropped with {lost} acknowledged items")
            all_acked = set()
            continue
        tally.cut_bytes += cut.cut_bytes
        for item, acked_at in cut.acked:
            covered = [start for _, start in cut.syncs if start >= acked_at]
            if covered:
                tally.max_sync_lag_ms = max(tally.max_sync_lag_ms, (covered[0] - acked_at) * 1000)
            must_survive = durability == "fsync" or (
                cut.last_sync_start is not None and acked_at <= cut.last_sync_start
            )
            tally.acked_durable += must_survive
            if item in cut.survivors:
                all_acked.add(item)
            elif must_survive:
                tally.lost_durable += 1
                tally.problems.append(f"{item} acknowledged as durable and lost")
            else:
                tally.lost_in_window += 1
                if cut.killed_at is not None:
                    age = (cut.killed_at - acked_at) * 1000
                    tally.max_window_loss_age_ms = max(tally.max_window_loss_age_ms, age)
        lost_earlier = all_acked - cut.survivors
        if lost_earlier:
            tally.lost_durable += len(lost_earlier)
            tally.problems.append(f"earlier acknowledged items lost: {sorted(lost_earlier)[:5]}")
            all_acked -= lost_earlier
    return tally
