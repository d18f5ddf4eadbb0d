"""A bare MQTT QoS 0 relay on uvloop: the floor of what Python and uvloop cost, as a peer.

Not a broker: it answers CONNECT, SUBSCRIBE and PINGREQ, forwards every QoS 0 PUBLISH to every
subscriber whatever the topic, and keeps nothing else. Each read's PUBLISHes are forwarded as
one slice of the bytes read, one write per subscriber. The harness runs it as the peer `relay`
(`--brokers gateway,relay`, scenarios S1, S6 and S7 only), so that the gateway's figures can be
read against the same language and event loop doing almost nothing per message: what the
gateway adds over it is the gateway's own code, what mosquitto gains over it is C.

    python -m bench.relay PORT     # prints "listening PORT" once ready
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

HOST = "127.0.0.1"
CONNACK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(body start, packet end) of the packet at `pos`, or None until it is all there."""
    length = 0
    shift = 0
    i = pos + 1
    while i < end and shift <= 21:
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            stop = i + length
            return (i, stop) if stop <= end else None
        shift += 7
    return None


class RelayProtocol(asyncio.Protocol):
    subscribers: set[asyncio.Transport] = set()  # noqa: RUF012 - shared by every connection

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.subscribers.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buf = self.buffer + data if self.buffer else data
        pos = 0
        end = len(buf)
        run_start = -1  # start of the current run of consecutive PUBLISHes
        while True:
            header = _header(buf, pos, end)
            if header is None:
                break
            body_at, stop = header
            kind = buf[pos] & 0xF0
            if kind == 0x30:
                if run_start < 0:
                    run_start = pos
            else:
                if run_start >= 0:
                    self._forward(buf[run_start:pos])
                    run_start = -1
                self._control(kind, buf[body_at:stop], transport)
            pos = stop
        if run_start >= 0:
            self._forward(buf[run_start:pos])
        self.buffer = buf[pos:]

    def _forward(self, publishes: bytes) -> None:
        for subscriber in self.subscribers:
            subscriber.write(publishes)

    def _control(self, kind: int, body: bytes, transport: asyncio.Transport) -> None:
        if kind == 0x10:  # CONNECT
            transport.write(CONNACK)
        elif kind == 0x80:  # SUBSCRIBE: grant QoS 0 to each filter
            granted = self._filters(body)
            transport.write(bytes((0x90, 2 + granted)) + body[:2] + b"\x00" * granted)
            self.subscribers.add(transport)
        elif kind == 0xC0:  # PINGREQ
            transport.write(PINGRESP)
        elif kind == 0xE0:  # DISCONNECT
            transport.close()

    @staticmethod
    def _filters(body: bytes) -> int:
        """Topic filters in a 3.1.1 SUBSCRIBE body (packet id, then length-prefixed filters
        each followed by an options byte)."""
        pos = 2
        count = 0
        while pos + 2 <= len(body):
            pos += 2 + ((body[pos] << 8) | body[pos + 1]) + 1
            count += 1
        return count


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RelayProtocol, HOST, port, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))


if __name__ == "__main__":
    main()
