"""A raw AMQP 0-9-1 load client: pamqp for the handshake and declarations, a frame scan for
deliveries and confirms, pre-encoded frames for publishing.

One channel (1) per connection. Deliveries are counted when their last body frame arrives; the
first body frame carries the send stamp. A consumer with acks answers each read with one
`basic.ack(multiple)` for the last delivery tag in it, as a batching client library would.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

from pamqp import commands, frame, header
from pamqp.base import Frame

from bench.meter import STAMP, STAMP_SIZE, Meter, Pacer, now_ns
from gateway.amqp.fastpath import encode_basic_ack

CHANNEL = 1
_FRAME_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_TAG = struct.Struct(">Q")
_BODY_SIZE = struct.Struct(">Q")
_TAG_SLOTS = 1 << 16
CLOSE_GRACE = 5.0  # seconds for the broker to answer connection.close
_FRAME_METHOD, _FRAME_HEADER, _FRAME_BODY = 1, 2, 3
_BASIC = 60
_DELIVER, _ACK, _NACK = 60, 80, 120
_unpack_stamp = STAMP.unpack_from
_unpack_head = _FRAME_HEAD.unpack_from


class AmqpError(Exception):
    """The broker closed the connection or channel, or answered with something unexpected."""


class AmqpClient(asyncio.Protocol):
    def __init__(self, meter: Meter | None) -> None:
        self.meter = meter
        self.transport: asyncio.Transport | None = None
        self.control: asyncio.Queue[object] = asyncio.Queue()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.manual_ack = False
        self.server_properties: dict[str, Any] = {}
        # Publisher confirms: send time per sequence number (ring), highest number confirmed.
        self.sent_at = [0] * _TAG_SLOTS
        self.confirmed = 0
        self.frame_max = 131072
        self._buf = b""
        self._body_left = 0
        self._body_first = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"AMQP\x00\x00\x09\x01")

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        self.control.put_nowait(AmqpError(f"connection lost: {exc or 'closed by broker'}"))
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
        latencies = meter.latencies_ns if meter is not None else []
        sample_delivery = meter is not None and meter.latency_on_delivery
        delivered = 0
        confirmed = 0
        last_tag = 0
        while pos + 8 <= size:
            kind, _channel, length = _unpack_head(buf, pos)
            start = pos + 7
            end = start + length
            if end >= size:
                break
            if kind == _FRAME_BODY:
                if self._body_first:
                    self._body_first = False
                    if sample_delivery and length >= STAMP_SIZE:
                        latencies.append(at - _unpack_stamp(buf, start)[0])
                self._body_left -= length
                if self._body_left <= 0:
                    delivered += 1
            elif kind == _FRAME_HEADER:
                self._body_left = _BODY_SIZE.unpack_from(buf, start + 4)[0]
                self._body_first = True
                if self._body_left == 0:
                    delivered += 1
            elif kind == _FRAME_METHOD:
                class_id, method_id = _METHOD_ID.unpack_from(buf, start)
                if class_id == _BASIC and method_id == _DELIVER:
                    tag_at = start + 5 + buf[start + 4]
                    last_tag = _TAG.unpack_from(buf, tag_at)[0]
                elif class_id == _BASIC and method_id in (_ACK, _NACK):
                    tag = _TAG.unpack_from(buf, start + 4)[0]
                    multiple = buf[start + 12] & 1
                    first = self.confirmed + 1 if multiple else tag
                    sent_at = self.sent_at
                    for seq in range(first, tag + 1):
                        latencies.append(at - sent_at[seq & 0xFFFF])
                    count = max(0, tag - first + 1)  # a multiple ack may repeat older tags
                    if method_id == _NACK and meter is not None:
                        meter.nacked += count
                    confirmed += count
                    self.confirmed = max(self.confirmed, tag)
                else:
                    self.control.put_nowait(frame.unmarshal(bytes(buf[pos : end + 1]))[2])
            pos = end + 1
        self._buf = buf[pos:] if pos < size else b""
        if last_tag and self.manual_ack and self.transport is not None:
            self.transport.write(encode_basic_ack(CHANNEL, last_tag, multiple=True))
        if meter is not None:
            if delivered:
                meter.on_delivered(delivered, at)
            if confirmed:
                meter.on_settled(confirmed, at)

    # Control plane ----------------------------------------------------------------------------

    def send(self, method: Frame, channel: int = CHANNEL) -> None:
        assert self.transport is not None
        self.transport.write(frame.marshal(method, channel))

    async def expect(self, kind: type[Frame]) -> Any:
        reply = await self.control.get()
        if isinstance(reply, Exception):
            raise reply
        if not isinstance(reply, kind):
            raise AmqpError(f"expected {kind.__name__}, got {reply!r}")
        return reply

    async def rpc(self, method: Frame, reply: type[Frame]) -> Any:
        self.send(method)
        return await self.expect(reply)

    async def handshake(self, vhost: str) -> None:
        start = await self.expect(commands.Connection.Start)
        self.server_properties = dict(start.server_properties or {})
        self.send(
            commands.Connection.StartOk(
                client_properties={"product": "gateway-bench"},
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
            0,
        )
        tune = await self.expect(commands.Connection.Tune)
        self.frame_max = min(tune.frame_max or 131072, 131072)
        self.send(commands.Connection.TuneOk(tune.channel_max or 2047, self.frame_max, 0), 0)
        self.send(commands.Connection.Open(virtual_host=vhost), 0)
        await self.expect(commands.Connection.OpenOk)
        await self.rpc(commands.Channel.Open(), commands.Channel.OpenOk)

    async def declare_queue(self, name: str) -> str:
        ok = await self.rpc(
            commands.Queue.Declare(queue=name, exclusive=True, auto_delete=True),
            commands.Queue.DeclareOk,
        )
        return str(ok.queue)

    async def bind(self, queue: str, exchange: str, key: str) -> None:
        await self.rpc(
            commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=key),
            commands.Queue.BindOk,
        )

    async def consume(self, queue: str, prefetch: int, manual_ack: bool) -> None:
        if manual_ack:
            await self.rpc(commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        self.manual_ack = manual_ack
        await self.rpc(
            commands.Basic.Consume(queue=queue, no_ack=not manual_ack),
            commands.Basic.ConsumeOk,
        )

    async def confirm_select(self) -> None:
        await self.rpc(commands.Confirm.Select(), commands.Confirm.SelectOk)

    async def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                self.send(commands.Connection.Close(200, "bench done"), 0)
                await self.expect(commands.Connection.CloseOk)
                self.transport.close()
                await asyncio.shield(self.closed)
        except (AmqpError, TimeoutError):
            self.transport.abort()


async def amqp_connect(host: str, port: int, meter: Meter | None) -> AmqpClient:
    """Connect, open vhost / and channel 1 (wrap in `asyncio.timeout` to bound it)."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: AmqpClient(meter), host, port)
    try:
        await client.handshake("/")
    except BaseException:
        assert client.transport is not None
        client.transport.abort()
        raise
    return client


def publish_head(exchange: str, routing_key: str, payload_size: int) -> bytes:
    """Basic.Publish and its content header (transient delivery mode): what precedes the body."""
    properties = commands.Basic.Properties(delivery_mode=1)
    return b"".join(
        (
            frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1),
            frame.marshal(header.ContentHeader(0, payload_size, properties), CHANNEL),
        )
    )


def body_frames(payload: bytes, frame_max: int) -> bytes:
    """The payload cut into body frames of at most `frame_max` octets each, framing included."""
    step = frame_max - 8
    return b"".join(
        _FRAME_HEAD.pack(_FRAME_BODY, CHANNEL, len(chunk)) + chunk + b"\xce"
        for chunk in (payload[i : i + step] for i in range(0, len(payload), step))
    )


async def publish(
    client: AmqpClient,
    meter: Meter,
    exchange: str,
    routing_key: str,
    count: int,
    payload_size: int,
    batch: int,
    idle_timeout: float,
    *,
    confirms: bool = False,
    pace: Pacer | None = None,
) -> None:
    """Publish `count` messages inside the meter's window (confirm mode: unconfirmed ones)."""
    if confirms and meter.window >= _TAG_SLOTS:
        raise ValueError("a confirm window must stay below 65536 messages")
    head = publish_head(exchange, routing_key, payload_size)
    pad = bytes(payload_size - STAMP_SIZE)
    transport = client.transport
    assert transport is not None
    sent_at = client.sent_at
    sent = 0
    while sent < count:
        credit = await meter.wait_credit(idle_timeout)
        if pace is not None:
            credit = min(credit, await pace.take(count - sent))
        n = min(batch, count - sent, credit)
        at = now_ns()
        if confirms:
            for seq in range(sent + 1, sent + n + 1):
                sent_at[seq & 0xFFFF] = at
        transport.write((head + body_frames(STAMP.pack(at) + pad, client.frame_max)) * n)
        sent += n
        meter.sent += n
        if client.writable.is_set():
            await asyncio.sleep(0)
        else:
            await asyncio.wait_for(client.writable.wait(), idle_timeout)
        if client.closed.done():
            raise AmqpError("publisher connection closed by the broker")
