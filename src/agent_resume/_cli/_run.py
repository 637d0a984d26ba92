"""``agent-resume run MODULE:FUNC --items FILE.jsonl``: a batch function as a resumable job.

Every :class:`~agent_resume.RunConfig` field is a flag and a key of the
optional TOML file (``--config run.toml``); flags override the file. The flags
are derived from the dataclass's fields, their help from its docstring, so a
field added to ``RunConfig`` is on the command line without an edit here; the
few fields that need a reader of their own (``store``, ``stop``, ``prices``,
``progress``) or are no user setting (the clocks) are listed below.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

from agent_resume import _validate as validate
from agent_resume._cli._exits import EXIT_JOB_ERROR, EXIT_WORK_LEFT, CliError
from agent_resume._cli._output import STDIO, show_progress_logs
from agent_resume._cli._targets import (
    check_store_file,
    item_key,
    open_input,
    read_items,
    store_url,
)
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    StoreError,
)
from agent_resume._render import parse_timestamp
from agent_resume._run import _config as config_module
from agent_resume._run._config import RunConfig

__all__ = [
    "NOT_FLAGS",
    "config_fields",
    "load_function",
    "load_toml",
    "register",
    "run",
]

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
NOT_FLAGS = {
    "clock": "a test hook (a monotonic clock), not a setting",
    "wall_clock": "a test hook (a wall clock), not a setting",
    "tracing": "set by with_otel(config) in code, where the hooks it wraps are",
}
"""``RunConfig`` fields the command line does not offer, and why."""

# Fields whose flag is built by hand: a reader of their own, or a flag name kept for
# compatibility. Everything else is derived from the field's annotation.
_OWN_FLAGS = ("store", "stop", "prices", "progress")
_ALIASES = {"handle_signals": ("--signals",)}
_OTHER_KEYS = ("function", "items", "key", "stop", "prices", "rpm", "tpm", "retry_attempts")


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """How one ``RunConfig`` field is read from a flag or a TOML key.

    Attributes:
        name: The field's name (and TOML key).
        kind: ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"duration"``,
            ``"timestamp"``, ``"function"`` (``MODULE:FUNC``), ``"object"``
            (``MODULE:ATTR``), ``"choice"`` or ``"own"``.
        help: The field's description, from ``RunConfig``'s docstring.
        choices: The allowed values of a ``"choice"`` field.
    """

    name: str
    kind: str
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The flag, such as ``--time-budget``."""
        return "--" + self.name.replace("_", "-")


def _docstring_help() -> dict[str, str]:
    """Each field's description from the ``Attributes:`` section of ``RunConfig``'s docstring."""
    doc = inspect.getdoc(RunConfig) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    found: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name = match[1]
            found[name] = match[2].strip()
        elif name and line.startswith("        "):
            found[name] += " " + line.strip()
        elif line.strip():
            name = None
    return {k: v.replace("``", "") for k, v in found.items()}


def _literal_choices(annotation: str) -> tuple[str, ...]:
    """The values of a ``Literal`` annotation (given inline or as an alias of the module)."""
    namespace = vars(config_module)  # not RunConfig.__module__: the package may rename it
    try:
        resolved = eval(annotation, namespace)  # our own annotation text
    except Exception:
        return ()
    for candidate in (resolved, *typing.get_args(resolved)):
        if typing.get_origin(candidate) is typing.Literal:
            return tuple(str(v) for v in typing.get_args(candidate))
    return ()


def _kind(annotation: str) -> str:
    if "Callable" in annotation:
        return "function"
    if "Seconds" in annotation or "timedelta" in annotation:
        return "duration"
    if re.search(r"\bdatetime\b", annotation):
        return "timestamp"
    if re.search(r"\bbool\b", annotation):
        return "bool"
    if re.search(r"\bint\b", annotation):
        return "int"
    if re.search(r"\bfloat\b", annotation):
        return "float"
    if re.search(r"\bstr\b|PathLike", annotation):
        return "str"
    return "object"


def config_fields() -> list[ConfigField]:
    """How every ``RunConfig`` field but those in :data:`NOT_FLAGS` is read.

    A field of a type the command line has no text form for (``rate_limit``,
    ``retry``) takes ``MODULE:ATTR``, an object imported from a module.
    """
    helps = _docstring_help()
    found = []
    for f in dataclasses.fields(RunConfig):
        if f.name in NOT_FLAGS:
            continue
        annotation = str(f.type)
        text = helps.get(f.name, "")
        if f.name in _OWN_FLAGS:
            found.append(ConfigField(f.name, "own", text))
            continue
        choices = _literal_choices(annotation)
        if choices:
            found.append(ConfigField(f.name, "choice", text, choices))
            continue
        found.append(ConfigField(f.name, _kind(annotation), text))
    return found


def register(sub: Any) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run MODULE:FUNC over a JSONL input as a resumable job",
        description="Run process(item, ctx) from MODULE:FUNC (a module name or a .py path, "
        "then the function) over the items of a JSONL file, as a resumable job: items "
        "done earlier are skipped. Every RunConfig control is a flag below or a key of "
        "the TOML file; flags override the file. Durations take seconds or 90s, 5m, 2h, "
        "1h30m; times are ISO-8601 (2030-05-25T06:00:00Z). A file name of - is stdin.",
    )
    p.add_argument("function", nargs="?", metavar="MODULE:FUNC", help="the function to run")
    p.add_argument("--items", metavar="FILE.jsonl", help="the input, one JSON item per line")
    p.add_argument("--key", metavar="FIELD", help="the field holding each item's ID (default id)")
    p.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    g = p.add_argument_group("RunConfig settings (TOML keys of the same names, with _)")
    for field in config_fields():
        _add_flag(g, field)
    p.add_argument("--prices", metavar="FILE", help="a JSON or TOML price table")
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
    g = p.add_argument_group(
        "calls made with ctx.call/ctx.acall (shortcuts for --rate-limit and --retry)"
    )
    g.add_argument("--rpm", metavar="N", help="the provider's requests per minute (RateLimit)")
    g.add_argument("--tpm", metavar="N", help="the provider's tokens per minute (RateLimit)")
    g.add_argument(
        "--retry-attempts", metavar="N", help="tries per call, the first included (Retry)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


_METAVARS = {
    "duration": "DURATION",
    "timestamp": "ISO-TIME",
    "function": "MODULE:FUNC",
    "object": "MODULE:ATTR",
    "int": "N",
    "float": "NUMBER",
}


def _add_flag(group: Any, field: ConfigField) -> None:
    help_text = field.help.replace("%", "%%")
    if field.name == "store":
        group.add_argument(
            "--store", metavar="STORE", help="the checkpoint (default checkpoints/<job-id>.jsonl)"
        )
    elif field.name == "progress":
        group.add_argument(
            "--progress", choices=("auto", "rich", "log", "on", "off"), help=help_text
        )
        group.add_argument(
            "--no-progress",
            dest="progress",
            action="store_const",
            const="off",
            help="same as --progress off",
        )
    elif field.kind == "own":
        return  # stop and prices have flags of their own, added by register()
    elif field.kind == "bool":
        group.add_argument(
            field.flag,
            *_ALIASES.get(field.name, ()),
            dest=field.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif field.kind == "choice":
        group.add_argument(field.flag, dest=field.name, choices=field.choices, help=help_text)
    else:
        # Read as text and converted in _checked, so that flags and TOML values share one
        # reader and one wording of their errors.
        group.add_argument(
            field.flag,
            dest=field.name,
            metavar=_METAVARS.get(field.kind, field.name.upper()),
            help=help_text,
        )


# -- settings -------------------------------------------------------------------


def load_toml(path: str, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file (``-`` for stdin) with tomllib (3.11+) or tomli (3.10).

    A UTF-8 byte-order mark is skipped. Keys are returned as written.

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
    name = "<stdin>" if path == STDIO else path
    with open_input(path, what) as f:
        try:
            data: dict[str, Any] = toml.loads(f.read().decode("utf-8-sig"))
        except OSError as exc:
            raise CliError(f"cannot read the {what} {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise CliError(f"{name}: invalid TOML: not UTF-8 (byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            reason = exc if isinstance(exc, ValueError) else "nested too deeply"
            raise CliError(f"{name}: invalid TOML: {reason}") from None
    return data


def _checked(field: ConfigField, value: Any, where: str) -> Any:
    """A flag's or TOML value as ``RunConfig`` takes it; ``RunConfig`` checks the range."""
    label = f"{field.name} ({where})"
    kind = field.kind
    if kind == "duration":
        if isinstance(value, str):
            return validate.parse_duration(value, label)
        return value
    if kind == "timestamp":
        return parse_timestamp(value, label)
    if kind in ("function", "object"):
        if not isinstance(value, str):
            raise CliError(f"{label} must be MODULE:ATTR (got {value!r:.80})")
        return load_function(value)
    if kind == "choice" and value not in field.choices:
        raise CliError(f"{label} must be one of {', '.join(field.choices)} (got {value!r:.80})")
    if kind in ("int", "float") and isinstance(value, str) and where.startswith("--"):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise CliError(f"{label} must be {_A[kind]} (got {value!r:.80})") from None
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "bool": bool, "str": str}.get(kind)
    if expected is not None and (
        not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))
    ):
        raise CliError(f"{label} must be {_A[kind]} (got {value!r:.80})")
    return value


_A = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _progress(value: Any, where: str) -> Any:
    if value in (True, False, "auto", "rich", "log", "on", "off"):
        return value
    raise CliError(f"progress ({where}) must be auto, rich, log, on or off (got {value!r:.80})")


def _stop(table: dict[str, Any], where: str) -> Any:
    import agent_resume

    parts: list[Any] = []
    for key, value in table.items():
        key = key.replace("-", "_")
        if key in ("phrase", "phrases"):
            phrases = [value] if isinstance(value, str) else value
            if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                raise CliError(f"stop phrases in {where} must be text or a list of text")
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
                name = (
                    f"--stop-{key.replace('_', '-')}"
                    if where == "flags"
                    else f"{where} [stop] {key}"
                )
                try:
                    parts.append(getattr(agent_resume, _STOP_KEYS[key])(value))
                except (ArgumentTypeError, ArgumentValueError) as exc:
                    raise CliError(f"{name}: {exc}") from None
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
            value = load_toml(value, "price table")
        else:
            name = "<stdin>" if value == STDIO else value
            with open_input(value, "price table") as f:
                try:
                    value = json.loads(f.read().decode("utf-8-sig"))
                except (OSError, ValueError, RecursionError) as exc:
                    raise CliError(f"cannot read the price table {name}: {exc}") from None
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
    except BaseException as exc:  # a module may even call sys.exit() when imported
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CliError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"{module_name} has no attribute {attr!r}") from None
    return target


def _one_stdin(args: argparse.Namespace) -> None:
    readers = [f"--{n}" for n in ("config", "items", "prices") if getattr(args, n) == STDIO]
    if len(readers) > 1:
        raise CliError(f"only one input can come from stdin (-); got {' and '.join(readers)}")


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge the TOML file and the flags: ``(RunConfig keywords, other settings)``."""
    _one_stdin(args)
    # Settings may be spelt as their flags are (`job-id`); a price table's model names may not.
    data = (
        {k.replace("-", "_"): v for k, v in load_toml(args.config).items()} if args.config else {}
    )
    if data.get("items") == STDIO and args.config == STDIO and args.items is None:
        raise CliError("only one input can come from stdin (-); got --config and items")
    where = ("<stdin>" if args.config == STDIO else args.config) or "flags"
    fields = config_fields()
    unknown = sorted(set(data) - {f.name for f in fields} - set(_OTHER_KEYS))
    if unknown:
        raise CliError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    config: dict[str, Any] = {}
    for field in fields:
        if field.kind == "own" and field.name != "store":
            continue
        flag = getattr(args, field.name, None)
        if flag is not None:
            config[field.name] = _checked(field, flag, field.flag)
        elif field.name in data:
            config[field.name] = _checked(field, data[field.name], where)
    if args.progress is not None:
        config["progress"] = _progress(args.progress, "--progress")
    elif "progress" in data:
        config["progress"] = _progress(data["progress"], where)
    if "store" in config:
        if not isinstance(config["store"], str):
            raise CliError(f"store ({where}) must be a string (got {config['store']!r:.80})")
        config["store"] = store_url(config["store"])
        check_store_file(config["store"], must_exist=False)
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
    _call_shortcuts(args, data, config, where)
    other = {
        "function": args.function or data.get("function"),
        "items": args.items or data.get("items"),
        "key": args.key or data.get("key"),
    }
    for name, value in other.items():
        if value is not None and not isinstance(value, str):
            raise CliError(f"{name} ({where}) must be a string (got {value!r:.80})")
    return config, other


def _number(name: str, value: Any, where: str, kind: type) -> Any:
    if isinstance(value, str) and where.startswith("--"):
        try:
            return kind(value)
        except ValueError:
            pass
    elif (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (kind is float or isinstance(value, int))
    ):
        return kind(value)
    what = "an integer" if kind is int else "a number"
    raise CliError(f"{name} ({where}) must be {what} (got {value!r:.80})")


def _call_shortcuts(
    args: argparse.Namespace, data: dict[str, Any], config: dict[str, Any], where: str
) -> None:
    """``--rpm``/``--tpm`` (TOML ``rpm``/``tpm``) and ``--retry-attempts`` (``retry_attempts``)."""
    from agent_resume._limits import RateLimit
    from agent_resume._retry import Retry

    found: dict[str, Any] = {}
    given: dict[str, str] = {}  # how each was given, for error messages
    for name, kind in (("rpm", float), ("tpm", float), ("retry_attempts", int)):
        flag = getattr(args, name, None)
        if flag is not None:
            option = given[name] = "--" + name.replace("_", "-")
            found[name] = _number(name, flag, option, kind)
        elif data.get(name) is not None:
            found[name] = _number(name, data[name], where, kind)
            given[name] = f"{name} ({where})"
    if "rpm" in found or "tpm" in found:
        if "rate_limit" in config:
            raise CliError("give either --rate-limit or --rpm/--tpm, not both")
        try:
            config["rate_limit"] = RateLimit(
                requests_per_minute=found.get("rpm"), tokens_per_minute=found.get("tpm")
            )
        except (ArgumentTypeError, ArgumentValueError) as exc:
            what = " / ".join(given[n] for n in ("rpm", "tpm") if n in given)
            raise CliError(f"{what}: {exc}") from None
    if "retry_attempts" in found:
        if "retry" in config:
            raise CliError("give either --retry or --retry-attempts, not both")
        try:
            config["retry"] = Retry(attempts=found["retry_attempts"])
        except (ArgumentTypeError, ArgumentValueError) as exc:
            raise CliError(f"{given['retry_attempts']}: {exc}") from None


# -- running --------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """``agent-resume run MODULE:FUNC --items FILE.jsonl``."""
    from agent_resume._run._runner import ResumableRun, is_async_process

    config, other = _settings(args)
    if not other["function"]:
        raise CliError("give the function to run as MODULE:FUNC (or `function` in the TOML file)")
    if not other["items"]:
        raise CliError("give the input with --items FILE.jsonl (or `items` in the TOML file)")
    items_path = str(other["items"])
    if items_path == STDIO and "job_id" not in config:
        raise CliError("with --items - (stdin), give the job's ID with --job-id")
    config.setdefault("job_id", Path(items_path).stem)
    config.setdefault("store", os.path.join("checkpoints", config["job_id"] + ".jsonl"))
    check_store_file(config["store"], must_exist=False)
    process = load_function(str(other["function"]))
    if not callable(process):
        raise CliError(f"{other['function']} is not callable")
    items = [item for _, item in read_items(items_path, other["key"])]
    key = item_key(other["key"])
    run_config = RunConfig(**config)
    log = run_config.progress == "log" or (
        run_config.progress in (True, "auto") and not sys.stderr.isatty()
    )
    runner = ResumableRun(run_config)
    try:
        with show_progress_logs(log):
            if is_async_process(process):
                report = asyncio.run(runner.arun(process, items, key=key))
            else:
                report = runner.run(process, items, key=key)
    except (CliError, AgentResumeError):
        raise
    except RecursionError:
        raise StoreError(f"{config['store']}: a record is nested too deeply to read") from None
    except SystemExit as exc:
        # sys.exit() in the function or a hook: the run recorded its end; exit 0 would
        # say every item is done.
        raise CliError(
            f"stopped: the job's code called sys.exit({exc.code!r})", EXIT_JOB_ERROR
        ) from None
    except Exception as exc:
        # The function under --fail-fast, or a hook: the user's code stopped the job.
        why = "at the first failure (--fail-fast)" if run_config.fail_fast else "on an error"
        raise CliError(f"stopped {why}: {type(exc).__name__}: {exc}", EXIT_JOB_ERROR) from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.format())
    finished = report.completed and not report.remaining and not report.quarantined
    return 0 if finished else EXIT_WORK_LEFT
