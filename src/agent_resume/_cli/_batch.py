"""``agent-resume batch STORE`` and ``batch cancel STORE``: a job's provider batches.

The list comes from the checkpoint's ``batch`` records, so it needs no
provider; ``--refresh`` and ``cancel`` build the provider's SDK client from
the environment (``OPENAI_API_KEY``/``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agent_resume._cli._exits import EXIT_STORE, CliError
from agent_resume._cli._targets import open_cli_store
from agent_resume._run._batch import Submission, submissions
from agent_resume._run._batch_providers import Adapter, adapter_for

_STORE_HELP = "a .jsonl path, a .db path, sqlite:///path.db or postgresql://..."


def register(sub: Any) -> None:
    """Add the ``batch`` subcommand."""
    p = sub.add_parser(
        "batch",
        help="list a job's provider batches, or cancel the open ones",
        description="List the provider batches a job submitted in batch mode (from its "
        "checkpoint), or with `batch cancel STORE` cancel the ones still open. The next "
        "run records what a cancelled batch had answered and runs the rest.",
    )
    p.add_argument("words", nargs="+", metavar="[cancel] STORE", help=_STORE_HELP)
    p.add_argument(
        "--refresh", action="store_true", help="ask the provider for each open batch's state"
    )
    p.set_defaults(func=batch)


def batch(args: argparse.Namespace) -> int:
    """Run ``batch``."""
    words: list[str] = args.words
    if len(words) == 2 and words[0] == "cancel":
        return _cancel(words[1])
    if len(words) != 1 or words == ["cancel"]:
        # `batch cancel` alone: a store named "cancel" is far less likely than a missing STORE.
        raise CliError(f"batch takes STORE or `cancel STORE` (got {' '.join(words)!r})")
    clients: dict[str, Adapter] = {}
    try:
        return _list(words[0], args.refresh, clients)
    finally:
        _close(clients)


def _close(clients: dict[str, Adapter]) -> None:
    for adapter in clients.values():
        adapter.client.close()


def _list(target: str, refresh: bool, clients: dict[str, Adapter]) -> int:
    store = open_cli_store(target)
    subs = submissions(store.iter_records())
    if not subs:
        print("no batches")
        return 0
    now = time.time()
    print(f"{'key':<12}  {'provider':<9}  {'batch':<24}  {'requests':>8}  {'age':>7}  state")
    for sub in subs:
        state = _state(sub)
        if refresh and sub.batch_id and not sub.ended:
            live = _ask(sub, lambda a, s=sub: a.state(str(s.batch_id)), clients)
            counts = ", ".join(f"{k} {v}" for k, v in live.counts.items())
            state = f"{live.status} ({counts})"
        age = _age(now - sub.ts)
        batch_id = sub.batch_id or "-"
        print(
            f"{sub.key[:12]:<12}  {sub.provider:<9}  {batch_id:<24}  {len(sub.ids):>8}  {age:>7}  {state}"
        )
    return 0


def _state(sub: Submission) -> str:
    if sub.ended:
        return f"ended ({sub.status}: {sub.error})" if sub.error else f"ended ({sub.status})"
    return "in flight" if sub.batch_id else "submitting (no batch ID recorded)"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _adapter(provider: str, cache: dict[str, Adapter]) -> Adapter:
    if provider not in cache:
        try:
            if provider == "openai":
                import openai

                client: Any = openai.OpenAI()
            else:
                import anthropic

                client = anthropic.Anthropic()
        except ImportError as exc:
            raise CliError(f"the {provider} package is not installed ({exc})") from exc
        except Exception as exc:
            raise CliError(f"cannot build the {provider} client: {exc}") from exc
        cache[provider] = adapter_for(client, None)
    return cache[provider]


def _ask(sub: Submission, what: Any, clients: dict[str, Adapter]) -> Any:
    adapter = _adapter(sub.provider, clients)
    try:
        return what(adapter)
    except Exception as exc:  # the SDK's errors are its own; say them in one line
        raise CliError(
            f"{sub.provider} batch {sub.batch_id}: {type(exc).__name__}: {exc}", EXIT_STORE
        ) from exc


def _cancel(target: str) -> int:
    store = open_cli_store(target)
    open_ = [s for s in submissions(store.iter_records()) if s.batch_id and not s.ended]
    clients: dict[str, Adapter] = {}
    try:
        for sub in open_:
            _ask(sub, lambda a, s=sub: a.cancel(str(s.batch_id)), clients)
            print(f"cancelled {sub.provider} batch {sub.batch_id} ({len(sub.ids)} requests)")
    finally:
        _close(clients)
    if not open_:
        print("no open batches")
    return 0
