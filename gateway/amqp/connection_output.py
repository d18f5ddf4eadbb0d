"""What the AMQP connection machine sends: its output buffer and the send API.

:class:`ConnectionOutput` is the half of :class:`~gateway.amqp.connection.AMQPConnection` that
the channel layer talks to (deliveries, confirms, methods on a channel, connection.blocked); the
other half reads frames and runs the handshake, heartbeats and close. Output is buffered until
the shell drains it with :meth:`~ConnectionOutput.data_to_send` or
:meth:`~ConnectionOutput.data_to_send_chunks`.
"""

from __future__ import annotations

from typing import Final

from pamqp import base
from pamqp.commands import Connection

from gateway.amqp.connection_channels import ChannelTable
from gateway.amqp.connection_events import ConnectionState
from gateway.amqp.connection_handshake import shortstr_text
from gateway.amqp.fastpath import (
    CHUNKED_BODY_THRESHOLD,
    encode_basic_ack,
    encode_basic_nack,
    encode_content,
    encode_deliver,
    encode_deliver_chunks,
)
from gateway.amqp.frames import encode_method

# Enum member access costs ~130 ns on Python 3.11 (a descriptor call); the per-delivery state
# checks compare against this instead.
_OPEN: Final = ConnectionState.OPEN


class ConnectionOutput:
    """The output buffer of one connection and everything that writes to it.

    Sending on a channel that is not open (never opened, closing, closed) does nothing and
    returns False: a delivery may race a channel.close.
    """

    # Set by AMQPConnection: the state, the negotiated frame size, what the client announced,
    # and the channels whose openness gates every send on a channel.
    state: ConnectionState
    frame_max: int
    client_capabilities: dict[str, object]
    _channels: ChannelTable

    def __init__(self) -> None:
        self._out: list[bytes | memoryview] = []
        # Whether anything went out since the last heartbeat tick (then no heartbeat is due).
        self._sent_since_tick = False

    def is_channel_open(self, channel: int) -> bool:
        return self.state is _OPEN and self._channels.is_open(channel)

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._sent_since_tick = True

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)
        out.clear()
        return data

    def data_to_send_chunks(self) -> list[bytes | memoryview]:
        """The pending output as chunks for ``transport.writelines`` (large bodies uncopied)."""
        out = self._out
        self._out = []
        return out

    def send_method(self, channel: int, method: base.Frame) -> bool:
        """Send a method on an open channel; False (nothing sent) when it is not open."""
        if not self.is_channel_open(channel):
            return False
        self._write(encode_method(channel, method))
        return True

    def send_content(
        self, channel: int, method: base.Frame, properties: bytes, body: bytes
    ) -> bool:
        """A content-bearing method (Basic.GetOk, Basic.Return) with header and body frames."""
        if not self.is_channel_open(channel):
            return False
        self._write(
            encode_method(channel, method)
            + encode_content(channel, properties, body, self.frame_max)
        )
        return True

    def send_deliver(
        self,
        channel: int,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> bool:
        if not self.is_channel_open(channel):
            return False
        args = (channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key)
        if len(body) > CHUNKED_BODY_THRESHOLD:
            self._out.extend(encode_deliver_chunks(*args, properties, body, self.frame_max))
            self._sent_since_tick = True
        else:
            self._write(encode_deliver(*args, properties, body, self.frame_max))
        return True

    def send_frame(self, data: bytes) -> None:
        """Frames encoded by the caller (:func:`~gateway.amqp.fastpath.encode_deliver`), for
        a channel it found open with :meth:`is_channel_open`."""
        self._out.append(data)
        self._sent_since_tick = True

    def send_encoded(self, chunks: list[bytes | memoryview]) -> None:
        """Frames encoded by the caller (a batch of deliveries from
        :func:`~gateway.amqp.fastpath.encode_deliver`), for a channel it found open with
        :meth:`is_channel_open`."""
        if chunks:
            self._out.extend(chunks)
            self._sent_since_tick = True

    def send_ack(self, channel: int, delivery_tag: int, multiple: bool = False) -> bool:
        """Publisher confirm."""
        if not self.is_channel_open(channel):
            return False
        self._write(encode_basic_ack(channel, delivery_tag, multiple))
        return True

    def send_nack(
        self, channel: int, delivery_tag: int, multiple: bool = False, requeue: bool = False
    ) -> bool:
        """Negative publisher confirm."""
        if not self.is_channel_open(channel):
            return False
        self._write(encode_basic_nack(channel, delivery_tag, multiple, requeue))
        return True

    def send_blocked(self, reason: str) -> bool:
        """connection.blocked, sent only to clients that announced the capability."""
        if not self._may_block():
            return False
        self._write(encode_method(0, Connection.Blocked(shortstr_text(reason))))
        return True

    def send_unblocked(self) -> bool:
        if not self._may_block():
            return False
        self._write(encode_method(0, Connection.Unblocked()))
        return True

    def _may_block(self) -> bool:
        return self.state is _OPEN and self.client_capabilities.get("connection.blocked") is True
