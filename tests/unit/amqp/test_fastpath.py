"""The struct fast paths against pamqp as the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat

from gateway.amqp import fastpath
from gateway.amqp.spec import SYNTAX_ERROR, AMQPSyntaxError

SETTINGS = settings(max_examples=200, deadline=None)

# pamqp validates exchange names against this alphabet (max 127).
exchange_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@#,/+ ",
    max_size=127,
)
# Short strings: up to 255 octets of UTF-8.
short_strings = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
delivery_tags = st.integers(min_value=0, max_value=2**63 - 1)


def _args(frame: bytes) -> tuple[bytes, int, int]:
    """A method frame's buffer with the offsets of its arguments (after class and method id)."""
    return frame, 7 + 4, len(frame) - 1


@SETTINGS
@given(exchange_names, short_strings, st.booleans(), st.booleans())
def test_basic_publish_decodes_pamqp_bytes(
    exchange: str, routing_key: str, mandatory: bool, immediate: bool
) -> None:
    wire = pamqp_frame.marshal(
        commands.Basic.Publish(
            exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
        ),
        1,
    )
    assert fastpath.decode_basic_publish(*_args(wire)) == fastpath.BasicPublish(
        exchange, routing_key, mandatory, immediate
    )


@SETTINGS
@given(st.integers(1, 65535), delivery_tags, st.booleans())
def test_basic_ack_both_ways(channel: int, tag: int, multiple: bool) -> None:
    wire = pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=tag, multiple=multiple), channel)
    assert fastpath.encode_basic_ack(channel, tag, multiple) == wire
    assert fastpath.decode_basic_ack(*_args(wire)) == fastpath.BasicAck(tag, multiple)


@SETTINGS
@given(st.integers(1, 65535), delivery_tags, st.booleans(), st.booleans())
def test_basic_nack_both_ways(channel: int, tag: int, multiple: bool, requeue: bool) -> None:
    wire = pamqp_frame.marshal(
        commands.Basic.Nack(delivery_tag=tag, multiple=multiple, requeue=requeue), channel
    )
    assert fastpath.encode_basic_nack(channel, tag, multiple, requeue) == wire
    assert fastpath.decode_basic_nack(*_args(wire)) == fastpath.BasicNack(tag, multiple, requeue)


@SETTINGS
@given(st.integers(1, 65535), delivery_tags, st.booleans())
def test_basic_reject_both_ways(channel: int, tag: int, requeue: bool) -> None:
    wire = pamqp_frame.marshal(commands.Basic.Reject(delivery_tag=tag, requeue=requeue), channel)
    assert fastpath.encode_basic_reject(channel, tag, requeue) == wire
    assert fastpath.decode_basic_reject(*_args(wire)) == fastpath.BasicReject(tag, requeue)


def _pamqp_content(channel: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """pamqp's header frame (with our raw properties spliced in) and body frames."""
    header = pamqp_frame.marshal(pamqp_header.ContentHeader(0, len(body)), channel)
    # pamqp writes empty properties as two zero octets at the end of the header payload.
    header_payload = header[7:-3] + properties
    size = len(header_payload).to_bytes(4, "big")
    out = [header[:3] + size + header_payload + b"\xce"]
    step = frame_max - 8
    for offset in range(0, len(body), step):
        chunk = pamqp_body.ContentBody(body[offset : offset + step])
        out.append(pamqp_frame.marshal(chunk, channel))
    return b"".join(out)


properties_raw = st.builds(
    lambda props: props.marshal(),
    st.builds(
        commands.Basic.Properties,
        content_type=st.none() | st.just("application/json"),
        delivery_mode=st.none() | st.sampled_from([1, 2]),
        message_id=st.none() | st.text(min_size=1, max_size=20),
    ),
)


@SETTINGS
@given(
    channel=st.integers(1, 65535),
    consumer_tag=short_strings,
    tag=delivery_tags,
    redelivered=st.booleans(),
    exchange=exchange_names,
    routing_key=short_strings,
    properties=properties_raw,
    body=st.binary(max_size=20000),
    frame_max=st.sampled_from([4096, 5000, 131072]),
)
def test_deliver_matches_pamqp(
    channel: int,
    consumer_tag: str,
    tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    method = pamqp_frame.marshal(
        commands.Basic.Deliver(
            consumer_tag=consumer_tag,
            delivery_tag=tag,
            redelivered=redelivered,
            exchange=exchange,
            routing_key=routing_key,
        ),
        channel,
    )
    expected = method + _pamqp_content(channel, properties, body, frame_max)
    args = (channel, consumer_tag, tag, redelivered, exchange, routing_key, properties, body)
    assert fastpath.encode_deliver(*args, frame_max) == expected
    chunks = fastpath.encode_deliver_chunks(*args, frame_max)
    assert b"".join(chunks) == expected


def test_deliver_chunks_reference_the_body() -> None:
    body = bytes(range(256)) * 100
    chunks = fastpath.encode_deliver_chunks(1, "ctag", 1, False, "", "q", b"\x00\x00", body, 4096)
    views = [c for c in chunks if isinstance(c, memoryview)]
    assert [len(v) for v in views] == [4088] * 6 + [len(body) - 6 * 4088]
    assert all(v.obj is body for v in views)


def test_deliver_of_an_empty_body_has_no_body_frame() -> None:
    frames = fastpath.encode_deliver(1, "c", 7, True, "x", "k", b"\x00\x00", b"", 4096)
    types = []
    pos = 0
    while pos < len(frames):
        types.append(frames[pos])
        pos += 8 + int.from_bytes(frames[pos + 3 : pos + 7], "big")
    assert types == [1, 2]


def test_frame_max_zero_sends_one_body_frame() -> None:
    body = b"x" * 200_000
    wire = fastpath.encode_content(3, b"\x00\x00", body, 0)
    body_frame = wire[22:]
    assert body_frame[0] == 3
    assert int.from_bytes(body_frame[3:7], "big") == len(body)


@SETTINGS
@given(st.integers(0, 2**64 - 1), st.binary(max_size=300))
def test_content_header_decodes_pamqp_bytes(body_size: int, properties: bytes) -> None:
    header = pamqp_frame.marshal(pamqp_header.ContentHeader(0, body_size), 1)
    payload = header[7:-3] + properties
    decoded = fastpath.decode_content_header(payload, 0, len(payload))
    assert decoded == fastpath.ContentHeader(60, 0, body_size, properties)
    assert fastpath.encode_content_header(1, body_size, properties) == (
        header[:3] + len(payload).to_bytes(4, "big") + payload + b"\xce"
    )


def test_content_header_too_short() -> None:
    assert fastpath.decode_content_header(b"\x00" * 11, 0, 11) is None


def test_heartbeat_frame_matches_pamqp() -> None:
    assert pamqp_heartbeat.Heartbeat.marshal() == fastpath.HEARTBEAT_FRAME


@pytest.mark.parametrize(
    "args",
    [
        b"\x00\x00",  # ticket only
        b"\x00\x00\x05ab",  # exchange runs past the end
        b"\x00\x00\x01a\x01b",  # bits missing
        b"\x00\x00\x01a\x01b\x00\x00",  # one octet too many
        b"\x00\x00\x02\xff\xfe\x00\x00",  # exchange is not UTF-8
    ],
)
def test_malformed_basic_publish_is_a_syntax_error(args: bytes) -> None:
    with pytest.raises(AMQPSyntaxError) as info:
        fastpath.decode_basic_publish(args, 0, len(args))
    assert (info.value.code, info.value.class_id, info.value.method_id) == (SYNTAX_ERROR, 60, 40)


@pytest.mark.parametrize(
    "decode", [fastpath.decode_basic_ack, fastpath.decode_basic_nack, fastpath.decode_basic_reject]
)
@pytest.mark.parametrize("size", [0, 8, 10])
def test_ack_arguments_of_the_wrong_size(decode: object, size: int) -> None:
    assert callable(decode)
    with pytest.raises(AMQPSyntaxError):
        decode(b"\x00" * size, 0, size)


def test_publish_decoding_respects_offsets_into_a_larger_buffer() -> None:
    # The decoder reads straight out of the receive buffer, surrounded by other frames.
    wire = pamqp_frame.marshal(commands.Basic.Publish(exchange="ex", routing_key="rk"), 1)
    buf = b"garbage" + wire + b"trailing"
    start = len(b"garbage") + 11
    decoded = fastpath.decode_basic_publish(buf, start, start + len(wire) - 12)
    assert decoded == fastpath.BasicPublish("ex", "rk")
