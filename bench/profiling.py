"""Where the gateway spends its time during the runs: py-spy (sampling, attached to the running
process, low overhead) or cProfile (deterministic, inside the process, slows it down a lot).

py-spy writes collapsed stacks (`frame;frame;leaf count` per line, each frame `func (file:line)`);
the summary adds up the samples per leaf function ("own time") and names its hottest line.
"""

from __future__ import annotations

import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from io import StringIO
from pathlib import Path

# Leaf frames of threads that wait for work: py-spy samples them although they use no CPU.
_IDLE_LEAVES = ("Condition.wait (threading.py", "Event.wait (threading.py", "_worker (concurrent")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


class PySpy:
    """`py-spy record` attached to one process until `stop()`."""

    def __init__(self, pid: int, out: Path) -> None:
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(binary).exists():
            raise FileNotFoundError("py-spy not found (pip install py-spy into the venv)")
        self.out = out
        # Blocking sampling (the default) pauses the gateway for each stack read: exact stacks at a
        # small cost; --nonblocking would misattribute lines while the process runs.
        argv = [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
        argv += ["--output", str(out)]
        log = out.with_suffix(".log").open("wb")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT makes py-spy write its file and exit."""
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    return path.removeprefix(root)


def summarize_collapsed(path: Path, top: int = 25) -> str:
    """Own-time per function from py-spy's collapsed stacks, hottest first."""
    by_function: Counter[tuple[str, str]] = Counter()
    by_line: Counter[tuple[str, str, str]] = Counter()
    total = 0
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(_IDLE_LEAVES):
            continue  # a helper thread blocked in a wait (e.g. the store writer): not CPU
        total += count
        match = _FRAME.match(frames[-1])
        if match is None:
            by_function[("?", frames[-1])] += count
            continue
        func = match["func"]
        if match["file"] == "<string>" and len(frames) > 1:
            # Generated code (a dataclass __init__): charge it to the line that called it.
            caller = _FRAME.match(frames[-2])
            if caller is not None:
                func = f"{caller['func']} -> generated {func.rsplit('.', 1)[-1]}"
                match = caller
        key = (_short(match["file"]), func)
        by_function[key] += count
        by_line[(*key, match["line"])] += count
    if not total:
        return "py-spy recorded no samples"
    hottest_line: dict[tuple[str, str], tuple[str, int]] = {}
    for (file, func, line), count in by_line.items():
        if count > hottest_line.get((file, func), ("", 0))[1]:
            hottest_line[(file, func)] = (line, count)
    lines = [f"{'own %':>6}  function (file:hottest line)", "-" * 60]
    for (file, func), count in by_function.most_common(top):
        line = hottest_line.get((file, func), ("?", 0))[0]
        lines.append(f"{100 * count / total:6.1f}  {func} ({file}:{line})")
    lines.append(f"{total} samples of the gateway on CPU (waiting helper threads left out)")
    return "\n".join(lines)


def summarize_cprofile(path: Path, top: int = 25) -> str:
    out = StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()
