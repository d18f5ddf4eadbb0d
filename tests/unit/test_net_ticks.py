"""gateway/net.py's timer wheel hands a burst of connections one shared tick object (issue 7,
S7: 32 bytes less per idle connection) without mixing up ticks."""

from __future__ import annotations

import asyncio
from typing import cast

from gateway.net import MachineProtocol, TimerWheel
from tests.unit.shell.test_net_scheduling import FakeLoop, TimedProtocol


def test_protocols_in_one_tick_share_its_int_and_each_keeps_its_own_timer() -> None:
    loop = FakeLoop()
    loop.now = 1_000_000.0  # ticks far above the small-int cache
    wheel = TimerWheel(cast(asyncio.AbstractEventLoop, loop))
    log: list[str] = []
    protocols = [cast(MachineProtocol, TimedProtocol(log, str(n))) for n in range(4)]
    ticks = [wheel.schedule(10.0, protocol) for protocol in protocols[:3]]
    assert ticks[0] == ticks[1] == ticks[2]
    assert ticks[1] is ticks[0]
    assert ticks[2] is ticks[0]
    other = wheel.schedule(60.0, protocols[3])
    assert other != ticks[0]
    assert len(loop.at) == 2
    # A tick handed out earlier is still matched by value after another tick was made.
    assert wheel.schedule(10.0, protocols[1]) == ticks[0]
    wheel.cancel(ticks[0], protocols[0])
    _, callback, args, handle = loop.at[0]
    assert not handle.cancelled
    callback(*args)
    assert log == ["1", "2"]
    _, later, later_args, _ = loop.at[1]
    later(*later_args)
    assert log == ["1", "2", "3"]
