"""Exceptions raised while decoding MQTT; each carries the reason code to send back."""

from __future__ import annotations

from gateway.mqtt.packets import ReasonCode


class MqttError(Exception):
    """Base class: `reason_code` is what a v5 DISCONNECT (or CONNACK) should carry."""

    reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR

    def __init__(self, text: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(text)
        self.text = text
        if reason_code is not None:
            self.reason_code = reason_code


class MalformedPacket(MqttError):
    """The bytes do not follow the spec's format (0x81)."""

    reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolError(MqttError):
    """Well-formed but forbidden by the spec (0x82, or a more specific code)."""

    reason_code = ReasonCode.PROTOCOL_ERROR


class UnsupportedProtocolVersion(ProtocolError):
    """CONNECT names a protocol level this server does not speak (0x84)."""

    reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


class PacketTooLarge(MqttError):
    """The packet exceeds the receiver's Maximum Packet Size (0x95)."""

    reason_code = ReasonCode.PACKET_TOO_LARGE


class InvalidTopic(MqttError):
    """A topic name (0x90) or topic filter (0x8F) breaks the rules of spec 4.7."""

    reason_code = ReasonCode.TOPIC_NAME_INVALID
