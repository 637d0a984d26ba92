"""The original API's entry point: ``AgentResume`` opens a job on a store as a ``Session``."""

from __future__ import annotations

import os

from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._fingerprint import Fingerprinter, make_fingerprinter
from agent_resume._records import normalize_id
from agent_resume._session._session import OnChange, Session
from agent_resume.stores import Store, open_store

__all__ = ["AgentResume"]

_ON_CHANGE = ("rerun", "keep", "error")


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
        if not isinstance(job_id, str):
            raise ArgumentTypeError(
                "job_id",
                job_id,
                f"`job_id` must be a str (got {type(job_id).__name__} {job_id!r:.80})",
            )
        job_id = normalize_id(job_id, "job_id")
        if type(max_attempts) is not int:
            raise ArgumentTypeError(
                "max_attempts",
                max_attempts,
                f"`max_attempts` must be an int (got {type(max_attempts).__name__} {max_attempts!r})",
            )
        if max_attempts < 1:
            raise ArgumentValueError(
                "max_attempts",
                max_attempts,
                f"`max_attempts` must be at least 1 (got {max_attempts!r})",
            )
        if on_change not in _ON_CHANGE:
            raise ArgumentValueError(
                "on_change",
                on_change,
                f"`on_change` must be 'rerun', 'keep' or 'error' (got {on_change!r})",
            )
        fingerprinter = make_fingerprinter(fingerprint)
        state = self.store.open(job_id)
        return Session(self.store, state, max_attempts, fingerprinter, on_change)
