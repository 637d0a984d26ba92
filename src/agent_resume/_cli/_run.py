"""``agent-resume run MODULE:FUNC --items FILE.jsonl``: a batch function as a resumable job.

Every :class:`~agent_resume.RunConfig` control is a flag and a key of the
optional TOML file (``--config run.toml``); flags override the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_resume._cli._targets import CliError, item_key, read_items

__all__ = ["JobError", "load_function", "load_toml", "register", "run"]

_STOP_KEYS = {
    "max_turns": "MaxTurns",
    "max_tokens": "MaxTokens",
    "max_cost": "MaxCost",
    "max_seconds": "MaxSeconds",
    "repeated_tool_call": "RepeatedToolCall",
    "repeated_output": "RepeatedOutput",
    "max_idle": "NoProgress",
    "no_progress": "RepeatedOutput",  # deprecated spelling of repeated_output
    "consecutive_errors": "ConsecutiveErrors",
}
# RunConfig fields read from flags and TOML, with how a TOML value is checked.
_FIELDS = {
    "job_id": str,
    "store": str,
    "time_budget": "duration",
    "finish_by": "datetime",
    "item_timeout": "duration",
    "max_cost_usd": float,
    "max_tokens": int,
    "max_items": int,
    "max_attempts": int,
    "concurrency": int,
    "fail_fast": bool,
    "progress": "progress",
    "progress_interval": "duration",
    "grace_period": "duration",
    "conversation_dir": str,
    "fingerprint": bool,
    "on_change": str,
    "handle_signals": bool,
    "on_item_done": "function",
    "on_usage": "function",
    "on_stop": "function",
}
_OTHER_KEYS = ("function", "items", "key", "stop", "prices")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class JobError(Exception):
    """The job stopped on an error (``--fail-fast``); exit code 4."""


def register(sub: Any) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run MODULE:FUNC over a JSONL input as a resumable job",
        description="Run process(item, ctx) from MODULE:FUNC (a module name or a .py path, "
        "then the function) over the items of a JSONL file, as a resumable job: items "
        "done earlier are skipped. Every RunConfig control is a flag below or a key of "
        "the TOML file; flags override the file. Durations take seconds or 90s, 5m, 2h.",
    )
    p.add_argument("function", nargs="?", metavar="MODULE:FUNC", help="the function to run")
    p.add_argument("--items", metavar="FILE.jsonl", help="the input, one JSON item per line")
    p.add_argument("--key", metavar="FIELD", help="the field holding each item's ID (default id)")
    p.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    p.add_argument("--job-id", help="the job's ID (default: the items file's name)")
    p.add_argument("--store", help="the checkpoint (default: checkpoints/<job-id>.jsonl)")
    p.add_argument("--time-budget", metavar="DURATION", help="stop admitting items after this")
    p.add_argument("--finish-by", metavar="ISO-TIME", help="stop admitting items at this time")
    p.add_argument("--item-timeout", metavar="DURATION", help="each item's own deadline")
    p.add_argument("--max-cost-usd", type=float, metavar="USD", help="run budget in dollars")
    p.add_argument("--max-tokens", type=int, metavar="N", help="run budget in tokens")
    p.add_argument("--max-items", type=int, metavar="N", help="start at most N items")
    p.add_argument("--max-attempts", type=int, metavar="N", help="quarantine after N failures")
    p.add_argument("--concurrency", type=int, metavar="N", help="items in flight at once")
    p.add_argument(
        "--fail-fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop at the first exception from FUNC (exit code 4)",
    )
    p.add_argument(
        "--progress", choices=("auto", "rich", "log", "off"), help="progress display (default auto)"
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const="off",
        help="same as --progress off",
    )
    p.add_argument("--progress-interval", metavar="DURATION", help="between progress log lines")
    p.add_argument("--grace-period", metavar="DURATION", help="after SIGINT/SIGTERM")
    p.add_argument("--conversation-dir", metavar="DIR", help="where conversations are saved")
    p.add_argument(
        "--fingerprint",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hash item contents to detect changed items",
    )
    p.add_argument(
        "--on-change",
        choices=("rerun", "keep", "error"),
        help="what to do with a done item whose content changed",
    )
    p.add_argument(
        "--signals",
        dest="handle_signals",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="handle SIGINT/SIGTERM gracefully (default on)",
    )
    p.add_argument("--prices", metavar="FILE", help="a JSON or TOML price table")
    for hook in ("on-item-done", "on-usage", "on-stop"):
        p.add_argument(f"--{hook}", metavar="MODULE:FUNC", help=f"the {hook} hook")
    g = p.add_argument_group("stop conditions for each item's loop (combined with |)")
    g.add_argument("--stop", metavar="MODULE:ATTR", help="a StopCondition object")
    g.add_argument("--stop-max-turns", type=int, metavar="N")
    g.add_argument("--stop-max-tokens", type=int, metavar="N")
    g.add_argument("--stop-max-cost", type=float, metavar="USD")
    g.add_argument("--stop-max-seconds", type=float, metavar="S")
    g.add_argument("--stop-phrase", action="append", metavar="TEXT")
    g.add_argument("--stop-repeated-tool-call", type=int, metavar="N")
    g.add_argument("--stop-repeated-output", type=int, metavar="N")
    g.add_argument("--stop-max-idle", type=float, metavar="S")
    g.add_argument(
        "--stop-no-progress", type=int, metavar="N", help="deprecated: --stop-repeated-output"
    )
    g.add_argument("--stop-consecutive-errors", type=int, metavar="N")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


# -- settings -------------------------------------------------------------------


def load_toml(path: str) -> dict[str, Any]:
    """Read a TOML file with tomllib (3.11+) or tomli (3.10).

    Raises:
        CliError: No TOML reader is available, or the file is unreadable or invalid.
    """
    if sys.version_info >= (3, 11):
        import tomllib as toml
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as toml  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise CliError(
                "reading TOML on Python 3.10 needs tomli: pip install tomli "
                "(or give every setting as a flag)"
            ) from None
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = toml.load(f)
    except OSError as exc:
        raise CliError(f"cannot read the config file: {exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: invalid TOML: {exc}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def parse_duration(value: object, name: str) -> float:
    """Read seconds from a number or a string such as ``"90"``, ``"90s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise CliError(f"{name} must be seconds or a duration such as 90s, 5m, 2h (got {value!r})")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _checked(name: str, kind: object, value: Any, where: str) -> Any:
    label = f"{name} ({where})"
    if kind == "duration":
        return parse_duration(value, label)
    if kind == "datetime":
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            raise CliError(f"{label} must be an ISO date and time (got {value!r})") from None
    if kind == "function":
        return load_function(str(value))
    if kind == "progress":
        if value in (True, "on"):
            return True
        if value in (False, "off"):
            return False
        if value in ("auto", "rich", "log"):
            return value
        raise CliError(f"{label} must be auto, rich, log, on or off (got {value!r})")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # type: ignore[arg-type]
        raise CliError(f"{label} must be {kind.__name__} (got {value!r})")  # type: ignore[attr-defined]
    return value


def _stop(table: dict[str, Any], where: str) -> Any:
    import agent_resume

    parts: list[Any] = []
    for key, value in table.items():
        key = key.replace("-", "_")
        if key in ("phrase", "phrases"):
            phrases = [value] if isinstance(value, str) else list(value)
            if phrases:
                parts.append(agent_resume.StopPhrase(*phrases))
        elif key == "max_idle":
            if value is not None:
                parts.append(agent_resume.NoProgress(max_idle=value))
        elif key in _STOP_KEYS:
            if key == "no_progress":
                print(
                    f"agent-resume: {where}: no_progress N (N identical outputs) is deprecated; "
                    "use repeated_output N (idle time is max_idle S)",
                    file=sys.stderr,
                )
            if value is not None:
                parts.append(getattr(agent_resume, _STOP_KEYS[key])(value))
        else:
            known = ", ".join([*_STOP_KEYS, "phrases"])
            raise CliError(f"unknown stop condition {key!r} in {where}; known: {known}")
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition = condition | part
    return condition


def _prices(value: Any, where: str) -> Any:
    from agent_resume._accounting._prices import PriceTable

    if isinstance(value, str):
        if value.endswith(".toml"):
            value = load_toml(value)
        else:
            try:
                with open(value, encoding="utf-8") as f:
                    value = json.load(f)
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot read the price table {value}: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"prices ({where}) must be a table of model -> prices")
    return PriceTable(value)


def load_function(spec: str) -> Any:
    """Import ``MODULE:FUNC`` (``MODULE`` a dotted name or a ``.py`` path; ``FUNC`` may be dotted).

    Raises:
        CliError: The spec is malformed, or the module or attribute cannot be loaded.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:FUNC, such as my_job:process (got {spec!r})")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise CliError(f"{module_name}: no such file")
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None:
                raise CliError(f"cannot import {module_name}")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules.setdefault(path.stem, module)
            mod_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` does
            module = importlib.import_module(module_name)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"{module_name} has no attribute {attr!r}") from None
    return target


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge the TOML file and the flags: ``(RunConfig keywords, other settings)``."""
    data = load_toml(args.config) if args.config else {}
    where = args.config or "flags"
    unknown = sorted(set(data) - set(_FIELDS) - set(_OTHER_KEYS))
    if unknown:
        raise CliError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    config: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        flag = getattr(args, name, None)
        if flag is not None:
            config[name] = _checked(name, kind, flag, "--" + name.replace("_", "-"))
        elif name in data:
            config[name] = _checked(name, kind, data[name], where)
    stop_flags = {
        key: getattr(args, "stop_" + key)
        for key in (*_STOP_KEYS, "phrase")
        if getattr(args, "stop_" + key) is not None
    }
    stop_toml = data.get("stop")
    if args.stop is not None:
        config["stop"] = load_function(args.stop)
    elif stop_flags:
        config["stop"] = _stop(stop_flags, "flags")
    elif isinstance(stop_toml, str):
        config["stop"] = load_function(stop_toml)
    elif isinstance(stop_toml, dict):
        config["stop"] = _stop(stop_toml, where)
    elif stop_toml is not None:
        raise CliError(f"{where}: stop must be a table or a MODULE:ATTR string")
    prices = args.prices if args.prices is not None else data.get("prices")
    if prices is not None:
        config["prices"] = _prices(prices, where)
    other = {
        "function": args.function or data.get("function"),
        "items": args.items or data.get("items"),
        "key": args.key or data.get("key"),
    }
    return config, other


# -- running --------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """``agent-resume run MODULE:FUNC --items FILE.jsonl``."""
    from agent_resume._run._config import RunConfig
    from agent_resume._run._runner import ResumableRun

    config, other = _settings(args)
    if not other["function"]:
        raise CliError("give the function to run as MODULE:FUNC (or `function` in the TOML file)")
    if not other["items"]:
        raise CliError("give the input with --items FILE.jsonl (or `items` in the TOML file)")
    items_path = str(other["items"])
    config.setdefault("job_id", Path(items_path).stem)
    config.setdefault("store", os.path.join("checkpoints", config["job_id"] + ".jsonl"))
    process = load_function(str(other["function"]))
    if not callable(process):
        raise CliError(f"{other['function']} is not callable")
    items = read_items(items_path)
    key = item_key(other["key"])
    run_config = RunConfig(**config)
    log = run_config.progress == "log" or (
        run_config.progress in (True, "auto") and not sys.stderr.isatty()
    )
    runner = ResumableRun(run_config)
    try:
        with _log_to_stderr(log):
            if inspect.iscoroutinefunction(process):
                report = asyncio.run(runner.arun(process, items, key=key))
            else:
                report = runner.run(process, items, key=key)
    except CliError:
        raise
    except Exception as exc:
        from agent_resume._errors import AgentResumeError

        if isinstance(exc, AgentResumeError) or not run_config.fail_fast:
            raise
        raise JobError(
            f"stopped at the first failure (--fail-fast): {type(exc).__name__}: {exc}"
        ) from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.format())
    finished = report.completed and not report.remaining and not report.quarantined
    return 0 if finished else 1


@contextlib.contextmanager
def _log_to_stderr(enabled: bool) -> Iterator[None]:
    """Show the library's progress lines on stderr while a run runs, unless logging is set up."""
    logger = logging.getLogger("agent_resume")
    if not enabled or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agent-resume: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
