"""`gateway run` tunes the process once it is up (gateway/app.py): the collector stops walking
what start-up built, glibc keeps rare big buffers (scrypt's 16 MiB) out of the heap, and the
kernel's fd table is grown once before threads share it. Each
check runs in a fresh interpreter so the test process keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds() -> None:
    out = run_python(
        """
        import gc
        from gateway.app import GC_THRESHOLDS, tune_gc
        before = gc.get_freeze_count()
        tune_gc()
        print(before, gc.get_freeze_count() > 10_000, gc.get_threshold() == GC_THRESHOLDS)
        """
    )
    assert out == "0 True True"


def test_tune_malloc_gives_a_big_freed_buffer_back_to_the_os() -> None:
    # Without the pinned threshold the second 16 MiB scrypt buffer stays in the heap after
    # it is freed (glibc raised its mmap threshold when the first one was unmapped): RSS ends
    # about 16 MiB higher (measured: 16,212 KiB untuned, 0 tuned).
    out = run_python(
        """
        import hashlib
        from gateway.app import tune_malloc

        def rss_kib() -> int:
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
            raise AssertionError("no VmRSS")

        tune_malloc()
        base = rss_kib()
        for _ in range(2):  # start-up's hash, then the first login's
            hashlib.scrypt(b"guest", salt=b"s" * 16, n=16384, r=8, p=1, maxmem=64 * 1024 * 1024)
        print(rss_kib() - base < 8 * 1024)
        """
    )
    assert out == "True"


def fd_table_slots_after_presize(soft_limit: int | None) -> tuple[int, int, int]:
    """(slots returned, FDSize before, FDSize after) in a fresh interpreter."""
    out = run_python(
        f"""
        import resource
        from gateway.app import presize_fd_table

        def fd_size() -> int:
            for line in open("/proc/self/status"):
                if line.startswith("FDSize:"):
                    return int(line.split()[1])
            raise AssertionError("no FDSize")

        soft_limit = {soft_limit!r}
        if soft_limit is not None:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))
        before = fd_size()
        slots = presize_fd_table()
        print(slots, before, fd_size())
        """
    )
    slots, before, after = (int(word) for word in out.split())
    return slots, before, after


def test_presize_fd_table_grows_the_table_once_up_front() -> None:
    import resource

    from gateway.app import FD_TABLE_SLOTS

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = FD_TABLE_SLOTS if soft == resource.RLIM_INFINITY else min(soft, FD_TABLE_SLOTS)
    slots, before, after = fd_table_slots_after_presize(None)
    assert slots == expected
    assert before < expected <= after  # the kernel rounds the table up to a power of two


def test_presize_fd_table_stays_within_a_low_open_files_limit() -> None:
    slots, before, after = fd_table_slots_after_presize(2048)
    assert slots == 2048
    assert before < 2048 <= after < 4096
