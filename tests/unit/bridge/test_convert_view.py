"""mqtt_view's short cuts: AMQP-origin messages with plain properties skip property decoding,
and any other view is computed once per message however many subscribers it reaches."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.amqp.codec import decode_properties, encode_properties
from gateway.bridge.convert import mqtt_view
from gateway.bridge.topics import TopicTranslator
from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties

STRICT = TopicTranslator("strict")
RABBIT = TopicTranslator("rabbitmq")


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> AmqpProperties:
        self.calls += 1
        return decode_properties(raw)


def from_raw(raw: bytes, key: str = "dev.7%2Ex.t", **kwargs: object) -> Message:
    decoder = CountingDecoder()
    message = Message("amq.topic", key, b"x", raw_properties=raw, decode_properties=decoder,
                      **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return message


def decoded_calls(message: Message) -> int:
    decoder = message._decode
    assert isinstance(decoder, CountingDecoder)
    return decoder.calls


@pytest.mark.parametrize("raw", [b"\x00\x00", *(b"\x10\x00" + bytes((m,)) for m in range(256))])
@pytest.mark.parametrize("translator", [STRICT, RABBIT])
def test_plain_properties_view_equals_the_decoded_one(
    raw: bytes, translator: TopicTranslator
) -> None:
    message = from_raw(raw)
    reference = Message("amq.topic", message.routing_key, b"x", properties=decode_properties(raw))
    assert mqtt_view(message, translator) == mqtt_view(reference, translator)
    assert decoded_calls(message) == 0


def test_plain_views_are_shared_and_follow_the_routing_key() -> None:
    first = mqtt_view(from_raw(b"\x10\x00\x02", "a.b"), STRICT)
    assert mqtt_view(from_raw(b"\x10\x00\x02", "a.b"), STRICT) is first
    assert (first.topic, first.qos, first.retain) == ("a/b", 1, False)
    assert mqtt_view(from_raw(b"\x10\x00\x01", "a.b"), STRICT).qos == 0
    assert mqtt_view(from_raw(b"\x10\x00\x02", "a.c"), STRICT).topic == "a/c"


def test_plain_properties_with_an_expiry_keep_it() -> None:
    view = mqtt_view(from_raw(b"\x10\x00\x02", "a.b", expiration_ms=1500), STRICT)
    assert (view.qos, view.expiry_interval) == (1, 2)


def test_other_views_are_computed_once_per_message() -> None:
    raw = encode_properties(AmqpProperties(content_type="text/plain", headers={"k": "v"}))
    message = from_raw(raw, "a.b")
    view = mqtt_view(message, STRICT)
    assert view.properties.content_type == "text/plain"
    assert view.properties.user_properties == (("k", "v"),)
    assert mqtt_view(message, STRICT) is view
    assert decoded_calls(message) == 1
    # Another translator gets its own view.
    assert mqtt_view(message, RABBIT) is not view


def test_cached_view_is_not_reused_by_copies_or_after_new_properties() -> None:
    raw = encode_properties(AmqpProperties(headers={"k": "v"}))
    message = from_raw(raw, "a.b")
    before = mqtt_view(message, STRICT)
    # Dead-lettering copies the annotations (the cached view with them) to a new message.
    copy = message.with_properties(AmqpProperties(headers={"k": "w"}), routing_key="c.d")
    assert mqtt_view(copy, STRICT).properties.user_properties == (("k", "w"),)
    assert mqtt_view(copy, STRICT).topic == "c/d"
    message.properties = dataclasses.replace(message.properties, content_type="a/b")
    after = mqtt_view(message, STRICT)
    assert after is not before
    assert after.properties.content_type == "a/b"
