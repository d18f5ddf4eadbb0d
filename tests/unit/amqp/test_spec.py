"""Reply codes and the exceptions that carry them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.amqp import spec


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (spec.FrameError, 501),
        (spec.AMQPSyntaxError, 502),
        (spec.CommandInvalid, 503),
        (spec.ChannelError, 504),
        (spec.UnexpectedFrame, 505),
        (spec.NotAllowed, 530),
        (spec.NotImplemented_, 540),
        (spec.InternalError, 541),
    ],
)
def test_hard_errors_carry_their_code(
    cls: Callable[[str, int, int], spec.AMQPError], code: int
) -> None:
    err = cls("something broke", 60, 40)
    assert (err.code, err.text, err.class_id, err.method_id) == (code, "something broke", 60, 40)
    assert err.hard
    assert err.reply_text == f"{spec.REPLY_NAMES[code]} - something broke"
    assert str(err) == err.reply_text


@pytest.mark.parametrize("code", [311, 312, 313, 403, 404, 405, 406])
def test_soft_errors_close_a_channel_only(code: int) -> None:
    assert not spec.AMQPError(code, "x").hard


@pytest.mark.parametrize("code", [320, 402, 501, 502, 503, 504, 505, 506, 530, 540, 541])
def test_connection_level_codes(code: int) -> None:
    assert spec.AMQPError(code, "x").hard


def test_reply_text_format() -> None:
    assert spec.format_reply_text(404, "no queue 'q' in vhost '/'") == (
        "NOT_FOUND - no queue 'q' in vhost '/'"
    )
    assert spec.format_reply_text(999, "odd").startswith("INTERNAL_ERROR - ")


def test_protocol_header() -> None:
    assert spec.PROTOCOL_HEADER == b"AMQP\x00\x00\x09\x01"
