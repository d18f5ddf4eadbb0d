"""MQTT data representations (spec 1.5): integers, strings, binary data, variable byte integers.

Decoders take the packet bytes with a position and the packet's end, and return the value with
the position after it. They never read past `end`: a length running past it is malformed.
"""

from __future__ import annotations

import struct

from gateway.mqtt.codec_errors import MalformedPacket

MAX_VBI = 268_435_455
MAX_U16 = 0xFFFF

U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
unpack_u16 = U16.unpack_from
unpack_u32 = U32.unpack_from
pack_u16 = U16.pack
pack_u32 = U32.pack


def encode_vbi(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value > MAX_VBI:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        digit = value & 0x7F
        value >>= 7
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_vbi(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    for index in range(4):
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            # A last byte of 0 after a continuation is a longer encoding than needed.
            if byte == 0 and index:
                raise MalformedPacket("variable byte integer is not minimally encoded")
            return value, pos
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def decode_u16(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("packet ends inside a two byte integer")
    return (data[pos] << 8) | data[pos + 1], pos + 2


def decode_u32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise MalformedPacket("packet ends inside a four byte integer")
    return unpack_u32(data, pos)[0], pos + 4


def decode_binary(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("packet ends inside a length prefix")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("length prefix runs past the end of the packet")
    return data[pos + 2 : stop], stop


def decode_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    raw, pos = decode_binary(data, pos, end)
    return check_utf8(raw), pos


def check_utf8(raw: bytes) -> str:
    # Python's strict decoder already refuses surrogates and over-long forms [MQTT-1.5.4-1].
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("string is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
    if "\x00" in text:
        raise MalformedPacket("string contains U+0000 [MQTT-1.5.4-2]")
    return text


def encode_binary(value: bytes) -> bytes:
    if len(value) > MAX_U16:
        raise ValueError("string or binary data longer than 65535 bytes")
    return pack_u16(len(value)) + value


def encode_string(value: str) -> bytes:
    return encode_binary(value.encode("utf-8"))
