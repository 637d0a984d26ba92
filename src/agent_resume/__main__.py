"""``python -m agent_resume``: the command line."""

import sys

from agent_resume._cli._main import main

if __name__ == "__main__":
    sys.exit(main())
