"""One pass of ``remaining()`` that marks items inside its loop, for the ``remaining()`` tests."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable

from agent_resume import DuplicateItemWarning, Session


def take_marking(
    session: Session,
    items: Iterable[str],
    rng: random.Random,
    *,
    mark: float,
    ahead: float,
    ahead_ids: int,
) -> list[str]:
    """The items the pass hands out; after each, a roll of ``rng`` may mark one.

    With probability ``mark`` the item just handed out is marked done; with
    probability ``ahead`` an ID ``k000000`` to ``k{ahead_ids - 1}``, which
    may be ahead of the loop. Repeats in the input are not warned about.
    """
    out: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateItemWarning)
        for item in session.remaining(items):
            out.append(item)
            roll = rng.random()
            if roll < mark:
                session.mark_done(item)
            elif roll < mark + ahead:
                session.mark_done(f"k{rng.randrange(ahead_ids):06d}")  # ahead of the loop
    return out
