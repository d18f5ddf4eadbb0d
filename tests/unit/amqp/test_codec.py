"""Content properties and field tables, with pamqp as the oracle."""

from __future__ import annotations

import dataclasses
import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import encode as pamqp_encode

from gateway.amqp.codec import (
    decode_properties,
    decode_table,
    encode_properties,
    encode_table,
    parse_credentials,
    peek_delivery_mode_expiration,
)
from gateway.amqp.spec import COMMAND_INVALID, SYNTAX_ERROR, AMQPError, AMQPSyntaxError
from gateway.core.message import Properties

SETTINGS = settings(max_examples=200, deadline=None)

short_text = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_$#0123456789", min_size=1, max_size=20)
scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
)


def _sorted(value: Any) -> Any:
    # pamqp writes table keys sorted; ours keeps insertion order, so feed both sorted tables.
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


tables = st.recursive(
    st.dictionaries(keys, scalars, max_size=5),
    lambda inner: st.dictionaries(keys, scalars | inner | st.lists(scalars | inner, max_size=3)),
    max_leaves=12,
).map(_sorted)


@st.composite
def properties(draw: st.DrawFn) -> Properties:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    return Properties(
        content_type=maybe(short_text),
        content_encoding=maybe(short_text),
        headers=maybe(tables),
        delivery_mode=maybe(st.sampled_from([1, 2])),
        priority=maybe(st.integers(0, 255)),
        correlation_id=maybe(short_text),
        reply_to=maybe(short_text),
        expiration=maybe(st.integers(0, 10**9).map(str)),
        message_id=maybe(short_text),
        timestamp=maybe(st.integers(0, 2**32 - 1)),
        type=maybe(short_text),
        user_id=maybe(short_text),
        app_id=maybe(short_text),
    )


def to_pamqp(props: Properties) -> commands.Basic.Properties:
    timestamp = (
        None
        if props.timestamp is None
        else datetime.datetime.fromtimestamp(props.timestamp, tz=datetime.UTC)
    )
    return commands.Basic.Properties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=props.headers,  # type: ignore[arg-type]
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=timestamp,
        message_type=props.type,
        user_id=props.user_id,
        app_id=props.app_id,
    )


@SETTINGS
@given(properties())
def test_properties_against_pamqp(props: Properties) -> None:
    """Our encoding equals pamqp's bytes; decoding pamqp's bytes gives the values back."""
    wire = to_pamqp(props).marshal()
    assert encode_properties(props) == wire
    assert decode_properties(wire) == props
    assert peek_delivery_mode_expiration(wire) == (props.delivery_mode, props.expiration)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Properties)])
def test_every_field_round_trips_alone(field: str) -> None:
    value: Any = {
        "headers": {"k": "v"},
        "delivery_mode": 2,
        "priority": 9,
        "timestamp": 1_700_000_000,
    }.get(field, f"value of {field}")
    props = Properties(**{field: value})
    raw = encode_properties(props)
    assert decode_properties(raw) == props
    # One flag bit per field, in wire order.
    flag_index = [f.name for f in dataclasses.fields(Properties)].index(field)
    assert int.from_bytes(raw[:2], "big") == 0x8000 >> flag_index


def test_empty_properties() -> None:
    assert encode_properties(Properties()) == b"\x00\x00"
    assert decode_properties(b"\x00\x00") == Properties()
    assert peek_delivery_mode_expiration(b"\x00\x00") == (None, None)


def test_empty_strings_stay_present() -> None:
    props = Properties(content_type="", correlation_id="", headers={})
    raw = encode_properties(props)
    assert decode_properties(raw) == props


def test_non_utf8_short_strings_round_trip_exactly() -> None:
    raw = b"\x04\x00" + b"\x03\xff\xfeA"  # correlation-id with invalid UTF-8
    props = decode_properties(raw)
    assert props.correlation_id is not None
    assert encode_properties(props) == raw


def test_table_keeps_order_and_exact_types() -> None:
    table = {
        "z": "text",
        "a": b"\xff\x00binary",
        "m": 1.5,
        "n": None,
        "d": Decimal("12.34"),
        "x": bytearray(b"raw"),
        "t": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "nested": {"b": [1, "two", True, (3, 4)]},
    }
    raw = encode_table(table)
    assert raw.index(b"\x01z") < raw.index(b"\x01a") < raw.index(b"\x01m")
    decoded = decode_table(raw)
    assert list(decoded) == list(table)
    assert decoded["a"] == b"\xff\x00binary"
    assert decoded["m"] == 1.5
    assert raw[raw.index(b"\x01m") + 2 : raw.index(b"\x01m") + 3] == b"d"  # a double
    assert decoded["n"] is None
    assert decoded["d"] == Decimal("12.34")
    assert decoded["x"] == bytearray(b"raw")
    assert decoded["t"] == table["t"]
    assert decoded["nested"] == {"b": [1, "two", True, [3, 4]]}
    assert encode_table(decoded) == raw


def test_table_encoding_refuses_unknown_types_and_long_keys() -> None:
    with pytest.raises(TypeError):
        encode_table({"k": object()})
    with pytest.raises(ValueError, match="255"):
        encode_table({"k" * 256: 1})


def test_property_values_out_of_range() -> None:
    with pytest.raises(ValueError, match="delivery_mode"):
        encode_properties(Properties(delivery_mode=256))
    with pytest.raises(ValueError, match="255 octets"):
        encode_properties(Properties(message_id="x" * 256))


def test_peek_skips_the_headers_table_without_decoding_it() -> None:
    # A table whose contents are garbage but whose length is right.
    garbage_table = b"\x00\x00\x00\x03\x01k?"
    raw = (0x2000 | 0x1000 | 0x0100).to_bytes(2, "big") + garbage_table + b"\x02" + b"\x045000"
    assert peek_delivery_mode_expiration(raw) == (2, "5000")
    with pytest.raises(AMQPSyntaxError):
        decode_properties(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",  # flags truncated
        b"\x80\x00",  # content-type missing
        b"\x80\x00\x05ab",  # content-type runs past the end
        b"\x20\x00\x00\x00\x00\x09\x00",  # headers table runs past the end
        b"\x00\x40\x00\x00",  # timestamp truncated
        b"\x10\x00\x02\x00",  # one octet too many
        b"\x00\x01\x00\x02",  # a continuation word announcing an unknown property
        b"\x00\x01",  # continuation word missing
    ],
)
def test_malformed_properties_are_syntax_errors(raw: bytes) -> None:
    with pytest.raises(AMQPSyntaxError) as info:
        decode_properties(raw)
    assert info.value.code == SYNTAX_ERROR
    with pytest.raises(AMQPSyntaxError):
        peek_delivery_mode_expiration(raw)


def test_unused_flag_bit_is_ignored_as_rabbitmq_does() -> None:
    assert decode_properties(b"\x10\x02\x01") == Properties(delivery_mode=1)


def test_empty_continuation_word_is_accepted() -> None:
    assert decode_properties(b"\x10\x01\x00\x00\x02") == Properties(delivery_mode=2)


@pytest.mark.parametrize(
    "table",
    [
        b"\x00\x00\x00\x03\x01k?",  # unknown field type
        b"\x00\x00\x00\x02\x05k",  # key runs past the table
        b"\x00\x00\x00\x09\x01kS",  # table length beyond the data
    ],
)
def test_malformed_tables(table: bytes) -> None:
    with pytest.raises(AMQPSyntaxError):
        decode_table(table)


@pytest.mark.parametrize(
    ("mechanism", "response", "expected"),
    [
        ("PLAIN", b"\x00guest\x00guest", ("guest", "guest")),
        ("PLAIN", "authz\x00user\x00p\u00e4ss", ("user", "p\u00e4ss")),
        ("PLAIN", b"\x00\x00", ("", "")),
        (
            "AMQPLAIN",
            pamqp_encode.field_table({"LOGIN": "user", "PASSWORD": "secret"})[4:],
            ("user", "secret"),
        ),
    ],
)
def test_credentials(mechanism: str, response: object, expected: tuple[str, str]) -> None:
    assert parse_credentials(mechanism, response) == expected


@pytest.mark.parametrize(
    ("mechanism", "response", "code"),
    [
        ("PLAIN", b"guest", SYNTAX_ERROR),
        ("PLAIN", b"\x00a\x00b\x00c", SYNTAX_ERROR),
        ("PLAIN", b"\x00\xff\x00x", SYNTAX_ERROR),
        ("AMQPLAIN", pamqp_encode.field_table({"LOGIN": "user"})[4:], SYNTAX_ERROR),
        ("AMQPLAIN", b"\x05LOGIN?", SYNTAX_ERROR),
        ("EXTERNAL", b"", COMMAND_INVALID),
    ],
)
def test_bad_credentials(mechanism: str, response: bytes, code: int) -> None:
    with pytest.raises(AMQPError) as info:
        parse_credentials(mechanism, response)
    assert (info.value.code, info.value.class_id, info.value.method_id) == (code, 10, 11)
