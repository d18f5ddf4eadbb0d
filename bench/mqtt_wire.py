"""A raw MQTT 3.1.1 load client: an asyncio.Protocol that scans packets without building objects.

Control packets are encoded with the project's own codec; the hot path (PUBLISH out, PUBLISH and
PUBACK in) is a hand-written scan over the receive buffer so the client costs far less per
message than any broker it measures. MQTT 3.1.1 is used against every broker because RabbitMQ
3.10's MQTT plugin speaks nothing newer.
"""

from __future__ import annotations

import asyncio
from typing import cast

from bench.meter import STAMP, STAMP_SIZE, Meter, Pacer, now_ns
from gateway.mqtt.codec import encode, encode_publish_header
from gateway.mqtt.packets import MQTT_3_1_1, Connect, Subscribe, SubscriptionOptions

_PUBLISH = 3
_PUBACK = 4
_CONNACK = 2
_SUBACK = 9
_PID_SLOTS = 1 << 16
CLOSE_GRACE = 5.0  # seconds for the broker to close a connection we are leaving
_unpack_stamp = STAMP.unpack_from


class MqttError(Exception):
    """The broker refused the connection or a subscription."""


class MqttClient(asyncio.Protocol):
    """One connection. With a meter it counts deliveries and PUBACKs into it."""

    def __init__(self, meter: Meter | None) -> None:
        loop = asyncio.get_running_loop()
        self.meter = meter
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[bytes] | None = None  # made by subscribe()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        # Send time of each in-flight QoS 1 packet id, for the PUBACK round trip.
        self.sent_at = [0] * _PID_SLOTS
        self._buf = b""

    # asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        for fut in (self.connack, self.suback):
            if fut is not None and not fut.done():
                fut.set_exception(MqttError(f"connection lost: {exc or 'closed by broker'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        at = now_ns()
        meter = self.meter
        delivered = 0
        acked = 0
        latencies = meter.latencies_ns if meter is not None else []
        sample_delivery = meter is not None and meter.latency_on_delivery
        pubacks: list[bytes] = []
        while pos + 2 <= size:
            first = buf[pos]
            # Remaining Length: a variable byte integer of at most 4 bytes.
            cursor = pos + 1
            remaining = 0
            shift = 0
            while cursor < size:
                byte = buf[cursor]
                cursor += 1
                remaining |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            else:
                break
            end = cursor + remaining
            if end > size:
                break
            kind = first >> 4
            if kind == _PUBLISH:
                body = cursor + 2 + ((buf[cursor] << 8) | buf[cursor + 1])
                if first & 0x06:
                    pubacks.append(b"\x40\x02" + buf[body : body + 2])
                    body += 2
                delivered += 1
                if sample_delivery and end - body >= STAMP_SIZE:
                    latencies.append(at - _unpack_stamp(buf, body)[0])
            elif kind == _PUBACK:
                pid = (buf[cursor] << 8) | buf[cursor + 1]
                acked += 1
                latencies.append(at - self.sent_at[pid])
            elif kind == _CONNACK:
                if not self.connack.done():
                    self.connack.set_result(buf[cursor + 1])
            elif kind == _SUBACK and self.suback is not None and not self.suback.done():
                self.suback.set_result(buf[cursor + 2 : end])
            pos = end
        self._buf = buf[pos:] if pos < size else b""
        if pubacks and self.transport is not None:
            self.transport.write(b"".join(pubacks))
        if meter is not None:
            if delivered:
                meter.on_delivered(delivered, at)
            if acked:
                meter.on_settled(acked, at)

    # Commands ---------------------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        assert self.transport is not None
        self.suback = asyncio.get_running_loop().create_future()
        packet = Subscribe(1, ((topic_filter, SubscriptionOptions(qos=qos)),))
        self.transport.write(encode(packet, MQTT_3_1_1))
        codes = await self.suback
        if not codes or codes[0] >= 0x80:
            raise MqttError(f"subscription to {topic_filter!r} refused: {codes.hex()}")

    async def disconnect(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"\xe0\x00")
        self.transport.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.transport.abort()


async def mqtt_connect(host: str, port: int, client_id: str, meter: Meter | None) -> MqttClient:
    """Connect and wait for CONNACK (wrap in `asyncio.timeout` to bound it)."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: MqttClient(meter), host, port)
    assert client.transport is not None
    # Keep alive well beyond any run so an idle subscriber is never timed out by the broker.
    connect = Connect(
        client_id,
        MQTT_3_1_1,
        clean_start=True,
        keep_alive=600,
        username="guest",
        password=b"guest",
    )
    client.transport.write(encode(connect, MQTT_3_1_1))
    try:
        code = await client.connack
    except BaseException:
        client.transport.abort()
        raise
    if code != 0:
        client.transport.close()
        raise MqttError(f"CONNACK return code {code} for client {client_id!r}")
    return client


async def publish_qos0(
    client: MqttClient,
    meter: Meter,
    topic: str,
    count: int,
    payload_size: int,
    batch: int,
    idle_timeout: float,
    pace: Pacer | None = None,
) -> None:
    """Publish `count` QoS 0 messages, `batch` per write, inside the meter's window."""
    header = encode_publish_header(topic, payload_size, qos=0, version=MQTT_3_1_1)
    pad = bytes(payload_size - STAMP_SIZE)
    transport = client.transport
    assert transport is not None
    sent = 0
    while sent < count:
        credit = await meter.wait_credit(idle_timeout)
        if pace is not None:
            credit = min(credit, await pace.take(count - sent))
        n = min(batch, count - sent, credit)
        transport.write((header + STAMP.pack(now_ns()) + pad) * n)
        sent += n
        meter.sent += n
        await _yield_to_readers(client, idle_timeout)


async def publish_qos1(
    client: MqttClient,
    meter: Meter,
    topic: str,
    count: int,
    payload_size: int,
    batch: int,
    idle_timeout: float,
    pace: Pacer | None = None,
) -> None:
    """Publish `count` QoS 1 messages; the meter's window bounds the packets awaiting PUBACK."""
    if meter.window >= _PID_SLOTS:
        raise ValueError("a QoS 1 window must stay below 65536 packet identifiers")
    # Everything before the packet identifier, from the project's own encoder.
    prefix = encode_publish_header(topic, payload_size, qos=1, packet_id=1, version=MQTT_3_1_1)
    prefix = prefix[:-2]
    pad = bytes(payload_size - STAMP_SIZE)
    transport = client.transport
    assert transport is not None
    sent_at = client.sent_at
    pid = 0
    sent = 0
    while sent < count:
        credit = await meter.wait_credit(idle_timeout)
        if pace is not None:
            credit = min(credit, await pace.take(count - sent))
        n = min(batch, count - sent, credit)
        at = now_ns()
        tail = STAMP.pack(at) + pad
        chunks = []
        for _ in range(n):
            pid = pid % 0xFFFF + 1
            sent_at[pid] = at
            chunks.append(prefix + pid.to_bytes(2, "big") + tail)
        transport.write(b"".join(chunks))
        sent += n
        meter.sent += n
        await _yield_to_readers(client, idle_timeout)


async def _yield_to_readers(client: MqttClient, idle_timeout: float) -> None:
    if client.writable.is_set():
        # Let the receiving side of the loop run between batches.
        await asyncio.sleep(0)
    else:
        await asyncio.wait_for(client.writable.wait(), idle_timeout)
    if client.closed.done():
        raise MqttError("publisher connection closed by the broker")
