"""Memory and CPU of a broker process, read from /proc (Linux only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS: resident now, VmHWM: peak resident)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of the process (all its threads) so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def descendants(root: int) -> list[int]:
    """Every process below `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def wait_idle(
    pid: int, *, quiet_cpu_s: float = 0.005, interval: float = 0.1, limit: float = 3.0
) -> None:
    """Wait until the process used at most `quiet_cpu_s` of CPU in one `interval`, or `limit`
    seconds pass. A broker still closing the previous run's connections (S7: thousands of
    them) or collecting garbage would otherwise spend the next run's first moments on that."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while last is not None and time.monotonic() < deadline:
        time.sleep(interval)
        now = cpu_seconds(pid)
        if now is None or now - last <= quiet_cpu_s:
            return
        last = now
