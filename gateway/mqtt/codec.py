"""MQTT 3.1 / 3.1.1 / 5.0 codec: a streaming decoder and the encoders.

decoder = PacketDecoder(max_packet_size=1 << 20)
packets = decoder.feed(chunk)          # any split: partial packets wait for more bytes
wire = encode(PubAck(7), decoder.protocol_level)
"""

from __future__ import annotations

from typing import cast

from gateway.mqtt.codec_decode import DECODERS, TOPIC_NAMES, decode_common_connect
from gateway.mqtt.codec_encode import (
    encode,
    encode_publish,
    encode_publish_header,
    publish_header_parts,
)
from gateway.mqtt.codec_errors import (
    InvalidTopic,
    MalformedPacket,
    MqttError,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
)
from gateway.mqtt.codec_primitives import MAX_VBI
from gateway.mqtt.codec_tables import REQUIRED_FLAGS
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_5,
    Connect,
    Packet,
    PacketType,
    PubAck,
    Publish,
    make_publish,
)

__all__ = [
    "InvalidTopic",
    "MalformedPacket",
    "MqttError",
    "PacketDecoder",
    "PacketTooLarge",
    "Plain",
    "PlainPubAck",
    "PlainPublish",
    "PlainPublishQos1",
    "ProtocolError",
    "UnsupportedProtocolVersion",
    "encode",
    "encode_publish",
    "encode_publish_header",
    "packet_of",
    "publish_header_parts",
]

_PUBLISH = PacketType.PUBLISH

# What `feed_plain` yields instead of packet objects, so a server's hot paths build none:
# a QoS 0 PUBLISH without DUP, RETAIN or properties, to a topic name seen before, as
# (topic, payload); the same at QoS 1 as (topic, payload, packet id); and a PUBACK with
# neither reason code (or Success) nor properties as its packet id, a plain int.
PlainPublish = tuple[str, bytes]
PlainPublishQos1 = tuple[str, bytes, int]
PlainPubAck = int
Plain = PlainPublish | PlainPublishQos1 | PlainPubAck
_CONNECT = PacketType.CONNECT


def packet_of(item: Plain) -> Publish | PubAck:
    """The packet a `Plain` item from `PacketDecoder.feed_plain` stands for."""
    if isinstance(item, int):
        return PubAck(item)
    if len(item) == 2:
        return make_publish(item[0], item[1], 0, False, False, None, EMPTY_PROPERTIES)
    return make_publish(item[0], item[1], 1, False, False, item[2], EMPTY_PROPERTIES)


class PacketDecoder:
    """Turns a byte stream into packets.

    `protocol_level` is None until a CONNECT is decoded (a server's case), and packets other
    than CONNECT are then a protocol error; a client passes the level it connected with.
    `max_packet_size` counts the whole packet, fixed header included (MQTT 5 Maximum Packet
    Size); a larger packet is refused as soon as its fixed header is read, before its body is
    buffered.

    When a chunk holds good packets followed by a bad one, `feed` returns the good ones and
    keeps the error in `error`; the next `feed` raises it. A decoder that raised stays broken.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_need",
        "all_plain",
        "error",
        "max_packet_size",
        "protocol_level",
    )

    def __init__(self, *, max_packet_size: int = MAX_VBI + 5, protocol_level: int | None = None):
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self.error: MqttError | None = None
        # Made by `_keep` when a packet is split across reads, dropped once it completes: most
        # connections are idle between whole packets (issue 7, S7).
        self._chunks: list[bytes] | None = None
        self._buffered = 0  # bytes held in _chunks
        self._need = 0  # bytes needed before another packet can complete
        # After `feed_plain`: True when every item it returned is a `Plain` one.
        self.all_plain = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        return cast("list[Packet]", self._feed(data, False))

    def feed_plain(self, data: bytes | bytearray | memoryview) -> list[Packet | Plain]:
        """`feed`, but the commonest packets come out as `Plain` values instead of objects:
        a PUBLISH at QoS 0 or 1 without DUP, RETAIN or properties, to a topic name seen
        before, as a tuple, and a PUBACK that says Success without properties as its packet
        id. Everything else (and whatever is malformed) takes the full decoder."""
        return self._feed(data, True)

    def feed_qos0(self, data: bytes) -> PlainPublish | None:
        """A read that is exactly one plain QoS 0 PUBLISH (as `feed_plain` would give it,
        remaining length below 16,384): its (topic, payload), the decoder left as `feed_plain`
        would leave it. None, with nothing consumed, for anything else. A publisher at a low
        rate sends each message alone, and its read then skips the general loop (S6)."""
        version = self.protocol_level
        if version is None or self._buffered or self.error is not None or type(data) is not bytes:
            return None
        size = len(data)
        if size < 4 or data[0] != 0x30 or size > self.max_packet_size:
            return None
        remaining = data[1]
        cursor = 2
        if remaining >= 0x80:  # two bytes, minimally encoded
            last = data[2]
            if not 0 < last < 0x80:
                return None
            remaining = (remaining & 0x7F) | last << 7
            cursor = 3
        if cursor + remaining != size:
            return None
        stop = cursor + 2 + ((data[cursor] << 8) | data[cursor + 1])
        if stop > size:
            return None
        topic = TOPIC_NAMES.get(data[cursor + 2 : stop])
        if topic is None:
            return None
        if version == MQTT_5:
            if stop == size or data[stop]:
                return None  # properties: the full decoder
            stop += 1
        return topic, data[stop:]

    def feed_connect(self, data: bytes | bytearray | memoryview) -> Connect | None:
        """A server's first read when it is exactly one common CONNECT
        (`decode_common_connect`: no will, no properties): that packet, the decoder left as
        `feed` would leave it. None, with nothing consumed, for anything else: `feed` it then.
        Most clients send their CONNECT alone in one segment (issue 7, S7: the connect rate)."""
        if (
            self.protocol_level is not None
            or self._buffered
            or self.error is not None
            or type(data) is not bytes
            or len(data) > self.max_packet_size
        ):
            return None
        size = len(data)
        # One packet of at most 127 bytes after its two-byte fixed header, and nothing else.
        if size < 3 or data[0] != 0x10 or data[1] >= 0x80 or data[1] + 2 != size:
            return None
        connect = decode_common_connect(data, 2, size)
        if connect is not None:
            self.protocol_level = connect.protocol_level
        return connect

    def _feed(self, data: bytes | bytearray | memoryview, plain: bool
              ) -> list[Packet | Plain]:  # fmt: skip
        if self.error is not None:
            raise self.error
        if self._buffered:
            # Hold small pieces until the waiting packet is complete: joining once avoids
            # quadratic copying when a large packet arrives in many reads.
            chunks = cast("list[bytes]", self._chunks)  # `_buffered` means `_keep` made it
            chunks.append(bytes(data))
            self._buffered += len(data)
            if self._buffered < self._need:
                return []
            data = b"".join(chunks)
            self._chunks = None
            self._buffered = 0
        elif type(data) is not bytes:
            data = bytes(data)
        packets: list[Packet | Plain] = []
        self.all_plain = False
        try:
            self.all_plain = self._decode_into(data, packets, plain)
        except MqttError as exc:
            self.all_plain = False
            self.error = exc
            if not packets:
                raise
        return packets

    def _decode_into(self, data: bytes, packets: list[Packet | Plain], plain: bool) -> bool:
        """Append what `data` holds; True when every appended item is a `Plain` one."""
        size = len(data)
        pos = 0
        version = self.protocol_level
        limit = self.max_packet_size
        fast = plain and version is not None
        v5 = version == MQTT_5
        all_plain = True
        append = packets.append
        cached_topic = TOPIC_NAMES.get  # cleared, never replaced
        # A publisher's read is mostly PUBLISHes to one topic with one payload size: once a
        # plain one is decoded, a packet whose bytes up to the packet id (QoS 1) or the payload
        # (QoS 0) repeat its `head` is the same shape, found with one compare.
        head = b""
        head_len = span = run_qos = 0
        run_topic = ""
        while pos < size:
            if head_len and pos + span <= size and data.startswith(head, pos):
                at = pos + head_len
                end = pos + span
                if not run_qos:
                    append((run_topic, data[at:end]))
                    pos = end
                    continue
                packet_id = (data[at] << 8) | data[at + 1]
                if packet_id:
                    if not v5:
                        append((run_topic, data[at + 2 : end], packet_id))
                        pos = end
                        continue
                    if not data[at + 2]:  # Property Length 0
                        append((run_topic, data[at + 3 : end], packet_id))
                        pos = end
                        continue
            first = data[pos]
            # Remaining Length: a variable byte integer of at most 4 bytes [MQTT-1.5.5]; most
            # packets have a one-byte one.
            cursor = pos + 1
            remaining = data[cursor] if cursor < size else 0x80
            if remaining < 0x80:
                cursor += 1
            else:
                remaining = 0
                shift = 0
                while True:
                    if cursor >= size:
                        self._keep(data, pos, cursor - pos + 1)
                        return all_plain
                    byte = data[cursor]
                    cursor += 1
                    remaining |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        if byte == 0 and shift:
                            raise MalformedPacket("remaining length is not minimally encoded")
                        break
                    shift += 7
                    if shift == 28:
                        raise MalformedPacket("remaining length longer than 4 bytes")
            total = cursor - pos + remaining
            if total > limit:
                raise PacketTooLarge(f"packet of {total} bytes exceeds the maximum of {limit}")
            end = cursor + remaining
            if end > size:
                self._keep(data, pos, total)
                return all_plain
            if fast:
                # The hot paths: a checked topic name from the cache and a payload slice, or a
                # PUBACK's packet id; anything unusual falls through to the full decoder.
                if first == 0x30 and remaining >= 2:  # QoS 0, no DUP, no RETAIN
                    stop = cursor + 2 + ((data[cursor] << 8) | data[cursor + 1])
                    if stop <= end:
                        topic = cached_topic(data[cursor + 2 : stop])
                        if topic is not None:
                            if not v5:
                                append((topic, data[stop:end]))
                                head, head_len, span, run_qos = data[pos:stop], stop - pos, total, 0
                                run_topic = topic
                                pos = end
                                continue
                            if stop < end and data[stop] == 0:  # Property Length 0
                                append((topic, data[stop + 1 : end]))
                                head, head_len, span = data[pos : stop + 1], stop + 1 - pos, total
                                run_qos = 0
                                run_topic = topic
                                pos = end
                                continue
                elif first == 0x32 and remaining >= 4:  # QoS 1, no DUP, no RETAIN
                    stop = cursor + 2 + ((data[cursor] << 8) | data[cursor + 1])
                    if stop + 2 <= end:
                        topic = cached_topic(data[cursor + 2 : stop])
                        packet_id = (data[stop] << 8) | data[stop + 1]
                        if topic is not None and packet_id:
                            if not v5:
                                append((topic, data[stop + 2 : end], packet_id))
                                head, head_len, span, run_qos = data[pos:stop], stop - pos, total, 1
                                run_topic = topic
                                pos = end
                                continue
                            if stop + 2 < end and data[stop + 2] == 0:  # Property Length 0
                                append((topic, data[stop + 3 : end], packet_id))
                                head, head_len, span, run_qos = data[pos:stop], stop - pos, total, 1
                                run_topic = topic
                                pos = end
                                continue
                elif first == 0x40 and (  # PUBACK
                    remaining == 2 or (remaining == 3 and v5 and not data[end - 1])
                ):
                    # MQTT 5 may also send Success as a reason code byte: the same PUBACK.
                    packet_id = (data[cursor] << 8) | data[cursor + 1]
                    if packet_id:
                        append(packet_id)
                        pos = end
                        continue
            kind = first >> 4
            flags = first & 0x0F
            if kind != _PUBLISH and flags != REQUIRED_FLAGS.get(kind, flags):
                raise MalformedPacket(f"reserved flags 0x{flags:X} on packet type {kind}")
            if version is None:
                if kind != _CONNECT:
                    raise ProtocolError("the first packet must be CONNECT [MQTT-3.1.0-1]")
                connect = cast(Connect, DECODERS[kind](flags, data, cursor, end, 0))
                version = self.protocol_level = connect.protocol_level
                fast = plain
                v5 = version == MQTT_5
                packet: Packet = connect
            else:
                packet = DECODERS[kind](flags, data, cursor, end, version)
            append(packet)
            all_plain = False
            pos = end
        self._need = 0
        return all_plain

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        tail = data[pos:] if pos else data
        self._chunks = [tail]
        self._buffered = len(tail)
        self._need = need
