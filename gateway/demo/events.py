"""One printed line per event: `<source> <event> key=value ...`, shell-quoted where needed.

People read it in a terminal; tests split it back with `parse_event`.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    source: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_$#")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}"
    # One event, one line, however the reader splits lines (text mode also splits at \r).
    return str(value).replace("\r", " ").replace("\n", " ")


def _quote(text: str) -> str:
    """Bare when safe, else double quotes (readable for JSON bodies); shlex.split undoes it."""
    if text and all(c in _SAFE for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_event(source: str, name: str, /, **fields: object) -> str:
    parts = [source, name]
    parts.extend(f"{key}={_quote(_text(value))}" for key, value in fields.items())
    return " ".join(parts)


def parse_event(line: str) -> Event | None:
    """The event on ``line``, or None when the line is not one (a traceback, a blank line)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or "=" in words[0] or "=" in words[1]:
        return None
    fields: dict[str, str] = {}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            return None
        fields[key] = value
    return Event(words[0], words[1], fields)


_write_lock = threading.Lock()
_broken_pipe_hooks: list[Callable[[], None]] = []


def on_broken_pipe(callback: Callable[[], None]) -> None:
    """Call ``callback`` once if standard output goes away (`python -m gateway.demo | head`);
    output is silenced from then on. Without a hook a broken pipe raises as usual."""
    _broken_pipe_hooks.append(callback)


def die_on_broken_pipe() -> None:
    """What `yes | head` does: end quietly when the reader is gone (the demo's clients)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def write_line(line: str) -> None:
    """Print one line. Thread-safe (the devices print from paho's network threads: print()
    writes the text and the newline separately, so lines of two threads could interleave), and
    flushed per line because the runner and the tests read it through a pipe."""
    with _write_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            if not _broken_pipe_hooks:
                raise
            # Point stdout at /dev/null so later writes (and the flush at exit) succeed.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            hooks = list(_broken_pipe_hooks)
            _broken_pipe_hooks.clear()
            for hook in hooks:
                hook()


def emit(source: str, name: str, /, **fields: object) -> None:
    write_line(format_event(source, name, **fields))
