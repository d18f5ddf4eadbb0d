"""The small caches on the per-message paths give what the uncached code gives."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands

from gateway.amqp import fastpath
from gateway.amqp.codec import decode_properties, peek_delivery_mode_expiration
from gateway.amqp.spec import AMQPSyntaxError

from .helpers import method, parse


@pytest.mark.parametrize("raw", [b"\x00\x00", *(b"\x10\x00" + bytes((m,)) for m in range(256))])
def test_common_properties_peek_as_decoded(raw: bytes) -> None:
    props = decode_properties(raw)
    assert peek_delivery_mode_expiration(raw) == (props.delivery_mode, props.expiration)


def test_peek_still_checks_everything_else() -> None:
    with pytest.raises(AMQPSyntaxError):
        peek_delivery_mode_expiration(b"\x10\x00\x02\x00")  # an octet too many
    with pytest.raises(AMQPSyntaxError):
        peek_delivery_mode_expiration(b"\x10\x00")  # the delivery mode is missing
    assert peek_delivery_mode_expiration(b"\x10\x02\x02") == (2, None)  # unused bit ignored


def _publish_args(exchange: str, key: str, mandatory: bool = False) -> tuple[bytes, int, int]:
    wire = method(1, commands.Basic.Publish(exchange=exchange, routing_key=key,
                                            mandatory=mandatory))  # fmt: skip
    return wire, 11, len(wire) - 1


def test_publish_decodes_share_one_object_per_argument_octets() -> None:
    first = fastpath.decode_basic_publish(*_publish_args("ex", "rk"))
    again = fastpath.decode_basic_publish(*_publish_args("ex", "rk"))
    assert again is first
    other = fastpath.decode_basic_publish(*_publish_args("ex", "rk", mandatory=True))
    assert other == fastpath.BasicPublish("ex", "rk", True, False)


def test_publish_cache_never_hides_errors_and_stays_bounded() -> None:
    wire, start, end = _publish_args("ex", "rk")
    for _ in range(2):
        with pytest.raises(AMQPSyntaxError):
            fastpath.decode_basic_publish(wire, start, end - 1)  # flags octet missing
    for n in range(fastpath._PUBLISH_CACHE_MAX + 5):
        assert fastpath.decode_basic_publish(*_publish_args("", f"k{n}")).routing_key == f"k{n}"
    assert len(fastpath._PUBLISH_CACHE) <= fastpath._PUBLISH_CACHE_MAX


def test_deliver_with_encoded_names_reused_and_a_long_tag_refused() -> None:
    for tag in (1, 2):
        frames = parse(fastpath.encode_deliver(3, "ctag", tag, tag == 2, "ex", "rk", b"\x00\x00",
                                               b"body", 4096))  # fmt: skip
        deliver = frames[0][1]
        assert isinstance(deliver, commands.Basic.Deliver)
        assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == (
            "ctag", tag, tag == 2)  # fmt: skip
        assert (deliver.exchange, deliver.routing_key) == ("ex", "rk")
        assert frames[2][1].value == b"body"
    with pytest.raises(ValueError, match="longer than 255"):
        fastpath.encode_deliver(1, "t" * 256, 1, False, "", "q", b"\x00\x00", b"x", 4096)
    with pytest.raises(ValueError, match="longer than 255"):
        fastpath.encode_deliver(1, "t", 1, False, "", "q" * 256, b"\x00\x00", b"", 4096)


def _check_deliver(data: bytes, tag: int, redelivered: bool, key: str, props: Any,
                   body: bytes) -> None:  # fmt: skip
    frames = parse(data)
    assert [channel for channel, _ in frames] == [2, 2, 2]
    deliver, header, payload = (frame for _, frame in frames)
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == (
        "ctag", tag, redelivered)  # fmt: skip
    assert (deliver.exchange, deliver.routing_key) == ("amq.topic", key)
    assert header.body_size == len(body)
    assert header.properties == props
    assert payload.value == body


@pytest.mark.parametrize("id_size", [1, 59, 60, 61, 200])
def test_deliver_parts_reused_across_tags_and_bodies(id_size: int) -> None:
    # Around the 64-octet limit of the cached form: both forms give the same frames.
    props = commands.Basic.Properties(message_id="m" * id_size, delivery_mode=2)
    raw = props.marshal()
    cached = len(raw) <= fastpath._DELIVER_CACHED_PROPERTIES
    for tag, body in ((1, b"a" * 10), (2, b"b" * 10), (300, b"c" * 11), (2**40, b"d" * 10)):
        data = fastpath.encode_deliver(2, "ctag", tag, tag % 2 == 0, "amq.topic", "k.1", raw,
                                       body, 4096)  # fmt: skip
        _check_deliver(data, tag, tag % 2 == 0, "k.1", props, body)
    key = (2, "ctag", "amq.topic", "k.1", raw, 10)
    assert (key in fastpath._DELIVER_PARTS) is cached


def test_deliver_parts_cache_stays_bounded() -> None:
    props = commands.Basic.Properties()
    raw = props.marshal()
    for n in range(fastpath._DELIVER_PARTS_MAX + 5):
        data = fastpath.encode_deliver(2, "ctag", n + 1, False, "amq.topic", f"k.{n}", raw,
                                       b"xyz", 4096)  # fmt: skip
        _check_deliver(data, n + 1, False, f"k.{n}", props, b"xyz")
        assert len(fastpath._DELIVER_PARTS) <= fastpath._DELIVER_PARTS_MAX
