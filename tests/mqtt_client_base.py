"""Packet-level MQTT client conveniences shared by the raw-socket client (interop) and the
in-memory client (unit harness): both only differ in how packets travel."""

from __future__ import annotations

from typing import Any, TypeVar

from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    ConnAck,
    Connect,
    Packet,
    Properties,
    Publish,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    Will,
)

P = TypeVar("P", bound=Packet)


class PacketClient:
    version: int

    def send(self, *packets: Packet) -> None:
        raise NotImplementedError

    def expect(self, kind: type[P]) -> P:
        raise NotImplementedError

    def connect(
        self,
        client_id: str,
        *,
        clean: bool = True,
        properties: Properties = EMPTY_PROPERTIES,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        keep_alive: int = 0,
    ) -> ConnAck:
        self.send(
            Connect(
                client_id,
                protocol_level=self.version,
                clean_start=clean,
                keep_alive=keep_alive,
                username=username,
                password=password,
                will=will,
                properties=properties,
            )
        )
        return self.expect(ConnAck)

    def subscribe(
        self,
        topic_filter: str,
        qos: int = 1,
        *,
        packet_id: int = 1,
        properties: Properties = EMPTY_PROPERTIES,
        **options: Any,
    ) -> SubAck:
        opts = SubscriptionOptions(qos, **options)
        self.send(Subscribe(packet_id, ((topic_filter, opts),), properties))
        return self.expect(SubAck)

    def publish(
        self,
        topic: str,
        payload: bytes = b"x",
        qos: int = 0,
        *,
        packet_id: int | None = None,
        retain: bool = False,
        dup: bool = False,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        if qos and packet_id is None:
            packet_id = 1
        self.send(Publish(topic, payload, qos, retain, dup, packet_id, properties))
