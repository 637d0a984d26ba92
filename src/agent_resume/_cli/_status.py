"""``status``, ``report`` and ``export``: reading a job without touching it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from agent_resume._accounting._ledger import Ledger
from agent_resume._accounting._prices import PriceTable
from agent_resume._accounting._usage import Usage
from agent_resume._cli._exits import CliError
from agent_resume._cli._output import open_output
from agent_resume._cli._targets import (
    StoreView,
    inspect_store,
    item_key,
    job_max_attempts,
    open_cli_store,
    quarantined_ids,
    read_items,
    records_of,
    results_of,
)
from agent_resume._fingerprint import content_fingerprint
from agent_resume._records import normalize_id
from agent_resume._render import format_cost, format_timestamp
from agent_resume._session._items import id_getter

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


def _iso(ts: object) -> str:
    return format_timestamp(ts if isinstance(ts, (int, float)) else None)


def _cost(usage: Usage | None) -> str:
    return "-" if usage is None else format_cost(usage.cost_usd)


def _runs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair run records into runs; a start with no end is a run that died."""
    runs: list[dict[str, Any]] = []
    for record in records:
        kind = record.get("run")
        if kind == "start":
            runs.append({"start": record.get("ts"), "pid": record.get("pid"), "report": None})
        elif kind == "end":
            found = record.get("report")
            report: dict[str, Any] = found if isinstance(found, dict) else {}
            if runs and runs[-1]["report"] is None:
                runs[-1]["report"] = report
            else:
                runs.append({"start": report.get("start"), "report": report})
    return runs


def _run_row(run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    if report is None:
        return {"started": _iso(run["start"]), "stop": "died (no end record)", "usage": None}
    usage = Usage.from_dict(report.get("usage") or {})
    duration = report.get("duration")
    return {
        "started": _iso(report.get("start", run["start"])),
        "duration": f"{duration:.1f}s" if isinstance(duration, (int, float)) else "?",
        "stop": str(report.get("stop", "?")),
        "done": report.get("done", 0),
        "failed": report.get("failed", 0),
        "usage": usage,
    }


def _compare(view: StoreView, items: list[Any], key_field: str | None) -> dict[str, list[str]]:
    key = item_key(key_field)
    state = view.state
    seen: dict[str, Any] = {}
    for item in items:
        getter = id_getter(item, key)
        item_id = normalize_id(item if getter is None else getter(item), "item ID")
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
    view = inspect_store(args.store)
    state = view.state
    quarantined = quarantined_ids(state, job_max_attempts(state, args.max_attempts))
    runs = _runs(state.runs)
    info: dict[str, Any] = {
        "store": args.store,
        "job": view.job_id,
        "created": state.created,
        "done": len(state.done),
        "failed": len(state.failures) - len(quarantined),
        "quarantined": len(quarantined),
        "bad_lines": state.bad_lines,
        "torn_tail": view.torn_tail,
        "runs": len(runs),
    }
    comparison = None
    if args.items is not None:
        comparison = _compare(view, read_items(args.items), args.key)
    if args.json:
        info["quarantined_items"] = {
            i: {"attempts": state.failures[i].attempts, "error": state.failures[i].error}
            for i in quarantined
        }
        info["last_runs"] = [
            {**_run_row(r), "usage": r["report"] and r["report"].get("usage")}
            for r in runs[-args.runs :]
        ]
        if comparison is not None:
            info["input"] = comparison
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    out = sys.stdout
    rows = [
        ("job", view.job_id or "(none recorded: an original-format file)"),
        ("store", args.store),
        ("created", _iso(state.created) if state.created else "?"),
        ("done", f"{len(state.done):,}"),
        ("failed", f"{info['failed']:,} (to be retried)"),
        ("quarantined", f"{len(quarantined):,}"),
    ]
    if state.bad_lines or view.torn_tail:
        torn = " and a torn last line" if view.torn_tail else ""
        rows.append(("bad lines", f"{state.bad_lines}{torn} (agent-resume repair fixes them)"))
    rows.append(("runs", str(len(runs))))
    _table(out, rows)
    if runs and args.runs > 0:
        out.write("\nlast runs:\n")
        shown = [_run_row(r) for r in runs[-args.runs :]]
        header = ("started", "duration", "stopped", "done", "failed", "tokens in/out", "cost")
        lines = [header] + [
            (
                r["started"],
                r.get("duration", "-"),
                r["stop"],
                str(r.get("done", "-")),
                str(r.get("failed", "-")),
                "-"
                if r["usage"] is None
                else f"{r['usage'].input_tokens:,}/{r['usage'].output_tokens:,}",
                _cost(r["usage"]),
            )
            for r in shown
        ]
        _columns(out, lines)
    if quarantined:
        out.write("\nquarantined items (agent-resume retry releases them):\n")
        for item_id in quarantined[:_SHOWN_IDS]:
            failure = state.failures[item_id]
            out.write(f"  {item_id}  ({failure.attempts} attempts)  {failure.error}\n")
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


def _columns(out: TextIO, lines: Sequence[Sequence[str]], indent: str = "  ") -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [
            cell.rjust(w) if i >= 3 else cell.ljust(w)
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
    store = open_cli_store(args.store)
    ledger = Ledger.from_records(records_of(store), prices=prices)
    out = sys.stdout
    if args.format == "csv":
        ledger.write_csv(out)
        return 0
    if args.format == "json":
        data = {
            "items": ledger.rows(),
            "total": {"items": len(ledger), **_usage_fields(ledger.total)},
            "by_model": {str(m): _usage_fields(u) for m, u in ledger.by_model().items()},
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    header = ("item", "status", "calls", "input", "output", "cost")
    lines: list[tuple[str, ...]] = [header]
    for item in ledger.items():
        lines.append((item.item_id, item.status, *_usage_cells(item.usage)))
    lines.append(("total", f"{len(ledger):,} items", *_usage_cells(ledger.total)))
    _columns(out, lines, indent="")
    return 0


def _usage_fields(u: Usage) -> dict[str, Any]:
    """A usage with the key names of the report's CSV columns."""
    return {
        "calls": u.calls,
        "input": u.input_tokens,
        "output": u.output_tokens,
        "cache_read": u.cache_read_tokens,
        "cache_write": u.cache_write_tokens,
        "reasoning": u.reasoning_tokens,
        "cost_usd": u.cost_usd,
    }


def _usage_cells(u: Usage) -> tuple[str, ...]:
    return (f"{u.calls:,}", f"{u.input_tokens:,}", f"{u.output_tokens:,}", _cost(u))


# -- export --------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    """``agent-resume export STORE``."""
    store = open_cli_store(args.store)
    results = results_of(store)
    with open_output(args.output) as out:
        _export(results, args.format, out)
    return 0


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
        names = ["id", *(c for c in columns if c != "id")]
        writer = csv.writer(out)
        writer.writerow(names)
        for item_id, result in pairs:
            writer.writerow([item_id, *(_cell(result.get(c)) for c in names[1:])])
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
