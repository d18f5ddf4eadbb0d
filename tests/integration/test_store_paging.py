"""A durable queue with more persistent bodies than its memory limit: `gateway run` keeps them on
disk (its RSS stays far below what the bodies take), and a consumer still gets every message,
in order, with its body and properties. Then the backlog survives a restart, paged again."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pika
from pamqp import commands, frame, header

from gateway.mqtt.packets import Properties as Properties5
from gateway.mqtt.packets import PubAck, Publish, SubAck, Subscribe, SubscriptionOptions
from tests.gateway_runner import running_gateway
from tests.integration.test_store_crash_sessions import Client as MqttClient

COUNT = 200_000
BODY = 1024
QUEUE = "paged-q"
LIMIT = 4 * 1024 * 1024
_HEAD = struct.Struct(">BHI")

GATEWAY = [
    sys.executable, "-m", "gateway", "run", "--bind", "127.0.0.1", "--mqtt-port", "-1",
    "--ws-port", "-1", "--amqp-port", "0", "--http-port", "-1", "--log-format", "json",
]  # fmt: skip


class Gateway:
    def __init__(self, data_dir: Path, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*GATEWAY, "--data-dir", str(data_dir), "--config", str(config)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        self.port = 0
        while time.monotonic() < deadline and not self.port:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            event = json.loads(line)
            if event.get("event") == "gateway.ready":
                self.port = int(event["ports"]["amqp"])
        if not self.port:
            self.proc.kill()
            raise AssertionError("no gateway.ready; stderr:\n" + "".join(self.lines))
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def memory(self) -> tuple[int, int]:
        """(resident, peak resident) bytes of the gateway process."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        assert code == 0, "".join(self.lines[-20:])


def body_of(i: int) -> bytes:
    return b"%08d" % i + bytes([i % 251]) * (BODY - 8)


def publish_frames(start: int, count: int) -> bytes:
    out = []
    for i in range(start, start + count):
        body = body_of(i)
        props = commands.Basic.Properties(
            delivery_mode=2, message_id=f"m{i}", headers={"n": i}, content_type="x/test"
        )
        out.append(frame.marshal(commands.Basic.Publish(exchange="", routing_key=QUEUE), 1))
        out.append(frame.marshal(header.ContentHeader(0, len(body), props), 1))
        out.append(_HEAD.pack(3, 1, len(body)) + body + b"\xce")
    return b"".join(out)


def publish_confirmed(port: int, count: int, window: int = 2000) -> None:
    """Raw AMQP: confirm mode, at most `window` unconfirmed; returns when all are confirmed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    buf = b""

    def expect(kind: type[frame.FrameTypes]) -> None:
        nonlocal buf
        while True:
            if len(buf) >= 7:
                size = _HEAD.unpack_from(buf, 0)[2] + 8
                if len(buf) >= size:
                    raw, buf = buf[:size], buf[size:]
                    if isinstance(frame.unmarshal(raw)[2], kind):
                        return
                    continue
            buf += sock.recv(65536)

    def send(method: frame.FrameTypes, channel: int = 1) -> None:
        sock.sendall(frame.marshal(method, channel))

    sock.sendall(b"AMQP\x00\x00\x09\x01")
    expect(commands.Connection.Start)
    send(commands.Connection.StartOk(mechanism="PLAIN", response="\0guest\0guest"), 0)
    expect(commands.Connection.Tune)
    send(commands.Connection.TuneOk(2047, 131072, 0), 0)
    send(commands.Connection.Open(virtual_host="/"), 0)
    expect(commands.Connection.OpenOk)
    send(commands.Channel.Open())
    expect(commands.Channel.OpenOk)
    send(commands.Confirm.Select())
    expect(commands.Confirm.SelectOk)
    sent = confirmed = 0
    chunk = 500
    while confirmed < count:
        if sent < count and sent - confirmed + chunk <= window:
            n = min(chunk, count - sent)
            sock.sendall(publish_frames(sent, n))
            sent += n
            continue
        buf += sock.recv(65536)
        pos = 0
        while len(buf) - pos >= 8:
            _kind, _channel, size = _HEAD.unpack_from(buf, pos)
            if len(buf) - pos < size + 8:
                break
            class_id, method_id = struct.unpack_from(">HH", buf, pos + 7)
            assert (class_id, method_id) == (60, 80), "only basic.ack expected"
            tag, bits = struct.unpack_from(">QB", buf, pos + 11)
            confirmed = tag if bits & 1 else max(confirmed, tag)
            pos += size + 8
        buf = buf[pos:]
    sock.close()


def consume_range(port: int, start: int, end: int, *, redelivered: bool) -> None:
    """Consume messages start..end-1 (they must come in that order), acking them."""
    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, socket_timeout=30)
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=2000)
    expected = start
    for method, props, body in channel.consume(QUEUE, inactivity_timeout=30):
        assert method is not None, f"stalled at message {expected}"
        assert body == body_of(expected)
        assert props.message_id == f"m{expected}"
        assert props.headers == {"n": expected}
        assert props.content_type == "x/test"
        assert props.delivery_mode == 2
        assert method.redelivered is redelivered
        expected += 1
        if expected % 500 == 0 or expected == end:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if expected == end:
            break
    connection.close()  # what was delivered past `end` goes back to the queue


def test_a_backlog_bigger_than_the_limit_stays_on_disk_and_drains_in_order(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    # memory_limit above the bodies: only paging can keep the RSS down here.
    config.write_text(f"memory_limit = {4 * COUNT * BODY}\n[store]\nqueue_memory_limit = {LIMIT}\n")
    data = tmp_path / "data"
    gateway = Gateway(data, config)
    bodies = COUNT * BODY  # 205 MB
    try:
        _, started = gateway.memory()
        with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", gateway.port)) as c:
            c.channel().queue_declare(QUEUE, durable=True)
        publish_confirmed(gateway.port, COUNT)
        # About 250 bytes per message stay resident (entry, sequence number, timestamps).
        _, peak = gateway.memory()
        assert peak - started < bodies // 4, (started, peak)
        consume_range(gateway.port, 0, COUNT // 2, redelivered=False)
    finally:
        gateway.stop()
    # The other half comes back after a restart, paged as it is recovered.
    gateway = Gateway(data, config)
    try:
        _, peak = gateway.memory()
        assert peak - started < bodies // 2 // 2, (started, peak)  # half of them are left
        consume_range(gateway.port, COUNT // 2, COUNT, redelivered=True)
        with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", gateway.port)) as c:
            assert c.channel().queue_declare(QUEUE, passive=True).method.message_count == 0
    finally:
        gateway.stop()


def test_an_offline_mqtt_session_backlog_is_paged_and_delivered_in_order(tmp_path: Path) -> None:
    """MQTT 5 QoS 1 messages (topic, payload, user properties) queued for an offline
    persistent session come back from disk when it reconnects."""
    count = 3000
    with running_gateway(data_dir=str(tmp_path), store={"queue_memory_limit": 64 * 1024,
                                                       "page_batch": 200}) as gateway:  # fmt: skip
        port = gateway.mqtt_port
        subscriber = MqttClient(port, "paged-sub", clean_start=True)
        subscriber.send(Subscribe(1, (("paged/#", SubscriptionOptions(1)),)))
        assert isinstance(subscriber.next(), SubAck)
        subscriber.close()  # offline; the session (expiry 3600 s) keeps its queue
        publisher = MqttClient(port, "paged-pub", clean_start=True)
        for i in range(count):
            props = Properties5(user_properties=(("n", str(i)),))
            publisher.send(Publish(f"paged/{i % 7}", b"%06d" % i + b"m" * 994, qos=1,
                                   packet_id=i % 65535 + 1, properties=props))  # fmt: skip
        for _ in range(count):
            assert isinstance(publisher.next(), PubAck)
        publisher.close()
        pager = gateway.gateway.broker.pager
        assert gateway.call(lambda: pager.paged_out) > count // 2
        subscriber = MqttClient(port, "paged-sub", clean_start=False)
        assert subscriber.connack.session_present
        for i in range(count):
            got = subscriber.next()
            assert isinstance(got, Publish)
            assert (got.topic, got.payload[:6]) == (f"paged/{i % 7}", b"%06d" % i)
            assert ("n", str(i)) in got.properties.user_properties
            assert got.qos == 1
            assert got.packet_id is not None
            subscriber.send(PubAck(got.packet_id))
        subscriber.close()
        assert gateway.call(lambda: pager.paged_in) > count // 2
        assert gateway.call(lambda: pager.lost) == 0
