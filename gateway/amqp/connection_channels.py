"""The channels of one connection: open/close bookkeeping and content assembly.

A content-bearing method, its header frame and its body frames arrive as separate frames that
other channels' frames may interleave with; each channel collects its own until the body is
complete and then reports it in a :class:`ContentReceived` (which gathers consecutive contents
of one channel).
"""

from __future__ import annotations

from pamqp.commands import Channel

from gateway.amqp.connection_events import (
    ChannelClosed,
    ChannelOpened,
    Content,
    ContentReceived,
    Event,
    MethodReceived,
)
from gateway.amqp.fastpath import ContentHeader
from gateway.amqp.frames import CONTENT_METHODS, Method, encode_method, method_ids
from gateway.amqp.spec import (
    CLASS_CHANNEL,
    CLASS_CONNECTION,
    ChannelError,
    CommandInvalid,
    FrameError,
    NotAllowed,
    NotImplemented_,
    UnexpectedFrame,
)


class _Channel:
    __slots__ = (
        "close_reason",
        "fragments",
        "header_expected",
        "method",
        "properties",
        "remaining",
    )

    def __init__(self) -> None:
        # Set once we sent channel.close: (code, text, class id, method id).
        self.close_reason: tuple[int, str, int, int] | None = None
        self.method: Method | None = None  # content method waiting for its header and body
        self.header_expected = False
        self.properties = b""
        self.remaining = 0
        self.fragments: list[bytes] = []

    def reset_content(self) -> None:
        self.method = None
        self.header_expected = False
        self.fragments = []


def _report(content: Content, events: list[Event]) -> None:
    """Add a whole content to the events: to the last one when that is this channel's."""
    if events:
        last = events[-1]
        if type(last) is ContentReceived and last.channel == content[0]:
            last.contents.append(content)
            return
    events.append(ContentReceived(content[0], [content]))


class ChannelTable:
    """Channels 1..channel_max of one open connection.

    Methods that answer the peer return the encoded frame for the connection to send (the
    table holds no reference back to it); protocol violations raise the hard
    :class:`~gateway.amqp.spec.AMQPError` the connection answers with connection.close.
    """

    def __init__(self, max_body_size: int) -> None:
        self.channel_max = 0xFFFF
        self._max_body_size = max_body_size
        self._channels: dict[int, _Channel] = {}

    def is_open(self, number: int) -> bool:
        ch = self._channels.get(number)
        return ch is not None and ch.close_reason is None

    def open_numbers(self) -> list[int]:
        return [n for n, ch in self._channels.items() if ch.close_reason is None]

    def clear(self) -> None:
        self._channels.clear()

    def close(
        self, number: int, code: int, text: str, class_id: int, method_id: int
    ) -> bytes | None:
        """The channel.close to send (None: not open); the number stays taken until the peer's
        close-ok."""
        ch = self._channels.get(number)
        if ch is None or ch.close_reason is not None:
            return None
        ch.close_reason = (code, text, class_id, method_id)
        ch.reset_content()
        return encode_method(number, Channel.Close(code, text, class_id, method_id))

    def on_method(self, number: int, method: Method, events: list[Event]) -> bytes | None:
        """Returns the frame to answer with (channel.open-ok, close-ok, flow-ok), if any."""
        ch = self._channels.get(number)
        if ch is None:
            if isinstance(method, Channel.Open):
                return self._open(number, events)
            raise ChannelError(
                f"expected 'channel.open' on channel {number}, got {method.name}",
                *method_ids(method),
            )
        if ch.close_reason is not None:
            # After our channel.close everything but close and close-ok is discarded (spec).
            if isinstance(method, Channel.CloseOk):
                del self._channels[number]
                events.append(ChannelClosed(number, *ch.close_reason, by_peer=False))
            elif isinstance(method, Channel.Close):
                return encode_method(number, Channel.CloseOk())
            return None
        if ch.method is not None:
            raise UnexpectedFrame(
                f"expected content {'header' if ch.header_expected else 'body'}, "
                f"got {method.name} instead",
                *method_ids(ch.method),
            )
        index = method.index
        if index in CONTENT_METHODS:
            ch.method = method
            ch.header_expected = True
            return None
        class_id = index >> 16
        if class_id == CLASS_CHANNEL:
            return self._on_channel_class(number, method, events)
        if class_id == CLASS_CONNECTION:
            raise CommandInvalid(f"{method.name} on channel {number}", *method_ids(method))
        events.append(MethodReceived(number, method))
        return None

    def _open(self, number: int, events: list[Event]) -> bytes:
        if number > self.channel_max:
            raise NotAllowed(
                f"channel {number} is above the negotiated channel_max ({self.channel_max})",
                CLASS_CHANNEL,
                10,
            )
        self._channels[number] = _Channel()
        events.append(ChannelOpened(number))
        return encode_method(number, Channel.OpenOk())

    def _on_channel_class(self, number: int, method: Method, events: list[Event]) -> bytes | None:
        if isinstance(method, Channel.Close):
            del self._channels[number]
            events.append(
                ChannelClosed(
                    number,
                    method.reply_code or 0,
                    method.reply_text or "",
                    method.class_id or 0,
                    method.method_id or 0,
                    by_peer=True,
                )
            )
            return encode_method(number, Channel.CloseOk())
        if isinstance(method, Channel.Open):
            raise ChannelError("second 'channel.open' seen", *method_ids(method))
        if isinstance(method, Channel.Flow):
            # As RabbitMQ: flow control is the server's business, active=false is refused.
            if not method.active:
                raise NotImplemented_("active=false", *method_ids(method))
            return encode_method(number, Channel.FlowOk(active=True))
        if not isinstance(method, Channel.FlowOk):
            raise CommandInvalid(f"unexpected {method.name}", *method_ids(method))
        return None

    def on_contents(self, contents: list[Content], events: list[Event]) -> None:
        """Content methods of one channel with their header and whole body, read in one pass
        (:meth:`~gateway.amqp.frames.FrameDecoder.next_publishes`: one channel, one body
        size): the outcome is that of :meth:`on_method`, :meth:`on_header` and
        :meth:`on_body` for each in turn."""
        number = contents[0][0]
        ch = self._channels.get(number)
        if ch is None or ch.method is not None or ch.close_reason is not None:
            # Not open, content already pending (both raise) or closing (all discarded): a
            # content method is never answered, so there is no frame to send.
            for content in contents:
                self.on_method(number, content[1], events)
            return
        size = len(contents[0][3])
        if size > self._max_body_size:
            ch.method = contents[0][1]
            ch.header_expected = True
            raise FrameError(
                f"content body size {size} exceeds maximum allowed size {self._max_body_size}",
                *method_ids(ch.method),
            )
        if events:
            last = events[-1]
            if type(last) is ContentReceived and last.channel == number:
                last.contents.extend(contents)
                return
        events.append(ContentReceived(number, contents))

    def on_header(self, number: int, header: ContentHeader, events: list[Event]) -> None:
        ch = self._content_channel(number)
        if ch is None:
            return
        method = ch.method
        if method is None or not ch.header_expected:
            raise UnexpectedFrame(
                "expected method frame, got content header instead"
                if method is None
                else "expected content body, got content header instead",
                *(method_ids(method) if method else (0, 0)),
            )
        class_id = method.index >> 16
        if header.class_id != class_id or header.weight:
            raise UnexpectedFrame(
                f"expected content header for class {class_id}, got one for class "
                f"{header.class_id} (weight {header.weight}) instead",
                *method_ids(method),
            )
        if header.body_size > self._max_body_size:
            raise FrameError(
                f"content body size {header.body_size} exceeds maximum allowed size "
                f"{self._max_body_size}",
                *method_ids(method),
            )
        if header.body_size == 0:
            ch.reset_content()
            _report((number, method, header.properties, b""), events)
            return
        ch.header_expected = False
        ch.properties = header.properties
        ch.remaining = header.body_size

    def on_body(self, number: int, payload: bytes, events: list[Event]) -> None:
        ch = self._content_channel(number)
        if ch is None:
            return
        method = ch.method
        if method is None or ch.header_expected:
            raise UnexpectedFrame(
                "expected method frame, got content body instead"
                if method is None
                else "expected content header, got content body instead",
                *(method_ids(method) if method else (0, 0)),
            )
        if len(payload) > ch.remaining:
            raise FrameError(
                "content body frame exceeds remaining content size", *method_ids(method)
            )
        ch.remaining -= len(payload)
        ch.fragments.append(payload)
        if ch.remaining == 0:
            fragments = ch.fragments
            body = fragments[0] if len(fragments) == 1 else b"".join(fragments)
            ch.reset_content()
            _report((number, method, ch.properties, body), events)

    def _content_channel(self, number: int) -> _Channel | None:
        ch = self._channels.get(number)
        if ch is None:
            raise ChannelError(f"content frame on channel {number}, which is not open")
        return None if ch.close_reason is not None else ch
