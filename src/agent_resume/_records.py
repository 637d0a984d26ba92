"""Item IDs, checkpoint records and the state of a job as loaded from a store.

This module defines the record shapes every store speaks (SPEC section 5)
and names their kinds; :func:`kind_of` is the one place that tells a record's
kind from its fields:

========== ====================================================================
kind       fields that tell it
========== ====================================================================
header     ``agent_resume`` (the format version), ``job_id``, ``created``
done       ``id`` with no ``status``, or ``status: "done"``
failed     ``id`` and ``status: "failed"`` (``error``, ``attempt``, ``retryable``)
retry      ``id`` and ``status: "retry"``: the item's failures are forgotten
call       ``call`` (the item's ID): the usage of one LLM call, as it returned
run        ``run`` (``start`` or ``end``, with the run's report)
state      ``state``: the job's state mapping, the latest one wins
batch      ``batch`` (``intent``, ``submitted``, ``ended``): batch mode's bookkeeping
unknown    anything else: kept, and ignored by readers that do not know it
========== ====================================================================

The JSONL stores write records as lines; the SQL stores map them to columns.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring
from pathlib import PurePath
from typing import Any, Final, Literal
from uuid import UUID

from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._validate import identifier as normalize_id

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "MAX_ERROR_CHARS",
    "FailureInfo",
    "JobState",
    "RecordKind",
    "check_json",
    "collector_paused",
    "completion_line",
    "dumps",
    "error_text",
    "failure_line",
    "failure_record",
    "kind_of",
    "nested_too_deep",
    "normalize_id",
    "plain_json",
    "retry_line",
    "usage_dict",
]

FORMAT_VERSION: Final = 1
"""The major version of the checkpoint format this library writes and reads."""

MAX_DEPTH: Final = 200
"""The deepest nesting of arrays and objects a record may hold.

Results, usage and run records nested deeper are refused when recorded, and
checkpoint lines nested deeper are skipped as corrupt when read, so that no
reader ever needs a deep stack (a line of 100,000 ``[`` would overflow it).
"""


def plain_json(value: object) -> Any:
    """What a value JSON has no type for is written as; ``TypeError`` when there is none.

    As pydantic's JSON mode writes them: a pydantic model (a structured
    output's ``message.parsed``, an SDK response) as its
    ``model_dump(mode="json")``, a dataclass instance as
    ``dataclasses.asdict``, a numpy scalar or array as its ``tolist()``, a
    ``datetime``, ``date`` or ``time`` as its ISO 8601 text, a ``Decimal``,
    ``UUID`` or path as its text, an ``Enum`` member as its value and a set as
    a sorted list. Read back, each is the plain JSON value. Anything else (bytes, an
    object of your own) is refused.
    """
    if not isinstance(value, type):
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return dump(mode="json")
        if is_dataclass(value):
            return asdict(value)  # type: ignore[arg-type]  # an instance: not a type (above)
        as_list = getattr(value, "tolist", None)
        if type(value).__module__ == "numpy" and callable(as_list):
            return as_list()
        if isinstance(value, (datetime.date, datetime.time)):  # a datetime is a date
            return value.isoformat()
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (Decimal, UUID, PurePath)):
            return str(value)
        if isinstance(value, (set, frozenset)):
            # Sorted: a set of strings iterates in an order that changes from one
            # process to the next, and an item's fingerprint must not.
            try:
                return sorted(value)
            except TypeError:  # mixed types
                return sorted(value, key=repr)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=plain_json).encode


# The C encoder that json.dumps builds anew for every call, built once: a record is
# encoded in about half the time. No cycle check (markers=None): a cyclic value
# recurses until RecursionError, and the encoder above then says what is wrong.
_MAKE_ENCODER: Final[Any] = getattr(json.encoder, "c_make_encoder", None)
_ENCODE: Final[Any] = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(None, plain_json, encode_basestring, None, ": ", ", ", False, False, False)
)


def _dumps(value: Any) -> str:
    """``value`` as JSON, as ``json.dumps(value, ensure_ascii=False, allow_nan=False)`` writes it."""
    if _ENCODE is not None:
        try:
            return "".join(_ENCODE(value, 0))
        except (TypeError, ValueError, RecursionError):
            pass  # the encoder raises the error, with its message
    return _ENCODER(value)


def dumps(value: Any, parameter: str = "result") -> str:
    """Encode ``value`` as compact-enough JSON, raising typed errors.

    Raises:
        ArgumentTypeError: The value holds something JSON cannot encode.
        ArgumentValueError: The value holds NaN or an infinity, or a lone surrogate.
    """
    try:
        return _dumps(value)
    except TypeError as exc:
        raise ArgumentTypeError(
            parameter, value, f"`{parameter}` must be JSON-encodable: {exc} (got {value!r:.80})"
        ) from None
    except ValueError as exc:
        raise ArgumentValueError(
            parameter,
            value,
            f"`{parameter}` must be JSON without NaN or infinity: {exc} (got {value!r:.80})",
        ) from None
    except RecursionError:
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` is nested too deeply to encode as JSON"
        ) from None


def nested_too_deep(value: Any, text: str | bytes) -> bool:
    """Whether a decoded JSON ``value`` nests arrays and objects deeper than :data:`MAX_DEPTH`.

    ``text`` is its JSON text: one that holds at most :data:`MAX_DEPTH`
    brackets cannot be too deep, so the walk (without recursion) runs only for
    the rare large value.
    """
    if isinstance(text, str):
        brackets = text.count("[") + text.count("{")
    else:
        brackets = text.count(b"[") + text.count(b"{")
    if brackets <= MAX_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, (dict, list, tuple))
        )
    return False


def check_json(value: Any, parameter: str = "result") -> str:
    """Check that ``value`` encodes as JSON, is not nested too deeply, and that the text is valid UTF-8.

    Returns:
        The JSON text.

    Raises:
        ArgumentTypeError: The value holds something JSON cannot encode.
        ArgumentValueError: The value holds NaN, an infinity or a lone surrogate,
            or nests arrays and objects deeper than :data:`MAX_DEPTH` levels.
    """
    text = dumps(value, parameter)
    if nested_too_deep(value, text):
        raise ArgumentValueError(
            parameter,
            value,
            f"`{parameter}` nests arrays and objects more than {MAX_DEPTH} levels deep, "
            "which no checkpoint reader is required to load; flatten it "
            f"(got {text[:80]}...)",
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ArgumentValueError(
                parameter, value, f"`{parameter}` holds a lone surrogate and cannot be stored"
            ) from None
    return text


def completion_line(
    item_id: str,
    ts: int,
    extra: dict[str, Any] | None = None,
    result_json: str | None = None,
) -> str:
    """Build the JSONL line of a completion, ending in ``\\n``.

    The plain form ``{"id": "...", "ts": N}`` is the original format, and the
    loader reads it on a fast path.
    """
    parts = ['{"id": ', encode_basestring(item_id), ', "ts": ', str(ts)]
    if extra:
        heads = _KEY_HEADS
        for key, value in extra.items():
            head = heads.get(key)
            if head is None:
                head = _key_head(key)
            # Plain numbers and text are written as the encoder would, without
            # it; anything else (a usage dict) by the C encoder, in one call.
            kind = type(value)
            if kind is int or (kind is float and math.isfinite(value)):
                text = repr(value)
            elif kind is str:
                text = encode_basestring(value)
            else:
                text = _dumps(value)
            parts += (head, text)
    if result_json is not None:
        parts += (', "result": ', result_json)
    parts.append("}\n")
    return "".join(parts)


# `, "key": ` for the keys a completion carries, made once: most lines carry the same few.
_KEY_HEADS: dict[str, str] = {}
_KEY_HEADS_MAX = 64


def _key_head(key: str) -> str:
    """``, "key": `` for one key of a record, kept for the next line while there are few."""
    head = f", {encode_basestring(key)}: "
    if len(_KEY_HEADS) < _KEY_HEADS_MAX:
        _KEY_HEADS[key] = head
    return head


MAX_ERROR_CHARS: Final = 8000
"""The longest error text a failure record keeps; the rest is cut and counted.

An exception that quotes a whole response or prompt would otherwise make each
of its item's failure records as long, for every resume and ``status`` to read.
"""


def error_text(error: BaseException | str) -> str:
    """The text a failure record keeps of ``error``: ``"ValueError: message"``, cut at :data:`MAX_ERROR_CHARS`.

    An exception whose ``str()`` raises is named by its type alone, with a
    note: recording the failure must not fail.
    """
    if isinstance(error, str):
        text = error
    else:
        name = type(error).__name__
        try:
            message = str(error)
        except Exception as exc:  # its __str__ is broken: the type still says what failed
            message = f"<str() of the exception raised {type(exc).__name__}>"
        text = f"{name}: {message}" if message else name
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} more characters)"
    return text


def failure_record(
    item_id: str,
    ts: int,
    error: str,
    retryable: bool,
    usage: dict[str, Any] | None = None,
    attempt: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the record of a failed attempt (without ``attempt`` where the store counts them).

    ``extra`` holds the attempt's optional fields (``turns``, ``seconds``),
    written after ``retryable`` and before the usage.
    """
    record: dict[str, Any] = {"id": item_id, "ts": ts, "status": "failed", "error": error}
    if attempt is not None:
        record["attempt"] = attempt
    record["retryable"] = retryable
    if extra:
        record.update(extra)
    if usage:
        record["usage"] = usage
    return record


def failure_line(
    item_id: str,
    ts: int,
    error: str,
    attempt: int,
    retryable: bool,
    usage: dict[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Build the JSONL line of a failed attempt."""
    return _dumps(failure_record(item_id, ts, error, retryable, usage, attempt, extra)) + "\n"


def retry_line(item_id: str, ts: int) -> str:
    """Build the JSONL line that releases an item's failures (``agent-resume retry``)."""
    return _dumps({"id": item_id, "ts": ts, "status": "retry"}) + "\n"


@dataclass
class FailureInfo:
    """The failed attempts of an item not yet done.

    Attributes:
        attempts: Failed attempts since the item was last released.
        error: The last error, as ``"Type: message"``.
        retryable: Whether the last failure may be retried.
    """

    attempts: int
    error: str
    retryable: bool


RecordKind = Literal[
    "header", "done", "failed", "retry", "call", "run", "state", "batch", "unknown"
]
"""The kinds of record a checkpoint holds; see the table in this module's docstring."""


def kind_of(record: Mapping[str, Any]) -> RecordKind:
    """The kind of a decoded record, by the one rule every reader shares.

    Args:
        record: A record as decoded from a line or a row.

    Returns:
        Its kind; ``"unknown"`` for a record this version does not know (it is
        kept, and readers skip it).
    """
    if "agent_resume" in record:
        return "header"
    if record.get("id") is not None:
        status = record.get("status")
        if status is None or status == "done":
            return "done"
        if status == "failed" or status == "retry":
            return status  # type: ignore[no-any-return]
        return "unknown"
    for kind in ("call", "run", "state", "batch"):
        if kind in record:
            return kind
    return "unknown"


@dataclass
class JobState:
    """What a store knows about a job when a session opens it.

    Attributes:
        job_id: The job's ID.
        created: When the job was created (Unix seconds), if known.
        done: The IDs of the items done.
        done_order: The same IDs in the order their completions were read or
            recorded (an ID done twice may appear twice). Whatever adds an ID
            to ``done`` appends it here too; ``remaining()`` reads it to find
            the done IDs of a range of input without probing a large set. A
            state whose ``done_order`` is shorter than ``done`` (a store that
            fills ``done`` alone) is read through ``done`` only.
        fingerprints: The fingerprint stored with each completion that has one.
        failures: The failed attempts of the items not done.
        runs: The run records, oldest first.
        bad_lines: Lines skipped as corrupt while loading.
        state: The job's state map (``session.state``), as its latest state
            record (``{"state": {...}, "ts": ...}``) left it.
        resumed: Whether the store held records of the job when it was opened.
    """

    job_id: str
    created: int | None = None
    done: set[str] = field(default_factory=set)
    done_order: list[str] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    failures: dict[str, FailureInfo] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def resumed(self) -> bool:
        """Whether the job had records (completions, failures, runs or state) when opened."""
        return bool(self.done or self.failures or self.runs or self.state)

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one decoded, validated record into the state."""
        kind = kind_of(record)
        if kind == "run":
            self.runs.append(record)
            return
        if kind == "state":
            if isinstance(record["state"], dict):
                self.state = record["state"]
            return
        if kind not in ("done", "failed", "retry"):
            return
        item_id: str = record["id"]
        if kind == "done":
            self.done.add(item_id)
            self.done_order.append(item_id)
            self.failures.pop(item_id, None)
            fp = record.get("fp")
            if isinstance(fp, str):
                self.fingerprints[item_id] = fp
        elif kind == "failed":
            if item_id in self.done:
                return
            previous = self.failures.get(item_id)
            attempt = record.get("attempt")
            if not isinstance(attempt, int) or isinstance(attempt, bool):
                attempt = (previous.attempts if previous else 0) + 1
            self.failures[item_id] = FailureInfo(
                attempts=attempt,
                error=str(record.get("error", "")),
                retryable=record.get("retryable", True) is not False,
            )
        else:
            self.failures.pop(item_id, None)


def usage_dict(usage: Any) -> dict[str, Any]:
    """Turn a ``Usage`` (anything with ``to_dict()``) or a mapping into a JSON-able dict.

    Raises:
        ArgumentTypeError: The value is neither.
    """
    to_dict = None if type(usage) is dict else getattr(usage, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
    elif type(usage) is dict or isinstance(usage, Mapping):
        data = dict(usage)
    else:
        raise ArgumentTypeError(
            "usage",
            usage,
            f"`usage` must be a Usage or a dict (got {type(usage).__name__}); "
            "use usage_from(response) to read one from an SDK response",
        )
    if not _flat_json(data):
        check_json(data, "usage")
    return data  # type: ignore[no-any-return]


def _flat_json(data: Any) -> bool:
    """Whether ``data`` is a dict of ASCII keys to ints, finite floats and ASCII strings.

    Such a dict always encodes as JSON, so the full check (an encoding) is
    skipped for it: a usage dict is written once per item.
    """
    if type(data) is not dict:
        return False
    for key, value in data.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(value)
        if kind is int:
            continue
        if kind is str:
            if not value.isascii():
                return False
        elif kind is not float or not math.isfinite(value):
            return False
    return True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a job's records are read in bulk.

    A million records make millions of dicts and lists, none of them in a
    cycle (reference counting frees them), and each few hundred allocations
    start a collection that walks them all again: a quarter of the time of
    a job budget's read. The collector's state is put back afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
