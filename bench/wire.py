"""Blocking-socket MQTT 3.1.1 and AMQP 0-9-1 clients for the generator processes.

Only the control plane lives here (connect, subscribe, declare, consume) and the pre-encoded
frames the publishers repeat; the counting is bench/streams.py, the loops bench/roles.py.
MQTT is 3.1.1 against every broker: RabbitMQ 3.10's plugin and amqtt speak nothing newer.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from pamqp import commands, frame, header
from pamqp.base import Frame

from gateway.mqtt.codec import encode, encode_publish_header
from gateway.mqtt.packets import MQTT_3_1_1, Connect, Subscribe, SubscriptionOptions

HOST = "127.0.0.1"
CHANNEL = 1
_FRAME_HEAD = struct.Struct(">BHI")


class WireError(Exception):
    """The broker refused something, closed the connection, or answered unexpectedly."""


def tcp_connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise WireError("connection closed by the broker")
        data += chunk
    return data


# -- MQTT -----------------------------------------------------------------------------------------


def mqtt_connect_packet(
    client_id: str, username: str | None = "guest", password: bytes | None = b"guest"
) -> bytes:
    # Keep alive beyond any run so an idle subscriber is never timed out by the broker.
    connect = Connect(
        client_id, MQTT_3_1_1, clean_start=True, keep_alive=600, username=username,
        password=password,
    )  # fmt: skip
    return encode(connect, MQTT_3_1_1)


def mqtt_connect(port: int, client_id: str, timeout: float) -> socket.socket:
    sock = tcp_connect(port, timeout)
    try:
        sock.sendall(mqtt_connect_packet(client_id))
        connack = recv_exact(sock, 4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise WireError(f"CONNACK {connack.hex()} for client {client_id!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def mqtt_subscribe(sock: socket.socket, topic_filter: str, qos: int) -> None:
    packet = Subscribe(1, ((topic_filter, SubscriptionOptions(qos=qos)),))
    sock.sendall(encode(packet, MQTT_3_1_1))
    suback = recv_exact(sock, 5)
    if suback[0] != 0x90 or suback[4] >= 0x80:
        raise WireError(f"subscription to {topic_filter!r} refused: {suback.hex()}")


def mqtt_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    """One PUBLISH packet, from the project's encoder."""
    head = encode_publish_header(
        topic, len(payload), qos=qos, packet_id=packet_id or None, version=MQTT_3_1_1
    )
    return head + payload


def mqtt_disconnect(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")
    sock.close()


# -- AMQP -----------------------------------------------------------------------------------------


class AmqpConnection:
    """One connection with channel 1 open, driven synchronously during setup."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = tcp_connect(port, timeout)
        self._buf = b""
        try:
            self._handshake()
        except BaseException:
            self.sock.close()
            raise

    def send(self, method: Frame, channel: int = CHANNEL) -> None:
        self.sock.sendall(frame.marshal(method, channel))

    def expect(self, kind: type[Frame]) -> Any:
        while True:
            if len(self._buf) >= 7:
                size = _FRAME_HEAD.unpack_from(self._buf, 0)[2] + 8
                if len(self._buf) >= size:
                    raw, self._buf = self._buf[:size], self._buf[size:]
                    reply = frame.unmarshal(raw)[2]
                    if isinstance(reply, kind):
                        return reply
                    if isinstance(reply, (commands.Channel.Close, commands.Connection.Close)):
                        raise WireError(f"broker closed: {reply.reply_code} {reply.reply_text}")
                    continue  # e.g. a heartbeat
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WireError(f"connection closed while waiting for {kind.__name__}")
            self._buf += chunk

    def rpc(self, method: Frame, reply: type[Frame]) -> Any:
        self.send(method)
        return self.expect(reply)

    def _handshake(self) -> None:
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(commands.Connection.Start)
        self.send(
            commands.Connection.StartOk(
                client_properties={"product": "gateway-bench"},
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
            0,
        )
        tune = self.expect(commands.Connection.Tune)
        frame_max = min(tune.frame_max or 131072, 131072)
        self.send(commands.Connection.TuneOk(tune.channel_max or 2047, frame_max, 0), 0)
        self.send(commands.Connection.Open(virtual_host="/"), 0)
        self.expect(commands.Connection.OpenOk)
        self.rpc(commands.Channel.Open(), commands.Channel.OpenOk)

    def declare_queue(self, name: str, *, exclusive: bool = True) -> str:
        ok = self.rpc(
            commands.Queue.Declare(queue=name, exclusive=exclusive, auto_delete=True),
            commands.Queue.DeclareOk,
        )
        return str(ok.queue)

    def bind(self, queue: str, exchange: str, key: str) -> None:
        self.rpc(
            commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=key),
            commands.Queue.BindOk,
        )

    def consume(self, queue: str, prefetch: int, manual_ack: bool) -> None:
        if manual_ack:
            self.rpc(commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        self.rpc(
            commands.Basic.Consume(queue=queue, consumer_tag="bench", no_ack=not manual_ack),
            commands.Basic.ConsumeOk,
        )

    def confirm_select(self) -> None:
        self.rpc(commands.Confirm.Select(), commands.Confirm.SelectOk)

    def pending(self) -> bytes:
        """What arrived after the last control reply (deliveries may follow consume-ok)."""
        data, self._buf = self._buf, b""
        return data

    def close(self) -> None:
        try:
            self.sock.settimeout(2.0)
            self.send(commands.Connection.Close(200, "bench done", 0, 0), 0)
            self.expect(commands.Connection.CloseOk)
        except (OSError, WireError):
            pass
        self.sock.close()


def amqp_publish(exchange: str, routing_key: str, payload: bytes) -> bytes:
    """basic.publish, its content header (transient) and one body frame."""
    properties = commands.Basic.Properties(delivery_mode=1)
    return b"".join(
        (
            frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1),
            frame.marshal(header.ContentHeader(0, len(payload), properties), CHANNEL),
            _FRAME_HEAD.pack(3, CHANNEL, len(payload)) + payload + b"\xce",
        )
    )
