"""Flow control for MQTT publishers (gateway/core/flow.py) through the shell's read gate.

A connection whose publishes reached a queue over its high watermark stops being read until
that queue drains. MQTT has no "blocked" packet: the client simply is not read. The shell
already offers what the memory alarm uses for exactly that, ``block()`` / ``unblock()``; the
handler finds them on the shell object its callbacks are bound to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ReadGate = tuple[Callable[[], None], Callable[[], None]]


def read_gate(callback: Callable[[], None]) -> ReadGate | None:
    """``(pause, resume)`` for the shell that ``callback`` is a bound method of, or None when
    it offers no ``block``/``unblock`` (then publishers are bounded by the memory alarm only).

    Resuming while the memory alarm is raised hands the connection to the alarm instead, which
    resumes it when the queues drain below the global limit.
    """
    shell: Any = getattr(callback, "__self__", None)
    block = getattr(shell, "block", None)
    unblock = getattr(shell, "unblock", None)
    if not callable(block) or not callable(unblock):
        return None
    alarm = getattr(shell, "alarm", None)

    def resume() -> None:
        if alarm is not None and alarm.alarmed:
            alarm.published(shell)
        else:
            unblock()

    return block, resume
