"""``status``, ``report`` and ``export``: reading a job without touching it."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

from agent_resume._accounting._ledger import Ledger
from agent_resume._accounting._prices import PriceTable
from agent_resume._cli._exits import CliError
from agent_resume._cli._output import STDIO, open_output
from agent_resume._cli._reports import (
    ITEM_COLUMNS,
    ItemFolder,
    RunFolder,
    report_document,
    warn_malformed,
    warn_unpriced,
)
from agent_resume._cli._targets import (
    StoreView,
    file_of,
    inspect_store,
    job_max_attempts,
    open_cli_store,
    quarantined_ids,
    read_items,
    results_of,
)
from agent_resume._fingerprint import content_fingerprint
from agent_resume._render import format_cost, format_duration, format_timestamp, masked_url
from agent_resume._schema import (
    RUN_STOP_REASONS,
    SCHEMA,
    SCHEMA_VERSION,
    USAGE_FIELDS,
    check,
    known_cost,
    timestamp_json,
    usage_json,
)

__all__ = ["register"]

_SHOWN_IDS = 10


def register(sub: Any) -> None:
    """Add the ``status``, ``report`` and ``export`` subcommands."""
    p = sub.add_parser(
        "status",
        help="show a job: done, failed, quarantined, its last runs",
        description="Show what a store holds: the job, items done, failed and quarantined, "
        "and its last runs with their stop reasons, tokens and cost. Given --items, also "
        "compare the store with an input: new, changed and vanished items.",
    )
    p.add_argument("store", help="a .jsonl path, a .db path, sqlite:///path.db or postgresql://...")
    p.add_argument("--items", metavar="FILE.jsonl", help="an input to compare the store with")
    p.add_argument("--key", metavar="FIELD", help="the field of each item holding its ID")
    p.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="failed attempts after which an item counts as quarantined "
        "(default: what the last run recorded, else 3)",
    )
    p.add_argument(
        "--runs", type=_non_negative, default=5, metavar="N", help="runs to show (default 5)"
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=status)

    p = sub.add_parser(
        "report",
        help="per-item token and cost report",
        description="Print the tokens and cost of every item (failed attempts included) "
        "and the total, summed from the usage recorded in the checkpoint.",
    )
    p.add_argument("store", help="a .jsonl path, a .db path, sqlite:///path.db or postgresql://...")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--items",
        metavar="FILE.jsonl",
        help="the input, to list items in its order (default: sorted by ID); - is stdin",
    )
    p.add_argument("--key", metavar="FIELD", help="the field of each item holding its ID")
    p.add_argument(
        "--no-total", action="store_true", help="leave out the total row (always last otherwise)"
    )
    p.add_argument(
        "--prices",
        metavar="FILE",
        help="re-price with a JSON or TOML price table: records of the models it names, "
        "and records whose cost was unknown",
    )
    p.set_defaults(func=report)

    p = sub.add_parser(
        "export",
        help="write the results of the items done",
        description="Write (item ID, result) of every item done, latest completion per "
        'item. JSONL gives one {"id": ..., "result": ...} per line; CSV gives an id '
        "column and one column per key when every result is an object, else a result column.",
    )
    p.add_argument("store", help="a .jsonl path, a .db path, sqlite:///path.db or postgresql://...")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write here instead of stdout (- is stdout)"
    )
    p.set_defaults(func=export)


# -- status --------------------------------------------------------------------


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0 (got {value})")
    return value


def _cells(run: dict[str, Any]) -> tuple[str, ...]:
    """A run object of the schema as the cells of ``status``'s table of runs."""
    usage = run["usage"]
    killed = run["stop_reason"] == "killed"
    stop = "killed (no end record)" if killed else run["stop_reason"]
    started = run["started_at"]
    return (
        started.split(".")[0].rstrip("Z") + "Z" if started else "?",
        "-" if run["duration_seconds"] is None else format_duration(run["duration_seconds"]),
        stop,
        "-" if run["done"] is None else f"{run['done']:,}",
        "-" if run["failed"] is None else f"{run['failed']:,}",
        f"{usage['input_tokens']:,}/{usage['output_tokens']:,}",
        format_cost(usage["cost_usd"]),
    )


# The `$defs` each field of a run object is checked against (None: by hand); every
# field not named here is a nullable count.
_RUN_FIELD_DEFS: dict[str, str | None] = {
    "job_id": None,
    "started_at": "timestamp",
    "ended_at": "timestamp",
    "duration_seconds": "seconds",
    "stop_reason": None,
    "stop_message": None,
    "usage": None,
}
_RUN_FIELDS = {
    name: _RUN_FIELD_DEFS.get(name, "count") for name in SCHEMA["$defs"]["run"]["required"]
}

# How many malformed fields a warning about run records names.
_NAMED_FIELDS = 5


def _readable_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run objects with every field of its schema type, and a warning for those that were not.

    A run's end record whose report is in the schema is shown as recorded,
    so a hand-edited or damaged one can lack a field or hold a value of
    another type. Such a field is shown as unknown (``null``; a usage
    count as 0, its cost as unknown) rather than failing the command, and
    the command warns once, naming the fields; like a record with malformed
    usage, the rest of the job is still shown.
    """
    bad: dict[str, None] = {}
    malformed = 0
    readable = []
    for run in runs:
        fixed, fields = _readable_run(run)
        readable.append(fixed)
        malformed += bool(fields)
        bad.update(dict.fromkeys(fields))
    if malformed:
        names = list(bad)
        more = f" and {len(names) - _NAMED_FIELDS:,} more" if len(names) > _NAMED_FIELDS else ""
        warnings.warn(
            f"the report of {malformed:,} run record(s) is malformed (field "
            f"{', '.join(names[:_NAMED_FIELDS])}{more}): shown as unknown",
            stacklevel=2,
        )
    return readable


def _readable_run(run: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One run object with its malformed fields replaced (see `_readable_runs`), and their names."""
    fixed: dict[str, Any] = {}
    bad: list[str] = []
    for name, definition in _RUN_FIELDS.items():
        value = run.get(name)
        if name == "usage":
            fixed[name], fields = _readable_usage(value)
            bad.extend(fields)
            continue
        if name == "stop_reason":
            ok = value in RUN_STOP_REASONS
            fallback: Any = "error"
        elif name == "stop_message":
            ok, fallback = isinstance(value, str), ""
        elif name == "job_id":
            ok, fallback = value is None or isinstance(value, str), None
        else:
            ok = value is None or (definition is not None and not check(value, definition))
            fallback = None
        if name not in run or not ok:
            bad.append(name)
        fixed[name] = value if ok else fallback
    return fixed, bad


def _readable_usage(usage: Any) -> tuple[dict[str, Any], list[str]]:
    """A usage object with its malformed counts as 0 and a malformed cost as unknown."""
    if not isinstance(usage, Mapping):
        return {**dict.fromkeys(USAGE_FIELDS[:-1], 0), "cost_usd": None}, ["usage"]
    fixed: dict[str, Any] = {}
    bad = []
    for name in USAGE_FIELDS:
        value = usage.get(name)
        definition = "cost" if name == "cost_usd" else "count"
        if name in usage and not check(value, definition):
            fixed[name] = value
        else:
            fixed[name] = None if name == "cost_usd" else 0
            bad.append(f"usage.{name}")
    return fixed, bad


def _compare(view: StoreView, items: list[tuple[str, Any]]) -> dict[str, list[str]]:
    state = view.state
    seen: dict[str, Any] = {}
    for item_id, item in items:
        seen.setdefault(item_id, item)
    known = state.done | state.failures.keys()
    changed = []
    for item_id, old in state.fingerprints.items():
        item = seen.get(item_id)
        if item is not None and content_fingerprint(item) != old:
            changed.append(item_id)
    return {
        "new": [i for i in seen if i not in known],
        "changed": changed,
        "vanished": [i for i in known if i not in seen],
        "to_do": [i for i in seen if i not in state.done],
    }


def status(args: argparse.Namespace) -> int:
    """``agent-resume status STORE``."""
    ledger, folder = Ledger(skip_malformed=True), RunFolder()
    view = inspect_store(args.store, also=(ledger.add, folder.add))
    warn_malformed(ledger)
    state = view.state
    quarantined = quarantined_ids(state, job_max_attempts(state, args.max_attempts))
    runs = _readable_runs(folder.finish())
    total = ledger.total
    info: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "store": masked_url(args.store),
        "job_id": view.job_id,
        "created_at": timestamp_json(state.created),
        "done": len(state.done),
        "failed": len(state.failures) - len(quarantined),
        "quarantined": len(quarantined),
        "bad_lines": state.bad_lines,
        "torn_tail": view.torn_tail,
        "runs": len(runs),
        "total": usage_json(total),
        "total_is_lower_bound": ledger.lower_bound or bool(ledger.malformed),
    }
    comparison = None
    if args.items is not None:
        comparison = _compare(view, read_items(args.items, args.key))
    if args.json:
        info["quarantined_items"] = {
            i: {"attempts": state.failures[i].attempts, "error": state.failures[i].error}
            for i in quarantined
        }
        info["last_runs"] = runs[-args.runs :] if args.runs else []
        if comparison is not None:
            info["input"] = comparison
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    out = sys.stdout
    rows = [
        ("job", view.job_id or "(none recorded: an original-format file)"),
        ("store", masked_url(args.store)),
        ("created", format_timestamp(state.created)),
        ("done", f"{len(state.done):,}"),
        ("failed", f"{info['failed']:,} (to be retried)"),
        ("quarantined", f"{len(quarantined):,}"),
    ]
    if state.bad_lines or view.torn_tail:
        torn = " and a torn last line" if view.torn_tail else ""
        rows.append(("bad lines", f"{state.bad_lines}{torn} (agent-resume repair fixes them)"))
    rows.append(("runs", str(len(runs))))
    rows.append(
        (
            "spent",
            f"{total.calls:,} calls, {total.input_tokens:,} tokens in / "
            f"{total.output_tokens:,} out, {format_cost(known_cost(total))} (all runs, killed ones "
            "included)",
        )
    )
    if ledger.lower_bound:
        rows.append(
            (
                "",
                "at least: a run has not ended (it died, or is running); calls it had "
                "in flight are not recorded",
            )
        )
    if ledger.malformed:
        rows.append(
            ("", f"at least: the usage of {len(ledger.malformed):,} record(s) is malformed")
        )
    _table(out, rows)
    if runs and args.runs > 0:
        out.write("\nlast runs:\n")
        header = ("started", "duration", "stopped", "done", "failed", "tokens in/out", "cost")
        lines = [header, *(_cells(r) for r in runs[-args.runs :])]
        _columns(out, lines)
        last = runs[-1]
        if last.get("stop_message") and last["stop_reason"] != "killed":  # the table says it
            out.write(f"the last run stopped ({last['stop_reason']}): {last['stop_message']}\n")
    if quarantined:
        out.write("\nquarantined items (agent-resume retry releases them):\n")
        for item_id in quarantined[:_SHOWN_IDS]:
            failure = state.failures[item_id]
            tries = "1 attempt" if failure.attempts == 1 else f"{failure.attempts} attempts"
            out.write(f"  {item_id}  ({tries})  {_one_line(failure.error)}\n")
        _more(out, len(quarantined))
    if comparison is not None:
        out.write(f"\ncompared with {args.items}:\n")
        for name in ("new", "changed", "vanished", "to_do"):
            ids = comparison[name]
            out.write(f"  {name.replace('_', ' '):<9} {len(ids):,}\n")
            for item_id in ids[:_SHOWN_IDS] if name != "to_do" else []:
                out.write(f"    {item_id}\n")
            if name != "to_do":
                _more(out, len(ids), indent="    ")
    return 0


def _more(out: TextIO, count: int, indent: str = "  ") -> None:
    if count > _SHOWN_IDS:
        out.write(f"{indent}... and {count - _SHOWN_IDS:,} more\n")


def _table(out: TextIO, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.write(f"{label:<{width}}  {value}\n")


def _columns(
    out: TextIO, lines: Sequence[Sequence[str]], indent: str = "  ", numeric_from: int = 3
) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [
            cell.rjust(w) if i >= numeric_from else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.write(indent + "  ".join(cells).rstrip() + "\n")


# -- report --------------------------------------------------------------------


def report(args: argparse.Namespace) -> int:
    """``agent-resume report STORE``."""
    try:
        prices = PriceTable.from_file(args.prices) if args.prices else None
    except OSError as exc:
        raise CliError(
            f"cannot read the price table {args.prices}: {exc.strerror or exc}"
        ) from None
    items = ItemFolder(prices=prices)
    view = inspect_store(args.store, also=(items.add,))
    warn_malformed(items.ledger)
    if prices is not None:
        warn_unpriced(items.ledger, prices)
    order = None
    if args.items is not None:
        order = [item_id for item_id, _ in read_items(args.items, args.key)]
    quarantined = quarantined_ids(view.state, job_max_attempts(view.state, None))
    rows = items.rows(quarantined=quarantined, order=order)
    document = report_document(view.job_id, rows, items.ledger)
    out = sys.stdout
    if args.format == "json":
        if args.no_total:
            del document["total"]
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    total = {"item_id": "total", **document["total"]}
    if args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(ITEM_COLUMNS)
        for row in [*rows, *([] if args.no_total else [total])]:
            writer.writerow([_csv_cell(name, row.get(name)) for name in ITEM_COLUMNS])
        return 0
    header = ("item", "status", "attempts", "stop", "calls", "input", "output", "cost")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        lines.append(
            (
                row["item_id"],
                row["status"],
                f"{row['attempts']:,}",
                row["stop_reason"] or "-",
                *_usage_cells(row),
            )
        )
    if not args.no_total:
        lines.append(("total", f"{len(rows):,} items", "", "", *_usage_cells(total)))
    _columns(out, lines, indent="", numeric_from=4)
    if not args.no_total and items.ledger.lower_bound:
        out.write(
            "(the total is a lower bound: a run has not ended, and calls it had in flight "
            "are not recorded)\n"
        )
    if not args.no_total and items.ledger.malformed:
        out.write("(the total is a lower bound: some records' usage is malformed)\n")
    return 0


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "cost_usd":
        return format(Decimal(repr(value)), "f")
    return str(value)


def _usage_cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"{row['calls']:,}",
        f"{row['input_tokens']:,}",
        f"{row['output_tokens']:,}",
        format_cost(row["cost_usd"]),
    )


# -- export --------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    """``agent-resume export STORE``."""
    _refuse_output_over(args.store, args.output)
    store = open_cli_store(args.store)
    results = results_of(store)
    with open_output(args.output) as out:
        _export(results, args.format, out)
    return 0


def _refuse_output_over(target: str, output: str | None) -> None:
    """Refuse an output file that is the store's own file (writing it would empty the job).

    Raises:
        CliError: ``output`` names the store's file, by any name.
    """
    store_file = file_of(target)
    if output is None or output == STDIO or store_file is None:
        return
    try:
        same = os.path.samefile(os.path.expanduser(output), store_file)
    except OSError:  # one of them does not exist: not the same file
        return
    if same:
        raise CliError(
            f"refusing to write the export to {output}: it is the store {target} itself "
            "(writing it would erase the job's records); give another file with -o"
        )


def _export(results: Iterable[tuple[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "jsonl":
        for item_id, result in results:
            out.write(json.dumps({"id": item_id, "result": result}, ensure_ascii=False) + "\n")
        return
    pairs = list(results)
    if pairs and all(isinstance(result, dict) for _, result in pairs):
        columns: dict[str, None] = {}
        for _, result in pairs:
            columns.update(dict.fromkeys(result))
        keys = list(columns)
        writer = csv.writer(out)
        # A result's own `id` (a whole API response has one) is kept, as `result.id`.
        writer.writerow(["id", *("result.id" if key == "id" else key for key in keys)])
        for item_id, result in pairs:
            writer.writerow([item_id, *(_cell(result.get(key)) for key in keys)])
        return
    writer = csv.writer(out)
    writer.writerow(["id", "result"])
    for item_id, result in pairs:
        writer.writerow([item_id, _cell(result)])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _one_line(error: str, width: int = 200) -> str:
    """An error's first line, cut at ``width`` characters: one line per item in a listing."""
    line, _, rest = error.partition("\n")
    if len(line) > width or rest:
        return f"{line[:width]}..."
    return line
