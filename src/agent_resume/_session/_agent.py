"""The original API's entry point: ``AgentResume`` opens a job on a store as a ``Session``."""

from __future__ import annotations

import os
from typing import get_args

from agent_resume import _validate as validate
from agent_resume._fingerprint import Fingerprinter, make_fingerprinter
from agent_resume._session._session import OnChange, Session
from agent_resume.stores import Store, open_store

__all__ = ["AgentResume"]

ON_CHANGE: tuple[OnChange, ...] = get_args(OnChange)


class AgentResume:
    """Opens resumable jobs on a store.

    Args:
        store: A :class:`~agent_resume.stores.Store`, or a path or URL for
            :func:`~agent_resume.stores.open_store`.
    """

    def __init__(self, store: Store | str | os.PathLike[str]) -> None:
        self.store: Store = open_store(store)

    def __repr__(self) -> str:
        return f"AgentResume(store={self.store!r})"

    def resume_or_start(
        self,
        job_id: str,
        *,
        max_attempts: int = 3,
        fingerprint: bool | Fingerprinter | None = None,
        on_change: OnChange = "rerun",
    ) -> Session:
        """Open the job, loading what earlier sessions recorded, or start it.

        Args:
            job_id: The job's ID; the store must hold this job or none.
            max_attempts: Failed attempts after which an item is quarantined.
            fingerprint: ``True`` to hash each item's content, or a callable
                returning a string per item; ``None`` or ``False`` for none.
            on_change: What to do with a done item whose content changed:
                ``"rerun"`` it, ``"keep"`` the old completion, or raise
                (``"error"``).

        Returns:
            An open session; use it as a context manager.

        Raises:
            ArgumentValueError: A setting is out of range.
            JobMismatchError: The store holds another job.
            JobLockedError: Another live session holds the job.
        """
        job_id = validate.job_id(job_id)
        validate.positive_int("max_attempts", max_attempts)
        validate.choice("on_change", on_change, ON_CHANGE)
        validate.fingerprint_setting(fingerprint)
        fingerprinter = make_fingerprinter(fingerprint)
        state = self.store.open(job_id)
        return Session(self.store, state, max_attempts, fingerprinter, on_change)
