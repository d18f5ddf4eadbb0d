"""The connection machine driven by pamqp-built client bytes and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands
from pamqp import encode as pamqp_encode

from gateway.amqp.connection import AMQPConnection
from gateway.amqp.connection_events import (
    ChannelClosed,
    ChannelOpened,
    ConnectionClosed,
    ConnectionState,
    ContentReceived,
    HandshakeTimedOut,
    HardErrorRaised,
    HeartbeatTimedOut,
    LoginRequested,
    MethodReceived,
    OpenRequested,
    ProtocolHeaderRejected,
)
from gateway.amqp.connection_handshake import LOGIN_PENDING, SERVER_CAPABILITIES
from gateway.amqp.fastpath import BasicAck, BasicPublish, encode_basic_ack
from gateway.amqp.spec import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
)

from .helpers import (
    HEARTBEAT,
    Peer,
    accept_guest,
    content,
    method,
    methods,
    parse,
    publish,
    start_ok,
)


def opened(**tune: Any) -> Peer:
    peer = Peer()
    peer.handshake(**tune)
    peer.open_channel(1)
    return peer


def close_frame(peer: Peer) -> commands.Connection.Close:
    [(channel, frame)] = methods(peer.conn.data_to_send())
    assert channel == 0
    assert isinstance(frame, commands.Connection.Close)
    return frame


def hard_error(peer: Peer, data: bytes) -> commands.Connection.Close:
    """Feed ``data``, expect a connection.close, and return it."""
    events = peer.send(data)
    assert any(isinstance(e, HardErrorRaised) for e in events), events
    return close_frame(peer)


# -- handshake ------------------------------------------------------------------------------


def test_handshake() -> None:
    conn = AMQPConnection(
        server_properties={"product": "gateway", "version": "0.1.0"},
        authenticate=accept_guest,
        heartbeat=30,
    )
    peer = Peer(conn)
    assert peer.send(PROTOCOL_HEADER) == []
    [(channel, start)] = peer.received()
    assert channel == 0
    assert isinstance(start, commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms == "PLAIN AMQPLAIN"
    assert start.locales == "en_US"
    assert start.server_properties["product"] == "gateway"
    assert start.server_properties["capabilities"] == dict(SERVER_CAPABILITIES)

    assert peer.send(start_ok()) == []
    [(_, tune)] = peer.received()
    assert isinstance(tune, commands.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 30)

    peer.send(method(0, commands.Connection.TuneOk(100, 65536, 20)))
    assert peer.received() == []
    assert peer.send(method(0, commands.Connection.Open(virtual_host="/prod"))) == [
        OpenRequested("/prod")
    ]
    assert conn.state.value == "open_pending"
    assert conn.open_ok() == []
    [(_, open_ok)] = peer.received()
    assert isinstance(open_ok, commands.Connection.OpenOk)
    assert conn.state is ConnectionState.OPEN
    assert (conn.channel_max, conn.frame_max, conn.heartbeat) == (100, 65536, 20)
    assert conn.virtual_host == "/prod"
    assert conn.user == {"name": "guest"}
    assert conn.mechanism == "PLAIN"
    assert conn.client_properties["product"] == "test"
    assert conn.client_capabilities["connection.blocked"] is True


def test_protocol_header_may_arrive_in_pieces() -> None:
    peer = Peer()
    for octet in PROTOCOL_HEADER[:-1]:
        assert peer.send(bytes([octet])) == []
        assert peer.received() == []
    peer.send(PROTOCOL_HEADER[-1:])
    [(_, start)] = peer.received()
    assert isinstance(start, commands.Connection.Start)


@pytest.mark.parametrize(
    "header", [b"AMQP\x00\x00\x09\x00", b"GET / HTTP/1.1\r\n", b"AMQP\x01\x01\x00\x0a"]
)
def test_wrong_protocol_header_gets_ours_back(header: bytes) -> None:
    peer = Peer()
    assert peer.send(header) == [ProtocolHeaderRejected(header[:8])]
    assert peer.conn.data_to_send() == PROTOCOL_HEADER
    assert peer.conn.closed
    assert peer.send(b"more") == []


def test_login_as_an_event_keeps_later_input_waiting() -> None:
    peer = Peer(AMQPConnection())
    peer.send(PROTOCOL_HEADER)
    peer.received()
    # A client that pipelines: nothing after start-ok may be processed before the answer.
    events = peer.send(start_ok("alice", "s3cret") + method(0, commands.Connection.TuneOk(0, 0, 0)))
    assert events == [LoginRequested("PLAIN", "alice", "s3cret")]
    assert peer.conn.state is ConnectionState.AUTHENTICATING
    assert peer.received() == []
    events = peer.conn.accept_login("alice")
    [(_, tune), (_, close)] = peer.received()
    assert isinstance(tune, commands.Connection.Tune)
    # The buffered tune-ok (channel_max 0) is now processed, and refused as RabbitMQ does.
    assert isinstance(events[0], HardErrorRaised)
    assert events[0].error.code == NOT_ALLOWED
    assert close.reply_code == NOT_ALLOWED


def test_an_authenticator_may_decide_later() -> None:
    # LOGIN_PENDING (a password hashed off the loop): the same wait as without an
    # authenticator, and the answer it gives now is used when it answers.
    asked: list[tuple[str, str, str]] = []

    def authenticate(mechanism: str, username: str, password: str) -> object | None:
        asked.append((mechanism, username, password))
        return LOGIN_PENDING

    peer = Peer(AMQPConnection(authenticate=authenticate))
    peer.send(PROTOCOL_HEADER)
    peer.received()
    events = peer.send(start_ok("alice", "s3cret") + method(0, commands.Connection.TuneOk(0, 0, 0)))
    assert asked == [("PLAIN", "alice", "s3cret")]
    assert events == [LoginRequested("PLAIN", "alice", "s3cret")]
    assert peer.conn.state is ConnectionState.AUTHENTICATING
    assert peer.received() == []
    peer.conn.accept_login("alice")
    assert peer.conn.user == "alice"
    assert isinstance(peer.received()[0][1], commands.Connection.Tune)


def test_refused_login_sends_access_refused() -> None:
    peer = Peer(AMQPConnection())
    peer.send(PROTOCOL_HEADER)
    peer.received()
    peer.send(start_ok("alice", "wrong"))
    events = peer.conn.refuse_login()
    close = close_frame(peer)
    assert close.reply_code == ACCESS_REFUSED
    assert close.reply_text == (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile."
    )
    assert events == [ConnectionClosed(ACCESS_REFUSED, close.reply_text, 0, 0, by_peer=False)]
    assert peer.conn.closed


def test_refused_login_without_the_capability_just_closes() -> None:
    peer = Peer()
    peer.send(PROTOCOL_HEADER)
    peer.received()
    events = peer.send(start_ok("guest", "wrong", client_properties={}))
    assert peer.conn.data_to_send() == b""
    assert [type(e) for e in events] == [ConnectionClosed]
    assert peer.conn.closed


def test_amqplain_login() -> None:
    peer = Peer(AMQPConnection())
    peer.send(PROTOCOL_HEADER)
    peer.received()
    response = pamqp_encode.field_table({"LOGIN": "bob", "PASSWORD": "pw"})[4:]
    events = peer.send(
        method(
            0,
            commands.Connection.StartOk(
                client_properties={}, mechanism="AMQPLAIN", response=response.decode()
            ),
        )
    )
    assert events == [LoginRequested("AMQPLAIN", "bob", "pw")]


def test_unknown_mechanism_is_command_invalid() -> None:
    peer = Peer()
    peer.send(PROTOCOL_HEADER)
    peer.received()
    close = hard_error(peer, start_ok(mechanism="EXTERNAL"))
    assert (close.reply_code, close.class_id, close.method_id) == (COMMAND_INVALID, 10, 11)
    assert "unknown authentication mechanism 'EXTERNAL'" in close.reply_text
    assert peer.conn.state is ConnectionState.CLOSING


def _tuned_peer() -> Peer:
    peer = Peer()
    peer.send(PROTOCOL_HEADER + start_ok())
    peer.received()
    return peer


@pytest.mark.parametrize(
    ("tune_ok", "text"),
    [
        (
            (2047, 1000, 0),
            "negotiated frame_max = 1000 is lower than the minimum allowed value (4096)",
        ),
        (
            (2047, 0, 0),
            "negotiated frame_max = 0 is higher than the maximum allowed value (131072)",
        ),
        ((2047, 200000, 0), "frame_max = 200000 is higher than the maximum allowed value"),
        (
            (0, 4096, 0),
            "negotiated channel_max = 0 is higher than the maximum allowed value (2047)",
        ),
        ((3000, 4096, 0), "channel_max = 3000 is higher"),
    ],
)
def test_tune_ok_outside_the_offer_is_not_allowed(tune_ok: tuple[int, int, int], text: str) -> None:
    peer = _tuned_peer()
    close = hard_error(peer, method(0, commands.Connection.TuneOk(*tune_ok)))
    assert (close.reply_code, close.class_id, close.method_id) == (NOT_ALLOWED, 10, 30)
    assert text in close.reply_text


def test_server_without_limits_accepts_zero() -> None:
    peer = Peer(AMQPConnection(authenticate=accept_guest, channel_max=0, frame_max=0))
    peer.send(PROTOCOL_HEADER + start_ok())
    peer.received()
    peer.send(method(0, commands.Connection.TuneOk(0, 0, 0)))
    assert peer.conn.state is ConnectionState.OPENING
    assert (peer.conn.channel_max, peer.conn.frame_max) == (65535, 0)


def test_negotiated_frame_max_is_enforced() -> None:
    peer = opened(frame_max=4096)
    payload = b"x" * 4097
    frame = b"\x03\x00\x01" + len(payload).to_bytes(4, "big") + payload + b"\xce"
    events = peer.send(frame)
    assert [type(e) for e in events] == [HardErrorRaised, ConnectionClosed]
    assert close_frame(peer).reply_code == FRAME_ERROR
    assert peer.conn.closed  # a stream without framing cannot deliver a close-ok


def test_method_out_of_order_is_a_channel_error() -> None:
    peer = _tuned_peer()
    close = hard_error(peer, method(0, commands.Connection.Open()))
    assert (close.reply_code, close.class_id, close.method_id) == (CHANNEL_ERROR, 10, 40)
    assert "unexpected method Connection.Open in connection state tuning" in close.reply_text


def test_channel_frames_before_open_ok_are_unexpected() -> None:
    peer = _tuned_peer()
    peer.send(method(0, commands.Connection.TuneOk(2047, 131072, 0)))
    close = hard_error(peer, method(1, commands.Channel.Open()))
    assert close.reply_code == UNEXPECTED_FRAME


def test_input_after_connection_open_waits_for_the_vhost_answer() -> None:
    peer = _tuned_peer()
    events = peer.send(
        method(0, commands.Connection.TuneOk(2047, 131072, 0))
        + method(0, commands.Connection.Open(virtual_host="v"))
        + method(1, commands.Channel.Open())
    )
    assert events == [OpenRequested("v")]
    assert peer.conn.open_ok() == [ChannelOpened(1)]
    assert [type(f) for _, f in peer.received()] == [
        commands.Connection.OpenOk,
        commands.Channel.OpenOk,
    ]


def test_refused_vhost() -> None:
    peer = _tuned_peer()
    peer.send(method(0, commands.Connection.TuneOk(2047, 131072, 0)))
    peer.send(method(0, commands.Connection.Open(virtual_host="nope")))
    peer.conn.refuse_open("NOT_ALLOWED - vhost nope not found")
    close = close_frame(peer)
    assert (close.reply_code, close.reply_text) == (
        NOT_ALLOWED,
        "NOT_ALLOWED - vhost nope not found",
    )
    assert (close.class_id, close.method_id) == (10, 40)
    events = peer.send(method(0, commands.Connection.CloseOk()))
    assert events == [ConnectionClosed(NOT_ALLOWED, close.reply_text, 10, 40, by_peer=False)]


def test_answers_after_the_connection_died_are_ignored() -> None:
    peer = Peer(AMQPConnection())
    peer.send(PROTOCOL_HEADER + start_ok())
    peer.conn.close()
    assert peer.conn.accept_login("x") == []
    with pytest.raises(RuntimeError):
        Peer(AMQPConnection()).conn.open_ok()


def test_handshake_timeout() -> None:
    peer = Peer()
    peer.conn.start(peer.now)
    assert peer.conn.get_timer() == peer.now + 10
    assert peer.advance(9.9) == []
    assert peer.advance(0.1) == [HandshakeTimedOut(ConnectionState.AWAITING_HEADER)]
    assert peer.conn.closed
    assert peer.conn.get_timer() is None


def test_close_during_the_handshake_uses_the_close_timeout() -> None:
    peer = Peer(AMQPConnection())
    peer.send(PROTOCOL_HEADER + start_ok())
    peer.advance(9)
    peer.conn.close(now=peer.now)
    assert peer.conn.get_timer() == peer.now + 3.0
    assert peer.advance(1) == []
    assert [type(e) for e in peer.advance(2)] == [ConnectionClosed]


def test_no_handshake_timer_once_open() -> None:
    peer = opened()
    assert peer.conn.get_timer() is None
    assert peer.advance(3600) == []


# -- closing --------------------------------------------------------------------------------


def test_client_closes_the_connection() -> None:
    peer = opened()
    events = peer.send(method(0, commands.Connection.Close(200, "bye", 0, 0)))
    assert events == [ConnectionClosed(200, "bye", 0, 0, by_peer=True)]
    [(_, close_ok)] = peer.received()
    assert isinstance(close_ok, commands.Connection.CloseOk)
    assert peer.conn.closed
    assert not peer.conn.is_channel_open(1)


def test_server_closes_and_waits_for_close_ok() -> None:
    peer = opened()
    peer.conn.close(now=peer.now)
    close = close_frame(peer)
    assert close.reply_code == CONNECTION_FORCED
    assert close.reply_text.startswith("CONNECTION_FORCED - ")
    # Anything but close/close-ok is discarded now.
    assert peer.send(publish(1, b"late") + method(1, commands.Queue.Declare())) == []
    assert peer.conn.send_method(1, commands.Basic.QosOk()) is False
    events = peer.send(method(0, commands.Connection.CloseOk()))
    assert events == [ConnectionClosed(CONNECTION_FORCED, close.reply_text, 0, 0, by_peer=False)]
    assert peer.conn.closed


def test_close_ok_that_never_comes() -> None:
    peer = opened()
    peer.conn.close(now=peer.now)
    assert peer.conn.get_timer() == peer.now + 3.0
    events = peer.advance(3.0)
    assert [type(e) for e in events] == [ConnectionClosed]
    assert peer.conn.closed


def test_both_sides_close_at_once() -> None:
    peer = opened()
    peer.conn.close(now=peer.now)
    peer.received()
    events = peer.send(method(0, commands.Connection.Close(200, "bye", 0, 0)))
    assert events == [ConnectionClosed(200, "bye", 0, 0, by_peer=True)]
    [(_, close_ok)] = peer.received()
    assert isinstance(close_ok, commands.Connection.CloseOk)


def test_hard_error_with_framing_intact_waits_for_close_ok() -> None:
    peer = opened()
    close = hard_error(peer, content(1, b"orphan"))
    assert close.reply_code == UNEXPECTED_FRAME
    assert peer.conn.state is ConnectionState.CLOSING
    events = peer.send(method(0, commands.Connection.CloseOk()))
    assert [type(e) for e in events] == [ConnectionClosed]


def test_bad_frame_end_closes_at_once() -> None:
    peer = opened()
    bad = method(1, commands.Basic.Qos(prefetch_count=1))[:-1] + b"\x00"
    events = peer.send(bad)
    assert [type(e) for e in events] == [HardErrorRaised, ConnectionClosed]
    assert close_frame(peer).reply_code == FRAME_ERROR
    assert peer.conn.closed


def test_events_before_an_error_in_the_same_read_are_kept() -> None:
    peer = opened()
    events = peer.send(publish(1, b"ok") + b"\x04\x00\x00\x00\x00\x00\x00\xce")
    assert [type(e) for e in events] == [ContentReceived, HardErrorRaised]


# -- heartbeats -----------------------------------------------------------------------------


def test_heartbeat_sent_after_half_an_interval_of_silence() -> None:
    peer = opened(heartbeat=10)
    start = peer.now
    assert peer.conn.get_timer() == start + 5
    peer.advance(5)  # the open-ok/channel open-ok went out in this half interval
    assert peer.conn.data_to_send() == b""
    peer.send(HEARTBEAT)
    peer.advance(5)
    assert peer.conn.data_to_send() == HEARTBEAT
    peer.send(HEARTBEAT)
    assert peer.conn.send_ack(1, 1)
    peer.advance(5)
    assert peer.conn.data_to_send() == encode_basic_ack(1, 1)  # no heartbeat needed


def test_heartbeat_timeout_after_two_silent_intervals() -> None:
    peer = opened(heartbeat=10)
    peer.advance(15)
    peer.send(HEARTBEAT)  # any traffic resets the clock
    assert peer.conn.get_timer() == peer.now + 5
    peer.advance(19.9)
    assert not peer.conn.closed
    assert peer.advance(0.1) == [HeartbeatTimedOut(10)]
    assert peer.conn.closed


def test_heartbeats_off() -> None:
    peer = opened(heartbeat=0)
    assert peer.conn.get_timer() is None


def test_heartbeat_on_a_channel_is_unexpected() -> None:
    peer = opened()
    close = hard_error(peer, b"\x08\x00\x01\x00\x00\x00\x00\xce")
    assert close.reply_code == UNEXPECTED_FRAME


# -- channels -------------------------------------------------------------------------------


def test_channel_open_and_client_close() -> None:
    peer = opened()
    assert peer.events[-1] == ChannelOpened(1)
    assert peer.conn.open_channels == [1]
    events = peer.send(method(1, commands.Channel.Close(200, "done", 0, 0)))
    assert events == [ChannelClosed(1, 200, "done", 0, 0, by_peer=True)]
    [(channel, close_ok)] = peer.received()
    assert (channel, type(close_ok)) == (1, commands.Channel.CloseOk)
    assert peer.conn.open_channels == []
    peer.open_channel(1)  # the number is free again


def test_second_channel_open_is_a_channel_error() -> None:
    peer = opened()
    close = hard_error(peer, method(1, commands.Channel.Open()))
    assert (close.reply_code, close.class_id, close.method_id) == (CHANNEL_ERROR, 20, 10)
    assert "second 'channel.open' seen" in close.reply_text


def test_method_on_an_unopened_channel_is_a_channel_error() -> None:
    peer = opened()
    close = hard_error(peer, method(2, commands.Basic.Qos(prefetch_count=1)))
    assert (close.reply_code, close.class_id, close.method_id) == (CHANNEL_ERROR, 60, 10)


def test_content_on_an_unopened_channel_is_a_channel_error() -> None:
    peer = opened()
    assert hard_error(peer, content(2, b"x")).reply_code == CHANNEL_ERROR


def test_channel_above_channel_max() -> None:
    peer = Peer()
    peer.handshake(channel_max=10)
    peer.open_channel(10)
    close = hard_error(peer, method(11, commands.Channel.Open()))
    assert (close.reply_code, close.class_id, close.method_id) == (NOT_ALLOWED, 20, 10)


def test_server_closes_a_channel() -> None:
    peer = opened()
    assert peer.conn.close_channel(1, 404, "NOT_FOUND - no queue 'q' in vhost '/'", 50, 10)
    [(channel, close)] = peer.received()
    assert channel == 1
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (404, 50, 10)
    assert not peer.conn.is_channel_open(1)
    assert peer.conn.send_method(1, commands.Basic.QosOk()) is False
    assert peer.conn.close_channel(1, 404, "again") is False
    # Until close-ok arrives everything else on the channel is discarded.
    assert peer.send(publish(1, b"in flight") + method(1, commands.Channel.Open())) == []
    assert peer.send(method(1, commands.Channel.Close(200, "", 0, 0))) == []
    [(_, close_ok)] = peer.received()
    assert isinstance(close_ok, commands.Channel.CloseOk)
    events = peer.send(method(1, commands.Channel.CloseOk()))
    assert events == [ChannelClosed(1, 404, close.reply_text, 50, 10, by_peer=False)]
    peer.open_channel(1)


def test_close_channel_drops_a_half_received_message() -> None:
    peer = opened()
    peer.send(method(1, commands.Basic.Publish(exchange="", routing_key="q")))
    peer.conn.close_channel(1, 406, "PRECONDITION_FAILED - x")
    peer.received()
    assert peer.send(content(1, b"body")) == []
    peer.send(method(1, commands.Channel.CloseOk()))
    peer.open_channel(1)
    assert [type(e) for e in peer.send(publish(1, b"fresh"))] == [ContentReceived]


def test_channel_flow() -> None:
    peer = opened()
    assert peer.send(method(1, commands.Channel.Flow(active=True))) == []
    [(_, flow_ok)] = peer.received()
    assert isinstance(flow_ok, commands.Channel.FlowOk)
    assert flow_ok.active is True
    close = hard_error(peer, method(1, commands.Channel.Flow(active=False)))
    assert (close.reply_code, close.class_id, close.method_id) == (NOT_IMPLEMENTED, 20, 20)


def test_connection_method_on_a_channel_is_command_invalid() -> None:
    peer = opened()
    close = hard_error(peer, method(1, commands.Connection.Close(200, "", 0, 0)))
    assert (close.reply_code, close.class_id, close.method_id) == (COMMAND_INVALID, 10, 50)


def test_unexpected_channel_close_ok() -> None:
    peer = opened()
    assert hard_error(peer, method(1, commands.Channel.CloseOk())).reply_code == COMMAND_INVALID


def test_update_secret_is_not_implemented() -> None:
    peer = opened()
    close = hard_error(peer, method(0, commands.Connection.UpdateSecret("token", "why")))
    assert (close.reply_code, close.class_id, close.method_id) == (NOT_IMPLEMENTED, 10, 70)


def test_other_methods_go_to_the_channel_layer() -> None:
    peer = opened()
    events = peer.send(
        method(1, commands.Queue.Declare(queue="q", durable=True))
        + method(1, commands.Basic.Ack(delivery_tag=3))
    )
    assert len(events) == 2
    assert isinstance(events[0], MethodReceived)
    assert isinstance(events[0].method, commands.Queue.Declare)
    assert (events[0].method.queue, events[0].method.durable) == ("q", True)
    assert events[1] == MethodReceived(1, BasicAck(3, False))


# -- content assembly -----------------------------------------------------------------------


def test_publish_assembled_from_many_body_frames() -> None:
    peer = opened(frame_max=4096)
    body = bytes(range(256)) * 100
    props = commands.Basic.Properties(content_type="text/plain", delivery_mode=2)
    events = peer.send(
        method(1, commands.Basic.Publish(exchange="amq.topic", routing_key="a.b", mandatory=True))
        + content(1, body, props, frame_max=4096)
    )
    assert events == [
        ContentReceived(
            1, [(1, BasicPublish("amq.topic", "a.b", True, False), props.marshal(), body)]
        )
    ]


def test_interleaved_content_on_two_channels() -> None:
    peer = opened()
    peer.open_channel(2)
    one = publish(1, b"A" * 5000, routing_key="one")
    two = publish(2, b"B" * 5000, routing_key="two")
    frames_one = _split_frames(one)
    frames_two = _split_frames(two)
    stream = b"".join(a + b for a, b in zip(frames_one, frames_two, strict=True))
    events = peer.send(stream)
    assert {
        (c[0], c[3][:1], len(c[3]))
        for e in events
        if isinstance(e, ContentReceived)
        for c in e.contents
    } == {
        (1, b"A", 5000),
        (2, b"B", 5000),
    }


def _split_frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        size = 8 + int.from_bytes(data[3:7], "big")
        out.append(data[:size])
        data = data[size:]
    return out


def test_empty_body_needs_no_body_frame() -> None:
    peer = opened()
    events = peer.send(publish(1, b""))
    assert events == [ContentReceived(1, [(1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"")])]


def test_whole_session_split_at_every_byte() -> None:
    stream = (
        PROTOCOL_HEADER
        + start_ok()
        + method(0, commands.Connection.TuneOk(2047, 131072, 0))
        + method(0, commands.Connection.Open())
        + method(1, commands.Channel.Open())
        + publish(1, b"payload" * 700)
        + method(1, commands.Basic.Ack(delivery_tag=9, multiple=True))
    )
    for cut in range(0, len(stream) + 1, 7):
        peer = Peer()
        events = peer.send(stream[:cut]) + peer.send(stream[cut:])
        if OpenRequested("/") in events:
            events += peer.conn.open_ok()
        assert events[-2:] == [
            ContentReceived(
                1, [(1, BasicPublish("amq.topic", "a.b"), b"\x00\x00", b"payload" * 700)]
            ),
            MethodReceived(1, BasicAck(9, True)),
        ], cut


# Where the content header of publish(1, ...) ends: an empty-properties header is 22 octets.
HEADER_END = len(method(1, commands.Basic.Publish(exchange="amq.topic", routing_key="a.b"))) + 22


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (content(1, b"x"), UNEXPECTED_FRAME),  # header without publish
        (content(1, b"x")[22:], UNEXPECTED_FRAME),  # body without publish
        (method(1, commands.Basic.Publish()) + content(1, b"x")[22:], UNEXPECTED_FRAME),
        (method(1, commands.Basic.Publish()) * 2, UNEXPECTED_FRAME),  # method before header
        # a method while the body is still missing
        (publish(1, b"xy")[:HEADER_END] + method(1, commands.Basic.Qos()), UNEXPECTED_FRAME),
        # body longer than announced: a 2-octet header followed by a 3-octet body frame
        (
            method(1, commands.Basic.Publish()) + content(1, b"xy")[:22] + content(1, b"xyz")[22:],
            FRAME_ERROR,
        ),
        (content(0, b"x"), UNEXPECTED_FRAME),  # content on channel 0
    ],
)
def test_content_errors(data: bytes, code: int) -> None:
    peer = opened()
    assert hard_error(peer, data).reply_code == code


def test_header_for_another_class_is_unexpected() -> None:
    peer = opened()
    header = bytearray(content(1, b"x"))
    header[7:9] = (50).to_bytes(2, "big")
    close = hard_error(peer, method(1, commands.Basic.Publish()) + bytes(header))
    assert (close.reply_code, close.class_id, close.method_id) == (UNEXPECTED_FRAME, 60, 40)


def test_announced_body_above_the_limit() -> None:
    peer = Peer(AMQPConnection(authenticate=accept_guest, max_body_size=1000))
    peer.handshake()
    peer.open_channel(1)
    close = hard_error(peer, method(1, commands.Basic.Publish()) + content(1, b"x" * 1001)[:22])
    assert close.reply_code == FRAME_ERROR
    assert "exceeds maximum allowed size 1000" in close.reply_text


# -- output ---------------------------------------------------------------------------------


def test_send_deliver() -> None:
    peer = opened(frame_max=4096)
    props = commands.Basic.Properties(message_id="m1")
    body = b"z" * 9000
    assert peer.conn.send_deliver(1, "ctag", 42, True, "amq.topic", "a.b", props.marshal(), body)
    frames = peer.received()
    deliver = frames[0][1]
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == ("ctag", 42, True)
    assert (deliver.exchange, deliver.routing_key) == ("amq.topic", "a.b")
    assert frames[1][1].properties == props
    assert frames[1][1].body_size == len(body)
    assert b"".join(f.value for _, f in frames[2:]) == body
    assert [len(f.value) for _, f in frames[2:]] == [4088, 4088, 824]


def test_large_deliveries_are_chunked_without_copying_the_body() -> None:
    peer = opened()
    peer.conn.data_to_send()
    body = b"q" * 200_000
    peer.conn.send_deliver(1, "c", 1, False, "", "q", b"\x00\x00", body)
    chunks = peer.conn.data_to_send_chunks()
    assert any(isinstance(c, memoryview) and c.obj is body for c in chunks)
    frames = parse(b"".join(chunks))
    assert b"".join(f.value for _, f in frames[2:]) == body


def test_send_content_and_confirms() -> None:
    peer = opened()
    get_ok = commands.Basic.GetOk(delivery_tag=1, exchange="", routing_key="q", message_count=0)
    assert peer.conn.send_content(1, get_ok, b"\x00\x00", b"body")
    assert peer.conn.send_ack(1, 5, multiple=True)
    assert peer.conn.send_nack(1, 6)
    frames = peer.received()
    assert isinstance(frames[0][1], commands.Basic.GetOk)
    assert frames[2][1].value == b"body"
    ack, nack = frames[3][1], frames[4][1]
    assert (ack.delivery_tag, ack.multiple) == (5, True)
    assert (nack.delivery_tag, nack.multiple, nack.requeue) == (6, False, False)


def test_sending_on_a_channel_that_is_not_open() -> None:
    peer = opened()
    conn = peer.conn
    assert not conn.send_deliver(2, "c", 1, False, "", "q", b"\x00\x00", b"")
    assert not conn.send_ack(2, 1)
    assert not conn.send_nack(2, 1)
    assert not conn.send_content(2, commands.Basic.GetOk(), b"\x00\x00", b"")
    assert not conn.send_method(0, commands.Basic.QosOk())
    assert conn.data_to_send() == b""


def test_blocked_only_for_clients_that_asked() -> None:
    peer = opened()
    assert peer.conn.send_blocked("low on memory")
    assert peer.conn.send_unblocked()
    [(_, blocked), (_, unblocked)] = peer.received()
    assert isinstance(blocked, commands.Connection.Blocked)
    assert blocked.reason == "low on memory"
    assert isinstance(unblocked, commands.Connection.Unblocked)

    plain = Peer()
    plain.send(PROTOCOL_HEADER + start_ok(client_properties={"capabilities": {}}))
    plain.send(
        method(0, commands.Connection.TuneOk(2047, 131072, 0))
        + method(0, commands.Connection.Open())
    )
    plain.conn.open_ok()
    plain.conn.data_to_send()
    assert not plain.conn.send_blocked("x")
    assert plain.conn.data_to_send() == b""


def test_long_reply_texts_are_cut_to_a_short_string() -> None:
    peer = opened()
    peer.conn.close(541, "INTERNAL_ERROR - " + "\u00e9" * 300)
    close = close_frame(peer)
    assert len(close.reply_text.encode()) <= 255
