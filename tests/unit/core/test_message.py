"""Messages: lazy properties, shared bodies, expiration parsing."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.core.errors import PreconditionFailed
from gateway.core.message import (
    Message,
    Properties,
    message_from_raw,
    message_with_properties,
    parse_expiration,
)


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> Properties:
        self.calls += 1
        return Properties(content_type=raw.decode(), delivery_mode=2)


def test_properties_decode_once_on_first_access() -> None:
    decode = CountingDecoder()
    message = Message(
        "x", "k", b"body", raw_properties=b"text/plain", decode_properties=decode, persistent=True
    )
    assert decode.calls == 0
    assert message.raw_properties == b"text/plain"
    assert message.properties.content_type == "text/plain"
    assert message.properties is message.properties
    assert decode.calls == 1
    assert message.raw_properties == b"text/plain"  # still reusable for a delivery


def test_raw_properties_need_a_decoder() -> None:
    with pytest.raises(ValueError, match="decode_properties"):
        Message("x", "k", b"", raw_properties=b"\x00")


def test_replacing_properties_drops_the_raw_bytes() -> None:
    message = Message("x", "k", b"", raw_properties=b"a", decode_properties=CountingDecoder())
    message.properties = Properties(delivery_mode=2, expiration="1500")
    assert message.raw_properties is None
    assert message.persistent
    assert message.expiration_ms == 1500


def test_fields_derive_from_properties() -> None:
    message = Message("x", "k", b"", properties=Properties(delivery_mode=2, expiration="20"))
    assert message.persistent
    assert message.expiration_ms == 20
    plain = Message("x", "k", b"")
    assert not plain.persistent
    assert plain.expiration_ms is None
    assert plain.properties == Properties()


def test_with_properties_shares_the_body() -> None:
    body = b"x" * 1000
    message = Message("x", "k", body, properties=Properties(delivery_mode=2), annotations={"a": 1})
    copy = message.with_properties(
        dataclasses.replace(message.properties, headers={"h": 1}), exchange="dlx"
    )
    assert copy.body is body
    assert (copy.exchange, copy.routing_key) == ("dlx", "k")
    assert copy.properties.headers == {"h": 1}
    assert copy.persistent
    assert copy.annotations == {"a": 1}
    assert copy.annotations is not message.annotations
    assert copy.id != message.id
    assert copy.body_size == 1000


def test_ids_are_unique_and_increasing() -> None:
    ids = [Message("", "", b"").id for _ in range(100)]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize(
    ("text", "ms"), [("0", 0), ("1500", 1500), (" 7 ", 7), ("4294967295", 4294967295)]
)
def test_parse_expiration(text: str, ms: int) -> None:
    assert parse_expiration(text) == ms


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("1.5", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("4294967296", "{value_too_large,4294967296}"),
        ("٣", "no_integer"),
    ],
)
def test_bad_expiration(text: str, reason: str) -> None:
    with pytest.raises(PreconditionFailed) as info:
        parse_expiration(text)
    assert info.value.text == f"PRECONDITION_FAILED - invalid expiration '{text}': {reason}"


def _slots(message: Message) -> dict[str, object]:
    return {name: getattr(message, name) for name in Message.__slots__ if name != "id"}


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("expiration_ms", [None, 0, 1500])
def test_message_from_raw_equals_the_keyword_constructor(
    persistent: bool, expiration_ms: int | None
) -> None:
    decode = CountingDecoder()
    fast = message_from_raw("x", "k", b"body", b"text/plain", decode, persistent, expiration_ms)
    slow = Message("x", "k", b"body", raw_properties=b"text/plain", decode_properties=decode,
                   persistent=persistent, expiration_ms=expiration_ms)  # fmt: skip
    assert _slots(fast) == _slots(slow)
    assert slow.id == fast.id + 1  # one id sequence for both forms
    assert fast.annotations == {}
    other = message_from_raw("x", "k", b"", b"", decode, False, None)
    assert fast.annotations is not other.annotations  # a dict of its own each
    assert decode.calls == 0
    assert fast.properties.content_type == "text/plain"
    assert fast.raw_properties == b"text/plain"


@pytest.mark.parametrize(
    ("props", "expiration_ms"),
    [(Properties(), None), (Properties(expiration="2500"), None), (Properties(), 700),
     (Properties(delivery_mode=2, expiration="10"), 5)],
)  # fmt: skip
def test_message_with_properties_equals_the_keyword_constructor(
    props: Properties, expiration_ms: int | None
) -> None:
    notes: dict[str, object] = {"mqtt.qos": 1}
    fast = message_with_properties("x", "k", b"b", props, notes, True, expiration_ms)
    slow = Message("x", "k", b"b", properties=props, annotations=notes, persistent=True,
                   expiration_ms=expiration_ms)  # fmt: skip
    assert _slots(fast) == _slots(slow)
    assert fast.annotations is notes
    assert fast.properties is props
    assert fast.raw_properties is None


def test_message_with_properties_refuses_a_bad_expiration() -> None:
    with pytest.raises(PreconditionFailed):
        message_with_properties("", "k", b"", Properties(expiration="soon"), {}, False, None)
