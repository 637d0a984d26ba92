"""Run the full torture campaign and print its Jepsen-style counts.

    python tools/torture.py                 # 1,200 kills + 2 x 100 power cuts
    python tools/torture.py --kills 300     # about the CI subset
    python tools/torture.py --kills 0 --power 0 --files 400   # only the file attacks
    python tools/torture.py --json out.json

The PostgreSQL campaign needs ``AGENT_RESUME_PG_DSN`` (``eval "$(bash
.ci/postgres.sh start)"``); without it that campaign is skipped and the
output says so. The campaigns themselves live in
``tests/torture/_torture_harness.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "torture"))

import _torture_files as file_attacks
import _torture_harness as harness
import _torture_run_faults as run_faults
import _torture_sqlite_power as sqlite_power

KILL_COLUMNS = [
    "kills",
    "acked",
    "lost",
    "doubled",
    "unexpected",
    "in_flight",
    "rerun",
    "max_in_flight",
    "max_rerun_per_crash",
    "torn_tails",
    "completed_jobs",
]
POWER_COLUMNS = [
    "cuts",
    "acked",
    "acked_durable",
    "lost_durable",
    "lost_in_window",
    "files_dropped",
    "max_sync_lag_ms",
    "max_window_loss_age_ms",
]


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Format rows as a plain-text table."""
    head = ["campaign", *columns]
    cells = [[str(r.get(c, "")) for c in head] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(head)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def drop_pg_schemas(dsn: str) -> None:
    """Drop the schemas this process's PostgreSQL campaign made."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        names = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"torture_{os.getpid()}_%",)
        ).fetchall()
        for (name,) in names:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def main() -> int:
    """Run every campaign; exit 1 if any counted a problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--kills", type=int, default=1200, help="kills shared by the campaigns (0: skip them)"
    )
    parser.add_argument("--power", type=int, default=100, help="power cuts per durability mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="run only these kill campaigns")
    parser.add_argument(
        "--files", type=int, default=400, help="rounds of the file attacks (0: skip them)"
    )
    parser.add_argument(
        "--run-faults",
        type=int,
        default=200,
        help="rounds of the run-fault campaign (0: skip it)",
    )
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args()

    dsn = os.environ.get("AGENT_RESUME_PG_DSN")
    names = args.only or (list(harness.SHARES) if args.kills else [])
    skipped = []
    if "postgres" in names and not dsn:
        names.remove("postgres")
        skipped.append("postgres (AGENT_RESUME_PG_DSN is not set)")
    kills = harness.split_kills(args.kills, names)
    started = time.monotonic()
    kill_rows: list[dict[str, object]] = []
    power_rows: list[dict[str, object]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agent-resume-torture-") as tmp:
        for name in names:
            t0 = time.monotonic()
            campaign = harness.Campaign(
                harness.TARGETS[name], Path(tmp) / name, seed=args.seed, pg_dsn=dsn
            )
            tally = campaign.run(kills[name])
            row = tally.row()
            row["seconds"] = round(time.monotonic() - t0, 1)
            kill_rows.append(row)
            problems += [f"{name}: {p}" for p in tally.problems]
            print(f"{name}: {row}", file=sys.stderr, flush=True)
        for mode in ("fsync", "group") if args.power else ():
            t0 = time.monotonic()
            power = harness.power_campaign(
                mode, args.power, Path(tmp) / f"power-{mode}", seed=args.seed, items=3000
            )
            row = power.row()
            row["seconds"] = round(time.monotonic() - t0, 1)
            power_rows.append(row)
            problems += [f"power-{mode}: {p}" for p in power.problems]
            print(f"power-{mode}: {row}", file=sys.stderr, flush=True)
        sqlite_rows: list[dict[str, object]] = []
        shim = sqlite_power.build_shim(Path(tmp)) if args.power else None
        if args.power and shim is None:
            skipped.append("sqlite power cuts (no C compiler for the fsync shim)")
        for mode in ("fsync", "flush") if shim is not None else ():
            t0 = time.monotonic()
            cuts = max(1, args.power // 4)
            sql_tally = sqlite_power.campaign(
                mode, cuts, Path(tmp) / f"sqlite-power-{mode}", shim, seed=args.seed
            )
            row = sql_tally.row()
            row["seconds"] = round(time.monotonic() - t0, 1)
            sqlite_rows.append(row)
            problems += [f"sqlite-power-{mode}: {p}" for p in sql_tally.problems]
            print(f"sqlite-power-{mode}: {row}", file=sys.stderr, flush=True)
        file_rows: list[dict[str, object]] = []
        if args.files:
            t0 = time.monotonic()
            for tally in file_attacks.run_all(args.files, Path(tmp) / "files", seed=args.seed):
                file_rows.append(tally.row())
                problems += [f"files-{tally.name}: {p}" for p in tally.problems]
            print(f"file attacks: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        fault_rows: list[dict[str, object]] = []
        if args.run_faults:
            t0 = time.monotonic()
            rng = random.Random(f"{args.seed}-run-faults")
            faults = run_faults.run_faults(args.run_faults, Path(tmp) / "run-faults", rng)
            row = faults.row()
            row["seconds"] = round(time.monotonic() - t0, 1)
            fault_rows.append(row)
            problems += [f"run-faults: {p}" for p in faults.problems]
            print(f"run-faults: {row}", file=sys.stderr, flush=True)
    if dsn and "postgres" in names:
        drop_pg_schemas(dsn)

    summed = [c for c in KILL_COLUMNS if not c.startswith("max_")]
    total: dict[str, object] = {c: sum(int(str(r[c])) for r in kill_rows) for c in summed}
    for column in ("max_in_flight", "max_rerun_per_crash"):
        total[column] = max((int(str(r[column])) for r in kill_rows), default=0)
    print(table([*kill_rows, {"campaign": "TOTAL", **total}], [*KILL_COLUMNS, "seconds"]))
    print()
    if power_rows:
        print(table(power_rows, [*POWER_COLUMNS, "seconds"]))
        print()
    if sqlite_rows:
        print(table(sqlite_rows, [*sqlite_power.COLUMNS, "seconds"]))
        print()
    if file_rows:
        print(table(file_rows, file_attacks.COLUMNS))
        print()
    if fault_rows:
        print(table(fault_rows, [*run_faults.COLUMNS, "seconds"]))
        print()
    for row in kill_rows:
        print(f"{row['campaign']} phases: {row['phases']}")
    for text in skipped:
        print(f"skipped: {text}")
    print(f"finished in {time.monotonic() - started:.0f} s; problems: {len(problems)}")
    for text in problems:
        print("  " + text)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "kills": kill_rows,
                    "power": power_rows,
                    "sqlite_power": sqlite_rows,
                    "files": file_rows,
                    "run_faults": fault_rows,
                    "skipped": skipped,
                },
                indent=2,
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
