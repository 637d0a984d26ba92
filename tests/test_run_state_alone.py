"""``RunState.alone``: one thread counting items takes no lock, and still wakes a waiter.

A serial run and ``arun``'s event loop admit, end and count items in one
thread (issue 15: the three lock round trips were a tenth of a no-op item's
cost); a thread that waits on the state must still be woken when an item ends.
"""

from __future__ import annotations

import threading

from agent_resume import RunConfig
from agent_resume._run._state import RunState


def _state() -> RunState:
    state = RunState(RunConfig(job_id="j", store="memory:", progress=False))
    state.alone = True
    return state


def test_one_thread_counts_items_exactly() -> None:
    state = _state()
    for _ in range(3):
        state.admit()
    state.item_done(0.01, recorded=True)
    state.item_done(0.01, recorded=False)  # done before, by another worker
    state.item_done(0.01, recorded=True)
    assert (state.admitted, state.in_flight, state.done) == (3, 3, 2)
    for _ in range(3):
        state.left()
    assert (state.admitted, state.in_flight, state.done) == (3, 0, 2)


def test_an_item_ending_wakes_a_thread_waiting_on_the_state() -> None:
    state = _state()
    state.admit()
    woken = threading.Event()
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        state.wait_change(30.0)
        woken.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert waiting.wait(5)
    # The waiter waits 30 s unless notified; an item ending must notify it.
    # It may not be counted as waiting yet at the first end: end items for
    # up to 5 s, well short of its own 30.
    for _ in range(100):
        state.left()
        state.admit()
        if woken.wait(0.05):
            break
    assert woken.is_set()
    thread.join(5)
