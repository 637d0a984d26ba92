"""Child process for the codec crash test: saves conversations until killed.

Usage: python _codec_child.py PATH START

Saves conversation number START, START+1, ... to PATH, and after each save
returns prints its number on stdout, so the parent knows which save was
acknowledged when it kills this process.
"""

from __future__ import annotations

import sys

from agent_resume._codec import save_conversation


def conversation(number: int) -> list[dict[str, object]]:
    # Big enough (about 300 kB) that a kill often lands mid-write.
    filler = f"turn of conversation {number}\u2028line\n" * 400
    return [
        {"role": "user", "content": f"conversation {number}", "n": number},
        *({"role": "assistant", "content": filler, "n": number, "i": i} for i in range(20)),
    ]


def main() -> None:
    path, start = sys.argv[1], int(sys.argv[2])
    number = start
    while True:
        save_conversation(path, conversation(number))
        sys.stdout.write(f"{number}\n")
        sys.stdout.flush()
        number += 1


if __name__ == "__main__":
    main()
