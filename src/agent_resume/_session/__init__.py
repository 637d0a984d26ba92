"""The session layer: ``AgentResume`` opens a job on a store as a ``Session``.

This is the original API. A session yields the items still to do and records
what happens to them; it knows stores through their protocol only.
"""
