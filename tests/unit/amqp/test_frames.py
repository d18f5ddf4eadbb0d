"""The streaming frame decoder and method coding, against pamqp-built bytes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import base, commands
from pamqp import frame as pamqp_frame

from gateway.amqp import fastpath
from gateway.amqp.frames import (
    BodyFrame,
    Frame,
    FrameDecoder,
    HeaderFrame,
    HeartbeatFrame,
    Method,
    MethodFrame,
    ProtocolHeaderFrame,
    decode_method,
    encode_method,
    has_content,
    method_ids,
)
from gateway.amqp.spec import (
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    AMQPError,
    FrameError,
)

from .helpers import HEARTBEAT, content, method

SETTINGS = settings(max_examples=200, deadline=None)

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@#,/+ "
names = st.text(alphabet=NAME_ALPHABET, max_size=127)
short_strings = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
table_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=10)
tables = st.dictionaries(
    table_keys,
    st.text(max_size=10) | st.integers(-(2**31), 2**31) | st.booleans(),
    max_size=4,
).map(lambda d: dict(sorted(d.items())))

# Arguments pamqp's validation pins to one value or a restricted alphabet.
FIXED = {
    "ticket": 0,
    "out_of_band": "0",
    "known_hosts": "",
    "capabilities": "",
    "insist": False,
    "cluster_id": "",
}
NAMED = {"exchange", "queue", "source", "destination", "virtual_host"}
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "bit": st.booleans(),
    "octet": st.integers(0, 255),
    "short": st.integers(0, 65535),
    "long": st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 2**63 - 1),
    "shortstr": short_strings,
    "longstr": st.text(max_size=100),
    "table": tables,
}

PAMQP_METHODS: list[type[base.Frame]] = list(commands.INDEX_MAPPING.values())
FAST = {
    commands.Basic.Publish: fastpath.BasicPublish,
    commands.Basic.Ack: fastpath.BasicAck,
    commands.Basic.Nack: fastpath.BasicNack,
    commands.Basic.Reject: fastpath.BasicReject,
}


def arguments(cls: type[base.Frame]) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name in cls.__slots__:
        if name in FIXED:
            fields[name] = st.just(FIXED[name])
        elif cls is commands.Channel.OpenOk:
            fields[name] = st.just("0")  # channel_id: deprecated, must be "0"
        elif name in NAMED:
            fields[name] = names
        else:
            fields[name] = BY_TYPE[cls.amqp_type(name)]
    return st.fixed_dictionaries(fields)


def build(cls: type[base.Frame], values: dict[str, Any]) -> base.Frame:
    instance = cls.__new__(cls)
    for name, value in values.items():
        setattr(instance, name, value)
    return instance


def values_of(decoded: Method) -> dict[str, Any]:
    if dataclasses.is_dataclass(decoded):
        return dataclasses.asdict(decoded)
    assert isinstance(decoded, base.Frame)
    return dict(decoded)


@pytest.mark.parametrize("cls", PAMQP_METHODS, ids=lambda c: c.name)
@settings(max_examples=25, deadline=None)  # times 64 methods
@given(data=st.data())
def test_every_method_round_trips_through_pamqp_bytes(
    cls: type[base.Frame], data: st.DataObject
) -> None:
    values = data.draw(arguments(cls))
    channel = data.draw(st.integers(0, 65535))
    wire = pamqp_frame.marshal(build(cls, values), channel)
    [frame] = FrameDecoder(protocol_header=False, frame_max=0).feed(wire)
    assert isinstance(frame, MethodFrame)
    assert frame.channel == channel
    expected_type = FAST.get(cls, cls)
    assert type(frame.method) is expected_type
    decoded = values_of(frame.method)
    if cls in FAST:
        values = {k: v for k, v in values.items() if k != "ticket"}
    assert decoded == values
    assert method_ids(frame.method) == (cls.index >> 16, cls.frame_id)
    if isinstance(frame.method, base.Frame):
        assert encode_method(channel, frame.method) == wire


def test_content_methods() -> None:
    assert has_content(fastpath.BasicPublish("", "q"))
    assert has_content(commands.Basic.Deliver())
    assert has_content(commands.Basic.GetOk())
    assert has_content(commands.Basic.Return())
    assert not has_content(fastpath.BasicAck(1))
    assert not has_content(commands.Queue.Declare())


STREAM = b"".join(
    [
        PROTOCOL_HEADER,
        method(0, commands.Connection.StartOk(response="\x00guest\x00guest")),
        method(1, commands.Basic.Publish(exchange="ex", routing_key="a.b")),
        content(1, b"x" * 10000, commands.Basic.Properties(delivery_mode=2)),
        HEARTBEAT,
        method(2, commands.Basic.Ack(delivery_tag=5, multiple=True)),
        method(2, commands.Queue.Declare(queue="q", durable=True, arguments={"x-max-length": 3})),
    ]
)


def describe(frames: list[Frame]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for frame in frames:
        if isinstance(frame, MethodFrame):
            out.append(("method", frame.channel, frame.method.name, values_of(frame.method)))
        else:
            out.append((frame,))
    return out


WHOLE = describe(FrameDecoder(frame_max=0).feed(STREAM))


def test_stream_decodes_to_the_expected_frames() -> None:
    kinds = [type(f) for f in FrameDecoder(frame_max=0).feed(STREAM)]
    assert kinds == [
        ProtocolHeaderFrame,
        MethodFrame,
        MethodFrame,
        HeaderFrame,
        BodyFrame,
        BodyFrame,
        BodyFrame,
        HeartbeatFrame,
        MethodFrame,
        MethodFrame,
    ]
    header = WHOLE[3][0]
    assert isinstance(header, HeaderFrame)
    assert header.header.body_size == 10000


def test_split_at_every_byte() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder(frame_max=0)
        frames = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert describe(frames) == WHOLE, cut
        assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder(frame_max=0)
    frames: list[Frame] = []
    for i in range(len(STREAM)):
        frames += decoder.feed(STREAM[i : i + 1])
    assert describe(frames) == WHOLE


@SETTINGS
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_random_chunking(cuts: list[int]) -> None:
    decoder = FrameDecoder(frame_max=0)
    frames: list[Frame] = []
    previous = 0
    for cut in [*sorted(cuts), len(STREAM)]:
        frames += decoder.feed(STREAM[previous:cut])
        previous = cut
    assert describe(frames) == WHOLE


def test_partial_frames_do_not_accumulate() -> None:
    # A stream that always stops mid-frame keeps only the unfinished frame buffered.
    decoder = FrameDecoder(protocol_header=False)
    assert decoder.feed(HEARTBEAT[:4]) == []
    for _ in range(1000):
        assert decoder.feed(HEARTBEAT[4:] + HEARTBEAT[:4]) == [HeartbeatFrame(0)]
        assert decoder.buffered == 4


def test_next_frame_leaves_the_rest_buffered() -> None:
    decoder = FrameDecoder(protocol_header=False)
    decoder.append(HEARTBEAT * 3)
    assert decoder.next_frame() == HeartbeatFrame(0)
    assert decoder.buffered == 16
    assert decoder.feed(b"") == [HeartbeatFrame(0), HeartbeatFrame(0)]


def test_any_eight_octets_make_the_protocol_header() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"GET / HT") == [ProtocolHeaderFrame(b"GET / HT")]


def _error(data: bytes, frame_max: int = 4096) -> AMQPError:
    decoder = FrameDecoder(protocol_header=False, frame_max=frame_max)
    with pytest.raises(AMQPError) as info:
        decoder.feed(data)
    return info.value


def test_bad_frame_end_breaks_the_stream() -> None:
    decoder = FrameDecoder(protocol_header=False)
    good = method(1, commands.Basic.Ack(delivery_tag=1))
    decoder.append(good[:-1] + b"\x00" + HEARTBEAT)
    with pytest.raises(FrameError):
        decoder.next_frame()
    assert decoder.broken is not None
    with pytest.raises(FrameError):
        decoder.feed(HEARTBEAT)  # no resynchronisation


def test_frame_larger_than_frame_max_is_refused_before_it_arrives() -> None:
    head = b"\x03\x00\x01" + (4097).to_bytes(4, "big")
    decoder = FrameDecoder(protocol_header=False, frame_max=4096)
    with pytest.raises(FrameError, match="frame_max") as info:
        decoder.feed(head)
    assert info.value.code == FRAME_ERROR
    assert decoder.broken is not None


def test_frame_max_tolerates_the_framing_octets_as_rabbitmq_does() -> None:
    payload = b"x" * 4096
    body = b"\x03\x00\x01" + len(payload).to_bytes(4, "big") + payload + b"\xce"
    assert FrameDecoder(protocol_header=False).feed(body) == [BodyFrame(1, payload)]


def test_frame_max_zero_is_unbounded() -> None:
    payload = b"x" * 200_000
    body = b"\x03\x00\x01" + len(payload).to_bytes(4, "big") + payload + b"\xce"
    assert FrameDecoder(protocol_header=False, frame_max=0).feed(body) == [BodyFrame(1, payload)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x04\x00\x00\x00\x00\x00\x00\xce", FRAME_ERROR),  # unknown frame type
        (b"\x01\x00\x01\x00\x00\x00\x02\x00\x3c\xce", FRAME_ERROR),  # method frame too short
        (b"\x02\x00\x01\x00\x00\x00\x02\x00\x3c\xce", FRAME_ERROR),  # header frame too short
        (b"\x08\x00\x00\x00\x00\x00\x01\x00\xce", FRAME_ERROR),  # heartbeat with payload
        (b"\x01\x00\x01\x00\x00\x00\x04\x00\x1e\x00\x0a\xce", NOT_IMPLEMENTED),  # class 30
        (b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x00\x63\xce", NOT_IMPLEMENTED),  # basic.99
    ],
)
def test_malformed_frames(data: bytes, code: int) -> None:
    decoder = FrameDecoder(protocol_header=False)
    with pytest.raises(AMQPError) as info:
        decoder.feed(data)
    assert info.value.code == code
    # The frame itself was delimited correctly: the stream is still in sync.
    assert decoder.broken is None
    assert decoder.feed(HEARTBEAT) == [HeartbeatFrame(0)]


def test_unknown_method_names_itself() -> None:
    err = _error(b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x00\x63\xce")
    assert (err.class_id, err.method_id) == (60, 99)


def _with_payload(wire: bytes, payload: bytes) -> bytes:
    return wire[:3] + len(payload).to_bytes(4, "big") + payload + b"\xce"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-1],  # last argument truncated
        lambda p: p + b"\x00",  # trailing octet
        lambda p: p[:4] + b"\x00\x00" + b"\xff" + p[7:],  # queue name length past the end
    ],
)
def test_malformed_arguments_are_syntax_errors(mangle: Any) -> None:
    wire = method(1, commands.Queue.Declare(queue="q", arguments={"a": 1}))
    err = _error(_with_payload(wire, mangle(wire[7:-1])))
    assert (err.code, err.class_id, err.method_id) == (SYNTAX_ERROR, 50, 10)


def test_invalid_table_inside_arguments() -> None:
    wire = method(1, commands.Queue.Declare(queue="q", arguments={"a": 1}))
    payload = wire[7:-1].replace(b"\x01ab", b"\x01a?")  # unknown field type
    err = _error(_with_payload(wire, payload))
    assert err.code == SYNTAX_ERROR


def test_invalid_utf8_short_string() -> None:
    wire = method(1, commands.Queue.Delete(queue="qq"))
    payload = wire[7:-1].replace(b"\x02qq", b"\x02\xff\xfe")
    assert _error(_with_payload(wire, payload)).code == SYNTAX_ERROR


def test_decode_method_does_not_warn_for_deprecated_methods() -> None:
    # pamqp's constructor warns for basic.recover-async; decoding must not (filterwarnings=error).
    decoded = decode_method(60, 100, b"\x01")
    assert isinstance(decoded, commands.Basic.RecoverAsync)
    assert decoded.requeue is True
