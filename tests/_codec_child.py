"""Child process for the codec crash test: saves conversations until killed.

Usage: python _codec_child.py PATH START [grow]

Saves conversation number START, START+1, ... to PATH, and after each save
returns prints its number on stdout, so the parent knows which save was
acknowledged when it kills this process.

With ``grow``, it instead resumes the conversation at PATH with a
``ConversationLog`` and appends message after message (message ``n`` is
``grown(n)``), printing each ``n`` once its save returned.
"""

from __future__ import annotations

import sys

from agent_resume._codec import ConversationLog, save_conversation


def conversation(number: int) -> list[dict[str, object]]:
    # Big enough (about 300 kB) that a kill often lands mid-write.
    filler = f"turn of conversation {number}\u2028line\n" * 400
    return [
        {"role": "user", "content": f"conversation {number}", "n": number},
        *({"role": "assistant", "content": filler, "n": number, "i": i} for i in range(20)),
    ]


def grown(n: int) -> dict[str, object]:
    # Lines of a few kB, so that a kill often lands in the middle of one.
    return {"role": "assistant" if n % 2 else "user", "n": n, "text": f"message {n}\u2028" * 300}


def grow(path: str) -> None:
    log = ConversationLog(path)
    messages = log.messages
    while True:
        messages.append(grown(len(messages)))
        log.save(messages)
        sys.stdout.write(f"{len(messages) - 1}\n")
        sys.stdout.flush()


def main() -> None:
    path, start = sys.argv[1], int(sys.argv[2])
    if sys.argv[3:] == ["grow"]:
        grow(path)
        return
    number = start
    while True:
        save_conversation(path, conversation(number))
        sys.stdout.write(f"{number}\n")
        sys.stdout.flush()
        number += 1


if __name__ == "__main__":
    main()
