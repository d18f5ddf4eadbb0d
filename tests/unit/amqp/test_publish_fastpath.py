"""The one-pass publish decoder against the frame-by-frame path it short-cuts.

Fed one octet at a time, the connection never holds a whole publish, so it takes the
frame-by-frame path; fed all at once, every well-formed publish takes
:meth:`FrameDecoder.next_publish`. Both must give the same events and the same output.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands

from gateway.amqp.connection import AMQPConnection
from gateway.amqp.connection_events import ContentReceived, Event, HardErrorRaised
from gateway.amqp.fastpath import BasicPublish
from gateway.amqp.frames import FrameDecoder, HeaderFrame, MethodFrame
from gateway.amqp.spec import FRAME_ERROR, UNEXPECTED_FRAME, FrameError

from .helpers import HEARTBEAT, Peer, accept_guest, content, method, publish

SETTINGS = settings(max_examples=200, deadline=None)
FRAME_MAX = 4096


def _opened(max_body_size: int = 3000) -> Peer:
    peer = Peer(AMQPConnection(authenticate=accept_guest, max_body_size=max_body_size))
    peer.handshake(frame_max=FRAME_MAX)
    peer.open_channel(1)
    peer.open_channel(2)
    return peer


def _corrupt(frames: bytes, offset: int, value: int) -> bytes:
    data = bytearray(frames)
    data[offset % len(data)] = value
    return bytes(data)


_names = st.sampled_from(["", "amq.topic", "ex"])
_keys = st.sampled_from(["", "a.b", "q", "k" * 200])
_properties = st.sampled_from(
    [
        None,
        commands.Basic.Properties(delivery_mode=2),
        commands.Basic.Properties(content_type="text/plain", headers={"a": 1}),
    ]
)


@st.composite
def _pieces(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["publish", "publish", "publish", "ack", "beat", "other"]))
    channel = draw(st.sampled_from([1, 1, 2, 3]))  # channel 3 is never opened
    if kind == "ack":
        return method(channel, commands.Basic.Ack(delivery_tag=draw(st.integers(0, 9))))
    if kind == "beat":
        return HEARTBEAT
    if kind == "other":
        return method(channel, commands.Channel.Close(200, "bye", 0, 0))
    # Empty, small, up to one full frame, and spanning several frames.
    size = draw(st.sampled_from([0, 1, 7, 2999, 3001, FRAME_MAX - 8, FRAME_MAX - 7, 9000]))
    body = bytes((draw(st.integers(0, 255)),)) * size
    whole = method(
        channel,
        commands.Basic.Publish(
            exchange=draw(_names), routing_key=draw(_keys), mandatory=draw(st.booleans())
        ),
    ) + content(channel, body, draw(_properties), FRAME_MAX)
    if draw(st.integers(0, 4)) == 0:
        # A damaged octet: frame types, channels, sizes, class ids, weight, names, frame ends.
        offset = draw(st.one_of(st.integers(0, 80), st.integers(0, 10_000)))
        whole = _corrupt(whole, offset, draw(st.sampled_from([0, 1, 2, 3, 0xCE, 0xFF])))
    return whole


def _normal(events: list[Event]) -> list[Any]:
    # Exceptions compare by identity: compare what the peer is told instead. Contents one by
    # one: how they group into events depends on how the bytes arrived.
    out: list[Any] = []
    for e in events:
        if isinstance(e, HardErrorRaised):
            err = e.error
            out.append((type(err), err.code, err.reply_text, err.class_id, err.method_id))
        elif isinstance(e, ContentReceived):
            out.extend(e.contents)
        else:
            out.append(e)
    return out


@SETTINGS
@given(st.lists(_pieces(), max_size=8), st.sampled_from([3000, 100_000]))
def test_one_pass_publish_equals_frame_by_frame(pieces: list[bytes], max_body: int) -> None:
    _same_either_way(b"".join(pieces), max_body)


def _same_either_way(stream: bytes, max_body: int = 3000) -> None:
    whole, split = _opened(max_body), _opened(max_body)
    whole_events = whole.send(stream)
    split_events: list[Event] = []
    for i in range(len(stream)):
        split_events += split.send(stream[i : i + 1])
    assert _normal(whole_events) == _normal(split_events)
    assert whole.conn.data_to_send() == split.conn.data_to_send()
    assert whole.conn.state is split.conn.state


def test_every_damaged_octet_of_a_publish_equals_frame_by_frame() -> None:
    good = publish(1, b"xyz", "ex", "rk")
    for offset in range(len(good)):
        for value in (0, 1, 2, 3, 0x3C, 0xCE, 0xFF):
            _same_either_way(_corrupt(good, offset, value) + publish(2, b"next"))


def test_next_publish_takes_a_whole_publish_only() -> None:
    data = publish(1, b"hello", "ex", "rk")
    decoder = FrameDecoder(protocol_header=False)
    for cut in range(len(data)):
        decoder.append(data[:cut])
        assert decoder.next_publish() is None
        assert decoder.buffered == cut  # nothing consumed
        decoder = FrameDecoder(protocol_header=False)
    decoder.append(data + HEARTBEAT)
    assert decoder.next_publish() == (1, BasicPublish("ex", "rk"), b"\x00\x00", b"hello")
    assert decoder.buffered == len(HEARTBEAT)
    assert decoder.next_publish() is None


def test_next_publish_leaves_multi_frame_bodies_and_other_methods_alone() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=FRAME_MAX)
    data = method(1, commands.Basic.Publish()) + content(1, b"x" * FRAME_MAX, None, FRAME_MAX)
    decoder.append(data)
    assert decoder.next_publish() is None
    assert decoder.buffered == len(data)
    decoder = FrameDecoder(protocol_header=False)
    decoder.append(method(1, commands.Basic.Ack(delivery_tag=1)) + publish(1, b"x"))
    assert decoder.next_publish() is None


def test_next_publish_from_a_partly_consumed_growable_buffer() -> None:
    data = publish(1, b"a") + publish(1, b"b")
    decoder = FrameDecoder(protocol_header=False)
    decoder.append(data[:20])
    decoder.append(data[20:21])  # less than what waits: into a growable buffer
    assert type(decoder._buf) is bytearray
    decoder.append(data[21:])
    assert decoder.next_publish() == (1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"a")
    assert decoder.next_publish() == (1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"b")
    assert decoder.buffered == 0


def test_one_pass_publish_on_a_closing_channel_is_discarded() -> None:
    peer = _opened()
    assert peer.conn.close_channel(1, 406, "PRECONDITION_FAILED - test")
    peer.received()
    assert peer.send(publish(1, b"late")) == []
    assert peer.send(publish(2, b"on time")) == [
        ContentReceived(2, [(2, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"on time")])
    ]


def test_one_pass_publish_above_the_body_limit() -> None:
    peer = _opened(max_body_size=10)
    events = peer.send(publish(1, b"x" * 11))
    [error] = [e.error for e in events if isinstance(e, HardErrorRaised)]
    assert (error.code, error.class_id, error.method_id) == (FRAME_ERROR, 60, 40)
    assert "content body size 11 exceeds maximum allowed size 10" in error.reply_text


def test_one_pass_publish_while_content_is_pending() -> None:
    peer = _opened()
    events = peer.send(method(1, commands.Basic.Publish()) + publish(1, b"x"))
    [error] = [e.error for e in events if isinstance(e, HardErrorRaised)]
    assert error.code == UNEXPECTED_FRAME


def test_every_damaged_octet_after_a_publish_of_the_same_shape() -> None:
    # The first publish sets the layout the decoder tries first for the next one: a damaged
    # copy of it must still take the frame-by-frame path's answer.
    good = publish(1, b"xyz", "ex", "rk")
    for offset in range(len(good)):
        for value in (0, 1, 2, 3, 0x3C, 0xCE, 0xFF):
            _same_either_way(good + _corrupt(good, offset, value) + publish(2, b"next"))


def test_publishes_of_one_shape_with_other_names_properties_and_bodies() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=FRAME_MAX)
    a = method(1, commands.Basic.Publish(exchange="ex", routing_key="k1")) + content(
        1, b"aaa", commands.Basic.Properties(delivery_mode=1), FRAME_MAX
    )
    b = method(1, commands.Basic.Publish(exchange="xe", routing_key="k2", mandatory=True)) + (
        content(1, b"bbb", commands.Basic.Properties(delivery_mode=2), FRAME_MAX)
    )
    assert len(a) == len(b)
    decoder.append(a + b + a)
    assert decoder.next_publish() == (1, BasicPublish("ex", "k1"), b"\x10\x00\x01", b"aaa")
    assert decoder._shape is not None
    assert decoder.next_publish() == (
        1, BasicPublish("xe", "k2", mandatory=True), b"\x10\x00\x02", b"bbb")  # fmt: skip
    assert decoder.next_publish() == (1, BasicPublish("ex", "k1"), b"\x10\x00\x01", b"aaa")
    assert decoder.buffered == 0
    # Same sizes on another channel, a body of another size: not the remembered layout.
    decoder.append(publish(2, b"ccc", "ex", "k1") + publish(2, b"dddd", "ex", "k1"))
    assert decoder.next_publish() == (2, BasicPublish("ex", "k1"), b"\x00\x00", b"ccc")
    assert decoder.next_publish() == (2, BasicPublish("ex", "k1"), b"\x00\x00", b"dddd")


def test_a_remembered_layout_does_not_outlive_frame_max() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=FRAME_MAX)
    data = publish(1, b"x" * 3000, "ex", "rk")
    decoder.append(data)
    assert decoder.next_publish() is not None
    decoder.frame_max = 1000
    decoder.append(data)
    assert decoder.next_publish() is None
    assert isinstance(decoder.next_frame(), MethodFrame)
    assert isinstance(decoder.next_frame(), HeaderFrame)
    with pytest.raises(FrameError, match="above frame_max 1000"):
        decoder.next_frame()  # the 3000-octet body frame


def test_a_repeated_publish_shares_the_decoded_method_and_properties() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=FRAME_MAX)
    props = commands.Basic.Properties(delivery_mode=1)
    one = method(1, commands.Basic.Publish(exchange="ex", routing_key="k")) + content(
        1, b"abc", props, FRAME_MAX
    )
    other_key = method(1, commands.Basic.Publish(exchange="ex", routing_key="j")) + content(
        1, b"def", props, FRAME_MAX
    )
    decoder.append(one + one.replace(b"abc", b"xyz") + other_key + one)
    first = decoder.next_publish()
    second = decoder.next_publish()
    third = decoder.next_publish()
    fourth = decoder.next_publish()
    assert first is not None
    assert second is not None
    assert third is not None
    assert fourth is not None
    assert second == (1, BasicPublish("ex", "k"), b"\x10\x00\x01", b"xyz")
    # Octet for octet the same up to the body: the same objects, not equal copies.
    assert second[1] is first[1]
    assert second[2] is first[2]
    assert third == (1, BasicPublish("ex", "j"), b"\x10\x00\x01", b"def")
    assert fourth == first
    assert decoder.buffered == 0


def test_a_partial_frame_up_to_the_new_data_is_joined_into_bytes_a_longer_one_grows() -> None:
    # Joining copies at most twice what arrived (linear); a frame trickling in grows in place.
    small = publish(1, b"s" * 10)
    decoder = FrameDecoder(protocol_header=False)
    decoder.append(small[:5])
    decoder.append(small[5:])
    assert type(decoder._buf) is bytes
    got = decoder.next_publish()
    assert got is not None
    assert type(got[3]) is bytes
    assert got[3] == b"s" * 10
    big = method(1, commands.Basic.Publish(exchange="ex")) + content(
        1, b"b" * 70_000, None, 131_072
    )
    decoder = FrameDecoder(protocol_header=False, frame_max=131_072)
    decoder.append(big[:69_000])
    decoder.append(big[69_000:69_100])
    assert type(decoder._buf) is bytearray
    decoder.append(big[69_100:])
    got = decoder.next_publish()
    assert got is not None
    assert type(got[3]) is bytes
    assert got[3] == b"b" * 70_000


def test_consecutive_contents_of_a_channel_make_one_event() -> None:
    peer = _opened()
    ack = method(1, commands.Basic.Ack(delivery_tag=1))
    a, b, c = publish(1, b"a"), publish(1, b"b"), publish(2, b"c")
    first, rest = _pieces_of(publish(1, b"d"))
    events = peer.send(a + b + c + a + ack + b + first) + peer.send(rest)
    assert [(type(e).__name__, [x[3] for x in getattr(e, "contents", [])]) for e in events] == [
        ("ContentReceived", [b"a", b"b"]),
        ("ContentReceived", [b"c"]),
        ("ContentReceived", [b"a"]),
        ("MethodReceived", []),
        ("ContentReceived", [b"b"]),
        ("ContentReceived", [b"d"]),  # the next read's
    ]


def _pieces_of(whole: bytes) -> list[bytes]:
    """A publish cut before its last octet: the first read cannot take it in one pass."""
    return [whole[:-1], whole[-1:]]


def test_next_publishes_takes_a_run_of_repeated_publishes() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=FRAME_MAX)
    run = [publish(1, bytes((65 + i,)) * 3, "ex", "k") for i in range(4)]
    other_body_size = publish(1, b"long", "ex", "k")
    other_channel = publish(2, b"zzz", "ex", "k")
    tail = publish(1, b"end", "ex", "k")
    decoder.append(b"".join(run) + other_body_size + other_channel + tail[:-1])
    got = decoder.next_publishes()
    assert got is not None
    assert [c[3] for c in got] == [b"AAA", b"BBB", b"CCC", b"DDD"]
    assert {(c[0], c[1], c[2]) for c in got} == {(1, BasicPublish("ex", "k"), b"\x00\x00")}
    assert decoder.next_publishes() == [(1, BasicPublish("ex", "k"), b"\x00\x00", b"long")]
    assert decoder.next_publishes() == [(2, BasicPublish("ex", "k"), b"\x00\x00", b"zzz")]
    assert decoder.next_publishes() is None  # the last one is not all there
    decoder.append(tail[-1:] + tail)
    assert [c[3] for c in decoder.next_publishes() or []] == [b"end", b"end"]
    assert decoder.buffered == 0


def test_next_publishes_after_an_empty_body_or_from_a_growable_buffer() -> None:
    decoder = FrameDecoder(protocol_header=False, frame_max=131_072)
    empty = publish(1, b"")
    assert len(empty) < 100
    decoder.append(empty + empty)
    assert decoder.next_publishes() == [(1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"")]
    assert decoder.next_publishes() == [(1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"")]
    big = method(1, commands.Basic.Publish(exchange="ex")) + content(
        1, b"b" * 70_000, None, 131_072
    )
    decoder.append(big[:69_000])
    decoder.append(big[69_000:69_100])  # a long partial frame: a bytearray now
    decoder.append(big[69_100:] + big + big[:10])
    got = decoder.next_publishes()
    assert got is not None
    assert len(got) == 2
    assert all(type(c[3]) is bytes and c[3] == b"b" * 70_000 for c in got)
    assert decoder.buffered == 10
