"""Item fingerprints: a short hash of an item's content, to notice items that changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from agent_resume._errors import ArgumentTypeError
from agent_resume._records import plain_json

__all__ = ["Fingerprinter", "content_fingerprint", "make_fingerprinter"]

Fingerprinter = Callable[[Any], str]


def content_fingerprint(item: Any) -> str:
    """Hash an item's content: 16 hex digits of BLAKE2b over its canonical JSON.

    Dataclasses, pydantic models (``model_dump``) and plain objects (their
    ``__dict__``) are turned into dicts first, and values inside the item
    are read as a result is stored (numpy values as their ``tolist()``);
    keys are sorted, so the order of a dict's keys does not change the
    fingerprint.

    Raises:
        ArgumentTypeError: The item holds something JSON cannot encode; pass a
            callable as ``fingerprint=`` to say how to hash such items.
    """
    data: Any = item
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        data = dataclasses.asdict(item)
    elif hasattr(item, "model_dump"):
        data = item.model_dump(mode="json")
    elif not isinstance(item, (Mapping, list, tuple, str, int, float, bool)) and hasattr(
        item, "__dict__"
    ):
        data = vars(item)
    try:
        text = json.dumps(
            data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=plain_json
        )
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            "fingerprint",
            item,
            f"cannot fingerprint an item of type {type(item).__name__} ({exc}); "
            "pass fingerprint=<callable returning a str> to resume_or_start()",
        ) from None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def make_fingerprinter(fingerprint: bool | Fingerprinter | None) -> Fingerprinter | None:
    """Turn the ``fingerprint`` setting into a function, or ``None`` when off.

    Raises:
        ArgumentTypeError: The setting is neither a bool, ``None`` nor a callable.
    """
    if fingerprint is None or fingerprint is False:
        return None
    if fingerprint is True:
        return content_fingerprint
    if callable(fingerprint):
        user: Fingerprinter = fingerprint

        def checked(item: Any) -> str:
            value = user(item)
            if not isinstance(value, str) or not value:
                raise ArgumentTypeError(
                    "fingerprint",
                    value,
                    f"the `fingerprint` callable must return a non-empty str (got {value!r:.80})",
                )
            return value

        return checked
    raise ArgumentTypeError(
        "fingerprint",
        fingerprint,
        f"`fingerprint` must be True, False, None or a callable (got {fingerprint!r:.80})",
    )
