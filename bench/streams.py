"""Receive-side counters: how many messages arrived in a byte stream, at C speed where possible.

A benchmark stream is monotonous: every delivery of a run has the same size (same topic length,
payload size, properties). Each counter learns that record size from the first delivery it walks
packet by packet, then checks whole chunks with strided slices (`buf[0::size]` is one C call):
if every record in the chunk starts with the learnt bytes, the chunk holds `len // size`
deliveries and Python never touches them one by one. A chunk that does not fit the pattern (a
control frame, a different size) is walked record by record, which also re-learns the size.

The counters are sans-I/O: `feed(data, now_ns)` takes what `recv` returned and says what to send
back (MQTT PUBACKs for QoS 1 deliveries); the processes in bench/roles.py own the sockets.
"""

from __future__ import annotations

import struct

# The first 8 payload bytes carry the send time (time.monotonic_ns, one clock for all processes).
STAMP = struct.Struct(">Q")
STAMP_SIZE = STAMP.size
_U64 = struct.Struct(">Q")
_FRAME_HEAD = struct.Struct(">BHI")

MQTT_PUBLISH = 3


class StreamError(Exception):
    """The stream holds something a benchmark client does not expect (e.g. a channel.close)."""


def _remaining_length(buf: bytes, pos: int, size: int) -> tuple[int, int] | None:
    """MQTT Remaining Length at `pos`: (value, position after it), None if incomplete."""
    value = 0
    shift = 0
    while pos < size and shift <= 21:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


class MqttCounter:
    """Counts PUBLISH packets; for QoS 1 deliveries it builds the PUBACKs to send back.

    `latency=True` samples the send stamp of the last delivery of each chunk into `latencies_ns`
    (every delivery when the stream arrives one message per chunk, as it does at a paced rate).
    """

    __slots__ = (
        "_b0",
        "_b1",
        "_body_at",
        "_latency",
        "_pid_at",
        "_rest",
        "_size",
        "count",
        "latencies_ns",
        "others",
    )

    def __init__(self, *, latency: bool = False) -> None:
        self.count = 0
        self.others = 0  # packets that are not PUBLISH (PUBACK, PINGRESP, ...)
        self.latencies_ns: list[int] = []
        self._latency = latency
        self._rest = b""
        self._size = 0  # learnt delivery size, 0 until the first PUBLISH was walked
        self._b0 = 0  # its first byte (type and flags) and first Remaining Length byte
        self._b1 = 0
        self._pid_at = -1  # offset of the packet identifier in a delivery, -1 for QoS 0
        self._body_at = 0  # offset of the payload

    def feed(self, data: bytes, now_ns: int = 0) -> bytes:
        """Count what `data` completes; return the PUBACKs owed for QoS 1 deliveries."""
        buf = self._rest + data if self._rest else data
        size = self._size
        if size:
            n = len(buf) // size
            end = n * size
            if (
                n
                and buf[0:end:size] == bytes((self._b0,)) * n
                and buf[1:end:size] == bytes((self._b1,)) * n
            ):
                self.count += n
                self._rest = buf[end:]
                if self._latency:
                    self._sample(buf, end - size, now_ns)
                if self._pid_at < 0:
                    return b""
                acks = bytearray(4 * n)
                acks[0::4] = b"\x40" * n
                acks[1::4] = b"\x02" * n
                acks[2::4] = buf[self._pid_at : end : size]
                acks[3::4] = buf[self._pid_at + 1 : end : size]
                return bytes(acks)
        return self._walk(buf, now_ns)

    def _sample(self, buf: bytes, record: int, now_ns: int) -> None:
        at = record + self._body_at
        if at + STAMP_SIZE <= record + self._size:
            self.latencies_ns.append(now_ns - STAMP.unpack_from(buf, at)[0])

    def _walk(self, buf: bytes, now_ns: int) -> bytes:
        """Packet by packet; learns the delivery size from the PUBLISH packets it meets."""
        size = len(buf)
        pos = 0
        acks: list[bytes] = []
        last = -1
        while pos < size:
            head = _remaining_length(buf, pos + 1, size)
            if head is None:
                break
            remaining, body = head
            end = body + remaining
            if end > size:
                break
            first = buf[pos]
            if first >> 4 == MQTT_PUBLISH:
                topic_end = body + 2 + ((buf[body] << 8) | buf[body + 1])
                qos = (first >> 1) & 3
                if qos:
                    acks.append(b"\x40\x02" + buf[topic_end : topic_end + 2])
                self.count += 1
                last = pos
                self._size = end - pos
                self._b0 = first
                self._b1 = buf[pos + 1]
                self._pid_at = topic_end - pos if qos else -1
                self._body_at = topic_end - pos + (2 if qos else 0)
            else:
                self.others += 1
            pos = end
        self._rest = buf[pos:]
        if self._latency and last >= 0:
            self._sample(buf, last, now_ns)
        return b"".join(acks)


class AmqpDeliveryCounter:
    """Counts basic.deliver messages (method, header and body frames) on one channel.

    Delivery tags on a channel run 1, 2, 3, ...: after `feed` the consumer may ack everything
    up to `count` with one basic.ack(multiple). Other method frames are kept in `controls` (raw
    frames) for the caller to decode.
    """

    __slots__ = ("_body_at", "_latency", "_rest", "_size", "controls", "count", "latencies_ns")

    def __init__(self, *, latency: bool = False) -> None:
        self.count = 0
        self.controls: list[bytes] = []
        self.latencies_ns: list[int] = []
        self._latency = latency
        self._rest = b""
        self._size = 0
        self._body_at = 0

    def feed(self, data: bytes, now_ns: int = 0) -> None:
        buf = self._rest + data if self._rest else data
        size = self._size
        if size:
            n = len(buf) // size
            end = n * size
            # Frame type 1 (method) and class/method 60/60 (basic.deliver) at the start, the
            # frame-end octet at the end of every record.
            if (
                n
                and buf[0:end:size] == b"\x01" * n
                and buf[8:end:size] == b"\x3c" * n
                and buf[10:end:size] == b"\x3c" * n
                and buf[size - 1 : end : size] == b"\xce" * n
            ):
                self.count += n
                self._rest = buf[end:]
                if self._latency:
                    self._sample(buf, end - size, now_ns)
                return
        self._walk(buf, now_ns)

    def _sample(self, buf: bytes, record: int, now_ns: int) -> None:
        self.latencies_ns.append(now_ns - STAMP.unpack_from(buf, record + self._body_at)[0])

    def _walk(self, buf: bytes, now_ns: int) -> None:
        size = len(buf)
        pos = 0
        done = 0  # where the last complete record ends
        record = -1  # start of the delivery being assembled
        body_left = 0
        body_at = 0
        while pos + 7 <= size:
            kind, _channel, length = _FRAME_HEAD.unpack_from(buf, pos)
            end = pos + 7 + length + 1
            if end > size:
                break
            if kind == 1:
                if buf[pos + 7 : pos + 11] == b"\x00\x3c\x00\x3c":
                    record = pos
                else:
                    self.controls.append(buf[pos:end])
                    done = end
            elif kind == 2 and record >= 0:
                body_left = _U64.unpack_from(buf, pos + 11)[0]
                body_at = end + 7
            elif kind == 3 and record >= 0:
                body_left -= length
            elif kind == 8:
                done = end  # heartbeat
            if record >= 0 and kind != 1 and body_left <= 0:
                self.count += 1
                self._size = end - record
                self._body_at = body_at - record
                if self._latency and body_left == 0 and kind == 3 and length >= STAMP_SIZE:
                    self._sample(buf, record, now_ns)
                record = -1
                done = end
            pos = end
        self._rest = buf[done:]


class AmqpConfirmCounter:
    """Publisher confirms: the highest sequence number settled by basic.ack/basic.nack."""

    __slots__ = ("_rest", "confirmed", "controls", "nacked")

    RECORD = 21  # a basic.ack frame: 7 header + 4 method id + 8 tag + 1 flags + 1 frame end

    def __init__(self) -> None:
        self.confirmed = 0
        self.nacked = 0
        self.controls: list[bytes] = []
        self._rest = b""

    def feed(self, data: bytes) -> None:
        buf = self._rest + data if self._rest else data
        size = self.RECORD
        n = len(buf) // size
        end = n * size
        if (
            n
            and buf[0:end:size] == b"\x01" * n
            and buf[10:end:size] == b"\x50" * n
            and buf[20:end:size] == b"\xce" * n
        ):
            # Usually increasing, but a broker may confirm out of order (non-multiple acks).
            unpack = _U64.unpack_from
            self.confirmed = max(self.confirmed, *(unpack(buf, i)[0] for i in range(11, end, size)))
            self._rest = buf[end:]
            return
        self._walk(buf)

    def _walk(self, buf: bytes) -> None:
        size = len(buf)
        pos = 0
        while pos + 7 <= size:
            kind, _channel, length = _FRAME_HEAD.unpack_from(buf, pos)
            end = pos + 7 + length + 1
            if end > size:
                break
            method = buf[pos + 7 : pos + 11]
            if kind == 1 and method in (b"\x00\x3c\x00\x50", b"\x00\x3c\x00\x78"):
                tag = _U64.unpack_from(buf, pos + 11)[0]
                multiple = buf[pos + 19] & 1
                if method[3] == 0x78:
                    self.nacked += tag - self.confirmed if multiple else 1
                self.confirmed = max(self.confirmed, tag)
            elif kind == 1:
                self.controls.append(buf[pos:end])
            pos = end
        self._rest = buf[pos:]


class PubackCounter:
    """PUBACKs on a QoS 1 publisher's connection (4 bytes each in MQTT 3.1.1)."""

    __slots__ = ("_rest", "count")

    def __init__(self) -> None:
        self.count = 0
        self._rest = b""

    def feed(self, data: bytes) -> None:
        buf = self._rest + data if self._rest else data
        n = len(buf) // 4
        end = 4 * n
        if buf[0:end:4] == b"\x40" * n and buf[1:end:4] == b"\x02" * n:
            self.count += n
            self._rest = buf[end:]
            return
        counter = MqttCounter()
        counter.feed(buf)
        self.count += counter.others
        self._rest = counter._rest
