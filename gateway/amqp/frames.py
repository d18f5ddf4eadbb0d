"""AMQP 0-9-1 frames: a streaming decoder and method encoding.

Control-plane methods are decoded and encoded by pamqp; the per-message methods go through
:mod:`gateway.amqp.fastpath`. The decoder is fed bytes split anywhere and hands out one frame at a
time, so a caller can stop pulling (while it waits for an authentication answer, say) and the
rest stays buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, cast

from pamqp import base, commands
from pamqp import exceptions as pamqp_exceptions
from pamqp import frame as pamqp_frame

from gateway.amqp.fastpath import (
    BasicPublish,
    ContentHeader,
    FastMethod,
    decode_basic_ack,
    decode_basic_nack,
    decode_basic_publish,
    decode_basic_reject,
    decode_content_header,
    decode_publish_arguments,
)
from gateway.amqp.spec import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    BASIC_RETURN,
    CLASS_BASIC,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    PROTOCOL_HEADER,
    AMQPError,
    AMQPSyntaxError,
    FrameError,
    NotImplemented_,
)

Method = base.Frame | FastMethod

_FRAME_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
# A method frame's head with its class and method id.
_METHOD_HEAD = struct.Struct(">BHIHH")
# A content header frame's head with its class, weight and body size.
_HEADER_HEAD = struct.Struct(">BHIHHQ")
_PUBLISH_HEAD_SIZE: Final = _METHOD_HEAD.size
_HEADER_HEAD_SIZE: Final = _HEADER_HEAD.size

# Methods followed by a content header and body frames (RabbitMQ's method_has_content).
CONTENT_METHODS: Final = frozenset(
    (CLASS_BASIC << 16) | m for m in (BASIC_PUBLISH, BASIC_RETURN, BASIC_DELIVER, BASIC_GET_OK)
)


@dataclass(frozen=True, slots=True)
class ProtocolHeaderFrame:
    """The eight octets a client opens with (whatever they were)."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class MethodFrame:
    channel: int
    method: Method


@dataclass(frozen=True, slots=True)
class HeaderFrame:
    channel: int
    header: ContentHeader


@dataclass(frozen=True, slots=True)
class BodyFrame:
    channel: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    channel: int


Frame = ProtocolHeaderFrame | MethodFrame | HeaderFrame | BodyFrame | HeartbeatFrame


def method_ids(method: Method) -> tuple[int, int]:
    """(class id, method id) of a decoded method, for Close frames naming the culprit."""
    index = method.index
    return index >> 16, index & 0xFFFF


def has_content(method: Method) -> bool:
    return method.index in CONTENT_METHODS


_FastDecoder = Callable[[bytes | bytearray, int, int], FastMethod]
_FAST_DECODERS: Final[dict[int, _FastDecoder]] = {
    (CLASS_BASIC << 16) | BASIC_PUBLISH: decode_basic_publish,
    (CLASS_BASIC << 16) | BASIC_ACK: decode_basic_ack,
    (CLASS_BASIC << 16) | BASIC_NACK: decode_basic_nack,
    (CLASS_BASIC << 16) | BASIC_REJECT: decode_basic_reject,
}

# Octets taken by fixed-size argument types; shortstr/longstr/table are length-prefixed.
_FIXED_SIZES: Final = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}
_PREFIX_SIZES: Final = {"shortstr": 1, "longstr": 4, "table": 4}
_layouts: dict[int, tuple[str, ...]] = {}
_METHOD_CLASSES: Final = cast(dict[int, type[base.Frame]], commands.INDEX_MAPPING)


def _layout(cls: type[base.Frame]) -> tuple[str, ...]:
    layout = _layouts.get(cls.index)
    if layout is None:
        layout = tuple(cls.amqp_type(name) for name in cls.__slots__)
        _layouts[cls.index] = layout
    return layout


def _arguments_fit(layout: tuple[str, ...], data: bytes) -> bool:
    """Whether the arguments exactly fill ``data``.

    pamqp silently accepts strings that run past the end of the frame and ignores trailing
    octets; RabbitMQ refuses both, and so do we.
    """
    pos = 0
    size = len(data)
    bits = 0
    for kind in layout:
        if kind == "bit":
            if bits % 8 == 0:
                pos += 1  # up to eight consecutive bits share one octet
            bits += 1
            continue
        bits = 0
        fixed = _FIXED_SIZES.get(kind)
        if fixed is not None:
            pos += fixed
        elif kind == "shortstr":
            if pos >= size:
                return False
            pos += 1 + data[pos]
        else:
            if pos + 4 > size:
                return False
            pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
        if pos > size:
            return False
    return pos == size


def decode_method(class_id: int, method_id: int, data: bytes) -> base.Frame:
    """Decode the arguments of a control-plane method with pamqp, strictly.

    Unknown class or method: 540 NOT_IMPLEMENTED (RabbitMQ drops the connection without a
    Close). Arguments that do not decode: 502 SYNTAX_ERROR.
    """
    cls = _METHOD_CLASSES.get((class_id << 16) | method_id)
    if cls is None:
        raise NotImplemented_(f"unknown method {class_id}.{method_id}", class_id, method_id)
    if not _arguments_fit(_layout(cls), data):
        raise AMQPSyntaxError(
            f"{cls.name} arguments do not match the frame size", class_id, method_id
        )
    # __new__ skips the constructor's validation and deprecation warnings: unmarshal sets
    # every slot from the wire.
    method = cls.__new__(cls)
    try:
        method.unmarshal(data)
    except (pamqp_exceptions.PAMQPException, ValueError, OverflowError, OSError) as err:
        raise AMQPSyntaxError(f"cannot decode {cls.name}: {err}", class_id, method_id) from None
    return method


def encode_method(channel: int, method: base.Frame) -> bytes:
    """A whole method frame, marshalled by pamqp."""
    return pamqp_frame.marshal(method, channel)


# Every unpacked field of a publish's three frame heads but the arguments and properties.
_SHAPE_FIXED: Final = itemgetter(0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17)


class _PublishShape:
    """The frame layout of one kind of publish: channel, argument, property and body sizes.

    A publisher repeats it message after message, so one ``struct`` call reads the three
    frames up to the body, and one tuple comparison checks every octet that must equal the
    previous publish's (frame types, channel, sizes, class, method, weight, frame ends).
    """

    __slots__ = ("body_size", "expected", "frame_max", "head_size", "unpack")

    def __init__(
        self, channel: int, args_size: int, props_size: int, body_size: int, frame_max: int
    ) -> None:
        layout = struct.Struct(f">BHIHH{args_size}sBBHIHHQ{props_size}sBBHI")
        self.unpack = layout.unpack_from
        self.head_size = layout.size
        self.body_size = body_size
        self.frame_max = frame_max
        self.expected = (
            FRAME_METHOD, channel, _METHOD_ID.size + args_size, CLASS_BASIC, BASIC_PUBLISH,
            FRAME_END,
            FRAME_HEADER, channel, _HEADER_HEAD_SIZE - FRAME_HEADER_SIZE + props_size,
            CLASS_BASIC, 0, body_size,
            FRAME_END,
            FRAME_BODY, channel, body_size,
        )  # fmt: skip


_SHAPES: dict[tuple[int, int, int, int, int], _PublishShape] = {}
_SHAPES_MAX: Final = 256


def _shape(
    channel: int, args_size: int, props_size: int, body_size: int, frame_max: int
) -> _PublishShape:
    key = (channel, args_size, props_size, body_size, frame_max)
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        shape = _SHAPES[key] = _PublishShape(*key)
    return shape


class FrameDecoder:
    """Splits a byte stream into frames.

    ``frame_max`` bounds the payload (0: unbounded). Like RabbitMQ it tolerates a payload up to
    ``frame_max`` itself, since clients commonly forget the eight octets of framing. After a
    frame that is too large or lacks its end octet the stream cannot be resynchronised:
    ``broken`` is set and every later call raises again.
    """

    def __init__(self, *, frame_max: int = FRAME_MIN_SIZE, protocol_header: bool = True) -> None:
        self.frame_max = frame_max
        self.broken: FrameError | None = None
        self._want_header = protocol_header
        self._buf: bytes | bytearray = b""
        self._pos = 0
        # The layout of the last publish taken whole (next_publish tries it first), and that
        # publish's octets up to its body with what they decoded to: a publisher repeats them.
        self._shape: _PublishShape | None = None
        self._same = b""
        self._same_publish: tuple[int, BasicPublish, bytes] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def append(self, data: bytes) -> None:
        if not data:
            return
        buf = self._buf
        pos = self._pos
        waiting = len(buf) - pos
        if waiting <= 0:
            self._buf = bytes(data)
        elif waiting <= len(data):
            # A partial frame no longer than the new data (a read that ended mid-frame): one
            # new bytes object, so that bodies are sliced out of it with one copy (a bytearray
            # takes two). Copying at most twice what arrived keeps this linear.
            self._buf = b"".join((memoryview(buf)[pos:], data))
        elif isinstance(buf, bytearray):
            # A long partial frame fed in small pieces grows in place. Drop what was parsed
            # so a stream that always ends mid-frame cannot grow it.
            del buf[:pos]
            buf += data
        else:
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._buf = grown
        self._pos = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Append ``data`` and return every complete frame.

        Raises on the first malformed frame; frames before it in the same call are then lost,
        so a caller that must act on them pulls with :meth:`next_frame` instead.
        """
        self.append(data)
        frames: list[Frame] = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    def next_frame(self) -> Frame | None:
        if self.broken is not None:
            raise self.broken
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if self._want_header:
            if available < len(PROTOCOL_HEADER):
                return None
            self._want_header = False
            self._consume(pos + len(PROTOCOL_HEADER))
            return ProtocolHeaderFrame(bytes(buf[pos : pos + len(PROTOCOL_HEADER)]))
        if available < FRAME_HEADER_SIZE:
            return None
        kind, channel, size = _FRAME_HEAD.unpack_from(buf, pos)
        if self.frame_max and size > self.frame_max:
            raise self._break(
                f"frame of type {kind} on channel {channel} has a {size}-octet payload, "
                f"above frame_max {self.frame_max}"
            )
        start = pos + FRAME_HEADER_SIZE
        end = start + size
        buffered = len(buf)
        if end >= buffered:
            return None
        if buf[end] != FRAME_END:
            raise self._break(f"frame of type {kind} ends with {buf[end]:#04x}, expected 0xce")
        if end + 1 == buffered:
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end + 1
        if kind == FRAME_METHOD:
            return MethodFrame(channel, self._method(buf, start, end))
        if kind == FRAME_BODY:
            return BodyFrame(channel, bytes(buf[start:end]))
        if kind == FRAME_HEADER:
            header = decode_content_header(buf, start, end)
            if header is None:
                raise FrameError(f"content header of {size} octets is too short")
            return HeaderFrame(channel, header)
        if kind == FRAME_HEARTBEAT:
            if size:
                raise FrameError(f"heartbeat frame with a {size}-octet payload")
            return HeartbeatFrame(channel)
        raise FrameError(f"unknown frame type {kind}")

    def next_publish(self) -> tuple[int, BasicPublish, bytes, bytes] | None:
        """``(channel, method, properties, body)`` of the Basic.Publish that comes next, with
        its content header and body decoded in one pass, or None with nothing consumed.

        Only the common shape qualifies: the three frames (two for an empty body) all
        buffered, on one channel, within ``frame_max``, well formed, the body in one frame.
        Anything else, including every kind of error, is left to :meth:`next_frame`, which
        gives the same result frame by frame. The layout of the last such publish is tried
        first: when every fixed octet matches it, the frames need no separate checks.
        """
        buf = self._buf
        pos = self._pos
        buffered = len(buf)
        shape = self._shape
        if shape is not None and self.broken is None and shape.frame_max == self.frame_max:
            head_end = pos + shape.head_size
            new_pos = head_end + shape.body_size
            if new_pos < buffered and buf[new_pos] == FRAME_END:
                same = self._same_publish
                if buf[pos:head_end] == self._same and same is not None:
                    # Octet for octet the previous publish up to the body: same answer.
                    channel, method, properties = same
                    found = True
                else:
                    fields = shape.unpack(buf, pos)
                    found = _SHAPE_FIXED(fields) == shape.expected
                    if found:
                        try:
                            method = decode_publish_arguments(fields[5])
                        except AMQPError:
                            return None
                        channel = fields[1]
                        properties = fields[13]
                        self._same = bytes(buf[pos:head_end])
                        self._same_publish = (channel, method, properties)
                if found:
                    body = buf[head_end:new_pos]
                    new_pos += 1
                    if new_pos == buffered:
                        self._buf = b""
                        self._pos = 0
                    else:
                        self._pos = new_pos
                    return channel, method, properties, bytes(body)
        # Method frame head, class and method id, plus at least a header frame's head.
        if buffered - pos < _PUBLISH_HEAD_SIZE + _HEADER_HEAD_SIZE or self._want_header:
            return None
        kind, channel, size, class_id, method_id = _METHOD_HEAD.unpack_from(buf, pos)
        if kind != FRAME_METHOD or class_id != CLASS_BASIC or method_id != BASIC_PUBLISH:
            return None
        frame_max = self.frame_max or 0xFFFFFFFF
        start = pos + FRAME_HEADER_SIZE
        end = start + size
        if (
            size > frame_max
            or not channel
            or end + 1 + _HEADER_HEAD_SIZE > buffered
            or buf[end] != FRAME_END
            or self.broken is not None
        ):
            return None
        head = end + 1
        kind, header_channel, size, class_id, weight, body_size = _HEADER_HEAD.unpack_from(
            buf, head
        )
        props_end = head + FRAME_HEADER_SIZE + size
        if (
            kind != FRAME_HEADER
            or header_channel != channel
            or size > frame_max
            or size < _HEADER_HEAD_SIZE - FRAME_HEADER_SIZE
            or class_id != CLASS_BASIC
            or weight
            or props_end >= buffered
            or buf[props_end] != FRAME_END
        ):
            return None
        if body_size:
            body_start = props_end + 1 + FRAME_HEADER_SIZE
            if body_start > buffered:
                return None
            kind, body_channel, size = _FRAME_HEAD.unpack_from(buf, props_end + 1)
            new_pos = body_start + size
            if (
                kind != FRAME_BODY
                or body_channel != channel
                or size != body_size
                or size > frame_max
                or new_pos >= buffered
                or buf[new_pos] != FRAME_END
            ):
                return None
            body = bytes(buf[body_start:new_pos])
        else:
            body = b""
            new_pos = props_end
        try:
            method = decode_basic_publish(buf, start + _METHOD_ID.size, end)
        except AMQPError:
            return None
        properties = bytes(buf[head + _HEADER_HEAD_SIZE : props_end])
        if body_size:
            args_size = end - start - _METHOD_ID.size
            self._shape = _shape(channel, args_size, len(properties), body_size, self.frame_max)
            self._same = bytes(buf[pos : new_pos - body_size])
            self._same_publish = (channel, method, properties)
        new_pos += 1
        if new_pos == buffered:
            self._buf = b""
            self._pos = 0
        else:
            self._pos = new_pos
        return channel, method, properties, body

    def next_publishes(self) -> list[tuple[int, Method, bytes, bytes]] | None:
        """:meth:`next_publish`, then every following publish that repeats its octets up to
        the body (same channel, arguments, properties and body size), in one list; None when
        no publish can be read in one pass. A publisher's burst becomes one call."""
        first = self.next_publish()
        if first is None:
            return None
        run: list[tuple[int, Method, bytes, bytes]] = [first]
        same = self._same_publish
        shape = self._shape
        if not first[3] or same is None or shape is None:
            return run  # an empty body sets no layout: nothing to repeat
        # The first publish was read through its layout, or set it: ``_same`` is its prefix.
        channel, method, properties = same
        prefix = self._same
        head_size = shape.head_size
        body_size = shape.body_size
        buf = self._buf
        pos = self._pos
        buffered = len(buf)
        append = run.append
        while pos:
            head_end = pos + head_size
            end = head_end + body_size
            if end >= buffered or buf[end] != FRAME_END or buf[pos:head_end] != prefix:
                break
            append((channel, method, properties, bytes(buf[head_end:end])))
            pos = end + 1
            if pos == buffered:
                self._buf = b""
                pos = 0
        self._pos = pos
        return run

    def _consume(self, new_pos: int) -> None:
        if new_pos >= len(self._buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = new_pos

    def _break(self, text: str) -> FrameError:
        self.broken = FrameError(text)
        self._buf = b""
        self._pos = 0
        return self.broken

    @staticmethod
    def _method(buf: bytes | bytearray, start: int, end: int) -> Method:
        if end - start < _METHOD_ID.size:
            raise FrameError(f"method frame of {end - start} octets is too short")
        class_id, method_id = _METHOD_ID.unpack_from(buf, start)
        fast = _FAST_DECODERS.get((class_id << 16) | method_id)
        if fast is not None:
            return fast(buf, start + _METHOD_ID.size, end)
        return decode_method(class_id, method_id, bytes(buf[start + _METHOD_ID.size : end]))
