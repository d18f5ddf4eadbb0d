"""Drive the server machine from a client built on our codec, with a fake clock (floats)."""

from __future__ import annotations

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.connection import (
    ConnectionState,
    MqttConnection,
)
from gateway.mqtt.packets import (
    MQTT_5,
    ConnAck,
    Connect,
    Packet,
    Properties,
    ReasonCode,
)

R = ReasonCode
S = ConnectionState


# Read through functions: mypy would otherwise keep an attribute narrowed across the calls
# that change it.
def state(conn: MqttConnection) -> ConnectionState:
    return conn.state


def closed(conn: MqttConnection) -> bool:
    return conn.closed


class Client:
    """The far end: encodes what it sends, decodes what the server queued."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.decoder = PacketDecoder(protocol_level=version)

    def wire(self, *packets: Packet) -> bytes:
        return b"".join(encode(p, self.version) for p in packets)

    def read(self, conn: MqttConnection) -> list[Packet]:
        return self.decoder.feed(conn.data_to_send())


def connect_packet(version: int, keep_alive: int = 0, **props: object) -> Connect:
    properties = Properties(**props) if props else Properties()  # type: ignore[arg-type]
    if version != MQTT_5:
        properties = Properties()
    return Connect("dev-1", protocol_level=version, keep_alive=keep_alive, properties=properties)


def open_connection(
    version: int,
    keep_alive: int = 0,
    connack: ConnAck | None = None,
    server_keep_alive: int | None = None,
    **props: object,
) -> tuple[MqttConnection, Client]:
    conn = MqttConnection(max_packet_size=1 << 16, server_keep_alive=server_keep_alive)
    client = Client(version)
    connect = connect_packet(version, keep_alive, **props)
    assert conn.receive_data(client.wire(connect), now=0.0) == [connect]
    assert state(conn) is S.AWAIT_CONNACK
    assert conn.send(connack or ConnAck()) is True
    assert state(conn) is S.CONNECTED
    (ack,) = client.read(conn)
    assert isinstance(ack, ConnAck)
    assert ack.reason_code == R.SUCCESS
    return conn, client
