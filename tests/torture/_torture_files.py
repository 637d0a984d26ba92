"""File attacks on the JSONL store (issue 17): other names, foreign files, deep and long lines, forks.

Each campaign repeats one class of attack with random choices and counts
what went wrong, in the Jepsen style of the kill campaigns:

- ``aliases``: a second session, ``repair`` and ``compact`` reach a held job
  through a symlink, a chain of symlinks, a hard link or a ``..`` path;
  every one must be refused, and every acknowledged completion survive once.
- ``foreign``: an items file, a Rust agent-resume checkpoint, other JSON or
  text is opened, repaired and compacted; each must be refused with
  ``NotACheckpointError`` and left byte for byte as it was.
- ``deep``: lines nested up to 100,000 deep are put into a checkpoint; loading,
  ``read_records``, ``repair --dry-run`` and ``compact`` must skip them,
  never raise ``RecursionError``, and keep every valid record.
- ``blank``: blank lines anywhere; strict loading must give the same state
  without a warning.
- ``long``: lines of up to a few MB with a small read block; the state must be
  exact (the cost is linear; the test of that lives in test_jsonl_files.py).
- ``fork``: a job forks a ``multiprocessing`` child and is SIGKILLed; the job
  must reopen at once (the child keeps no lock) with nothing lost.

Run by ``tools/torture.py`` (``--files N``) and, smaller, by
``test_file_attacks.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_resume import (
    AgentResume,
    JobLockedError,
    JsonlStore,
    NotACheckpointError,
    ResultJsonlStore,
)
from agent_resume.stores import _jsonl_read
from agent_resume.stores._jsonl_maint import compact, repair

COLUMNS = ["attempts", "refused", "lost", "doubled", "not_refused", "changed", "crashed"]
HEADER = json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}) + "\n"


@dataclass
class Tally:
    """The counts of one campaign."""

    name: str
    attempts: int = 0
    refused: int = 0  # refusals that were due (JobLockedError, NotACheckpointError)
    lost: int = 0  # acknowledged completions missing afterwards
    doubled: int = 0  # completions recorded more than once
    not_refused: int = 0  # an attack that should have been refused went through
    changed: int = 0  # a refused file whose bytes changed
    crashed: int = 0  # any other exception (RecursionError, a traceback)
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        """The counts as a table row."""
        return {"campaign": self.name, **{c: getattr(self, c) for c in COLUMNS}}

    def problem(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 20:
            self.problems.append(f"{kind}: {text}")


def _done_lines(path: Path) -> list[str]:
    ids = []
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and "id" in record and record.get("status", "done") == "done":
            ids.append(str(record["id"]))
    return ids


def aliases(n: int, root: Path, rng: random.Random) -> Tally:
    """Reach a held job through another name; everything must be refused."""
    tally = Tally("aliases")
    for i in range(n):
        base = root / f"a{i}"
        (base / "data").mkdir(parents=True)
        real = base / "data" / "real.jsonl"
        kind = rng.choice(["symlink", "chain", "hardlink", "dotdot", "relative"])
        acked: list[str] = []
        with AgentResume(JsonlStore(real)).resume_or_start("job") as s:
            s.mark_done("seed")
            acked.append("seed")
        if kind == "symlink":
            other = base / "link.jsonl"
            other.symlink_to(real)
        elif kind == "chain":
            (base / "mid.jsonl").symlink_to(real)
            other = base / "link.jsonl"
            other.symlink_to(base / "mid.jsonl")
        elif kind == "hardlink":
            other = base / "hard.jsonl"
            os.link(real, other)
        elif kind == "dotdot":
            other = base / "data" / ".." / "data" / "real.jsonl"
        else:
            other = base / "rel.jsonl"
            other.symlink_to(Path("data") / "real.jsonl")
        holder, intruder = (real, other) if rng.random() < 0.5 else (other, real)
        if rng.random() < 0.3:
            with open(real, "ab") as f:
                f.write(b'{"id": "torn", "t')  # a torn tail the intruder would cut
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with AgentResume(JsonlStore(holder)).resume_or_start("job") as s:
                for attack in ("open", "repair", "compact"):
                    tally.attempts += 1
                    try:
                        if attack == "open":
                            intruder_session = AgentResume(JsonlStore(intruder)).resume_or_start(
                                "job"
                            )
                            intruder_session.mark_done(f"x{i}")
                            intruder_session.close()
                        elif attack == "repair":
                            repair(intruder, dry_run=rng.random() < 0.5)
                        else:
                            compact(intruder)
                    except JobLockedError as exc:
                        tally.refused += 1
                        if exc.pid != os.getpid():
                            tally.problem("crashed", f"{kind}: wrong PID {exc.pid}")
                    except Exception as exc:
                        tally.problem("crashed", f"{kind} {attack}: {type(exc).__name__}: {exc}")
                    else:
                        tally.problem("not_refused", f"{kind} {attack} went through")
                    item = f"{attack}-{i}"
                    s.mark_done(item)
                    acked.append(item)
        done = _done_lines(real)
        for item in acked:
            if item not in done:
                tally.problem("lost", f"{kind}: {item}")
        for item in set(done):
            if done.count(item) > 1:
                tally.problem("doubled", f"{kind}: {item}")
    return tally


def _foreign_content(rng: random.Random) -> bytes:
    kind = rng.choice(["items", "rust", "json", "text", "one-line", "array"])
    n = rng.randint(1, 5)
    if kind == "items":
        lines = [json.dumps({"id": f"i{k}", "text": "x" * rng.randint(0, 20)}) for k in range(n)]
    elif kind == "rust":
        lines = [
            json.dumps(
                {
                    "completed_items": list(range(k + 1)),
                    "state": {},
                    "timestamp": 1.5,
                    "turn": k + 1,
                },
                separators=(",", ":"),
            )
            for k in range(n)
        ]
    elif kind == "json":
        lines = [json.dumps({"name": k, "ts": "not an int"}) for k in range(n)]
    elif kind == "text":
        lines = [f"line {k} of some notes" for k in range(n)]
    elif kind == "array":
        lines = [json.dumps([k, k + 1]) for k in range(n)]
    else:
        return json.dumps({"id": "a", "prompt": "hi"}).encode()  # no newline at all
    data = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
    return data.encode()


def foreign(n: int, root: Path, rng: random.Random) -> Tally:
    """Open, repair and compact files that are not checkpoints."""
    tally = Tally("foreign")
    for i in range(n):
        path = root / f"f{i}.jsonl"
        data = _foreign_content(rng)
        path.write_bytes(data)
        attacks: list[Callable[[Path], Any]] = [
            lambda p: AgentResume(JsonlStore(p)).resume_or_start("job").mark_done("z"),
            lambda p: AgentResume(ResultJsonlStore(p, strict=True)).resume_or_start("job"),
            repair,
            lambda p: repair(p, dry_run=True),
            compact,
            lambda p: list(JsonlStore(p).iter_records()),
        ]
        for attack in attacks:
            tally.attempts += 1
            try:
                attack(path)
            except NotACheckpointError:
                tally.refused += 1
            except Exception as exc:
                tally.problem("crashed", f"{data[:30]!r}: {type(exc).__name__}: {exc}")
            else:
                tally.problem("not_refused", f"{data[:30]!r}")
            if path.read_bytes() != data:
                tally.problem("changed", f"{data[:30]!r}")
                path.write_bytes(data)
    return tally


def _checkpoint(rng: random.Random, n: int) -> tuple[list[str], set[str]]:
    lines = [HEADER]
    done = set()
    for k in range(n):
        item = f"item-{k}"
        if rng.random() < 0.3:
            lines.append(json.dumps({"id": item, "ts": 1, "usage": {"input_tokens": k}}) + "\n")
        else:
            lines.append(f'{{"id": "{item}", "ts": 1}}\n')
        done.add(item)
    return lines, done


def _load_quiet(path: Path, strict: bool = False) -> _jsonl_read.LoadResult:
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore")
        return _jsonl_read.load(f, str(path), strict=strict)


def deep(n: int, root: Path, rng: random.Random) -> Tally:
    """Put deeply nested lines into a checkpoint; read it every way."""
    tally = Tally("deep")
    for i in range(n):
        lines, done = _checkpoint(rng, rng.randint(1, 30))
        bad = 0
        for _ in range(rng.randint(1, 3)):
            depth = rng.choice([201, 1000, 5000, 100_000])
            opener = rng.choice(["[", '{"a": '])
            line = opener * depth + ("" if rng.random() < 0.5 else "]" * depth)
            lines.insert(rng.randint(1, len(lines)), line + "\n")
            bad += 1
        lines.append('{"id": "last", "ts": 1}\n')
        done.add("last")
        path = root / f"d{i}.jsonl"
        path.write_text("".join(lines))
        for attack in ("load", "records", "dry-run", "compact"):
            tally.attempts += 1
            try:
                if attack == "load":
                    result = _load_quiet(path)
                    if result.state.done != done:
                        tally.problem("lost", f"load: {sorted(done - result.state.done)[:3]}")
                    if result.state.bad_lines != bad:
                        tally.problem("crashed", f"{result.state.bad_lines} bad lines, not {bad}")
                elif attack == "records":
                    with open(path, "rb") as f:
                        list(_jsonl_read.read_records(f, str(path)))
                elif attack == "dry-run":
                    if len(repair(path, dry_run=True).dropped) != bad:
                        tally.problem("crashed", "dry run miscounted")
                else:
                    compact(path)
                    if _load_quiet(path, strict=True).state.done != done:
                        tally.problem("lost", "compact")
            except Exception as exc:
                tally.problem("crashed", f"{attack}: {type(exc).__name__}")
    return tally


def blank(n: int, root: Path, rng: random.Random) -> Tally:
    """Blank lines anywhere: strict loading gives the same state, without a warning."""
    tally = Tally("blank")
    for i in range(n):
        lines, done = _checkpoint(rng, rng.randint(0, 20))
        if rng.random() < 0.3:
            lines = lines[1:]  # the original, headerless format
            if not lines:
                lines = ['{"id": "only", "ts": 1}\n']
                done = {"only"}
        for _ in range(rng.randint(1, 5)):
            lines.insert(rng.randint(0, len(lines)), rng.choice(["\n", "  \n", "\t\r\n", "\r\n"]))
        path = root / f"b{i}.jsonl"
        path.write_text("".join(lines))
        tally.attempts += 1
        try:
            with warnings.catch_warnings(), open(path, "rb") as f:
                warnings.simplefilter("error")
                result = _jsonl_read.load(f, str(path), strict=True)
            if result.state.done != done:
                tally.problem("lost", f"{sorted(done - result.state.done)[:3]}")
        except Exception as exc:
            tally.problem("crashed", f"{type(exc).__name__}: {exc}")
    return tally


def long_lines(n: int, root: Path, rng: random.Random) -> Tally:
    """Lines many blocks long, read with a small block: the state must be exact."""
    tally = Tally("long")
    saved = _jsonl_read._BLOCK
    _jsonl_read._BLOCK = 4096
    try:
        for i in range(n):
            lines, done = _checkpoint(rng, rng.randint(0, 10))
            for k in range(rng.randint(1, 3)):
                size = rng.randint(4096, 2 << 20)
                item = f"long-{k}"
                record = {"id": item, "ts": 1, "result": "y" * size}
                lines.insert(rng.randint(1, len(lines)), json.dumps(record) + "\n")
                done.add(item)
            path = root / f"l{i}.jsonl"
            path.write_text("".join(lines) + ('{"id": "torn", "ts"' if rng.random() < 0.5 else ""))
            tally.attempts += 1
            try:
                if _load_quiet(path).state.done != done:
                    tally.problem("lost", "long lines")
                with open(path, "rb") as f:
                    n_records = sum(1 for _ in _jsonl_read.read_records(f, str(path)))
                if n_records < len(done):
                    tally.problem("lost", "read_records")
            except Exception as exc:
                tally.problem("crashed", f"{type(exc).__name__}: {exc}")
    finally:
        _jsonl_read._BLOCK = saved
    return tally


_FORK_HOLDER = """
import multiprocessing, sys, time
from agent_resume import AgentResume, JsonlStore
s = AgentResume(JsonlStore(sys.argv[1])).resume_or_start("job")
for k in range(int(sys.argv[2])):
    s.mark_done(f"item-{k}")
ctx = multiprocessing.get_context("fork")
ready = ctx.Event()

def child(ready):
    ready.set()  # runs after the at-fork hooks: the child has let the lock go
    time.sleep(60)

p = ctx.Process(target=child, args=(ready,))
p.start()
ready.wait(30)
print(p.pid, flush=True)
time.sleep(60)
"""


def fork(n: int, root: Path, rng: random.Random) -> Tally:
    """A job with a forked child is SIGKILLed; the job reopens at once with nothing lost."""
    tally = Tally("fork")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for i in range(n):
        path = root / f"k{i}.jsonl"
        count = rng.randint(1, 50)
        parent = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_FORK_HOLDER), str(path), str(count)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        child = 0
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait()
            tally.attempts += 1
            try:
                with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
                    missing = [k for k in range(count) if not s.is_done(f"item-{k}")]
                if missing:
                    tally.problem("lost", f"{len(missing)} items")
            except JobLockedError as exc:
                tally.problem("not_refused", f"still locked by {exc.pid} (child {child})")
            except Exception as exc:
                tally.problem("crashed", f"{type(exc).__name__}: {exc}")
        finally:
            for pid in (parent.pid, child):
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            parent.wait()
            if parent.stdout is not None:
                parent.stdout.close()
    return tally


CAMPAIGNS: dict[str, tuple[Callable[[int, Path, random.Random], Tally], float]] = {
    # name: (campaign, share of the attempts asked for)
    "aliases": (aliases, 1.0),
    "foreign": (foreign, 1.0),
    "deep": (deep, 0.5),
    "blank": (blank, 1.0),
    "long": (long_lines, 0.1),
    "fork": (fork, 0.05),
}


def run_all(n: int, root: Path, seed: int = 1) -> list[Tally]:
    """Run every campaign with ``n`` rounds (scaled by its share; at least 2 each)."""
    tallies = []
    for name, (campaign, share) in CAMPAIGNS.items():
        where = root / name
        where.mkdir(parents=True, exist_ok=True)
        tallies.append(campaign(max(2, int(n * share)), where, random.Random(f"{seed}-{name}")))
    return tallies
