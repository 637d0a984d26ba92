"""The ``agent-resume`` command line (also ``python -m agent_resume``).

``_main`` builds the parser and maps errors to exit codes; each subcommand
lives in a module of its own, reading stores through their public protocol.
"""

from agent_resume._cli._main import main

__all__ = ["main"]
