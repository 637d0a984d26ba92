"""The run layer: ``ResumableRun`` and everything one run shares.

Configuration (``RunConfig``), the per-item context (``ItemContext``), the
run's shared state, signals, progress, the report and OpenTelemetry. It drives
a session; nothing below it imports it.
"""
