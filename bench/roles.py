"""The role functions, each run in its own process by bench/procs.py.

Publishers write pre-encoded frames in large batches (`batch` messages per `send`); receivers
count with bench/streams.py. Every loop is bounded by a message count, the run's stop signal
and an idle timeout. Each role returns a dict: counts, `end_ns` (time.monotonic_ns of its last
message), `error`, and optional extras; procs.py adds its CPU seconds since the start signal.
"""

from __future__ import annotations

import select
import socket
import time

from bench.procs import CONNECTED, DELIVERED, Result, RoleContext
from bench.streams import (
    STAMP,
    STAMP_SIZE,
    AmqpConfirmCounter,
    AmqpDeliveryCounter,
    MqttCounter,
    PubackCounter,
)
from bench.wire import (
    HOST,
    AmqpConnection,
    amqp_publish,
    mqtt_connect,
    mqtt_connect_packet,
    mqtt_disconnect,
    mqtt_publish,
    mqtt_subscribe,
)

RECV_SIZE = 1 << 18
POLL_S = 0.2  # socket timeout: how often blocked loops look at the stop signal
# A receiver that got a small read sleeps a little so that the next read returns many messages:
# a broker writing one segment per message would otherwise wake it once per message and the
# generator's per-read cost, not the broker, would set the pace (throughput runs only). Never
# when the read owes the broker acknowledgements (an MQTT QoS 1 subscriber): the broker's
# window of unacknowledged messages (100, see brokers.INFLIGHT) is smaller than that, so a
# sleep would hold every window for 0.5 ms and the generator would set the pace after all.
COALESCE_BELOW = 16384
COALESCE_S = 0.0005
_now = time.monotonic_ns


def _payload(size: int) -> bytes:
    return STAMP.pack(_now()) + bytes(size - STAMP_SIZE)


def _send(ctx: RoleContext, sock: socket.socket, data: bytes | bytearray | memoryview) -> int:
    """Send everything unless the run is stopped meanwhile; return the bytes sent."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        try:
            sent += sock.send(view[sent:])
        except TimeoutError:
            if ctx.stopped:
                break
    return sent


class _Idle:
    """Raises when nothing moved for `limit` seconds."""

    def __init__(self, limit: float, what: str) -> None:
        self.limit = limit
        self.what = what
        self.last = time.monotonic()

    def moved(self) -> None:
        self.last = time.monotonic()

    def check(self) -> None:
        if time.monotonic() - self.last > self.limit:
            raise TimeoutError(f"no {self.what} for {self.limit:.0f} s")


# -- publishers -----------------------------------------------------------------------------------


def _windowed_publish(
    ctx: RoleContext,
    sock: socket.socket,
    record: bytes,
    count: int,
    batch: int,
    window: int,
    publishers: int,
    idle_timeout: float,
    duration: float,
) -> Result:
    """Repeat `record` `count` times (or for `duration` s), at most `window` ahead of delivery.

    `window` counts messages over all publishers (0: no window, as fast as the broker reads);
    each publisher keeps its share of it against the receiver's shared DELIVERED counter.
    """
    size = len(record)
    chunk = memoryview(record * batch)
    counters = ctx.counters
    share = window // publishers
    idle = _Idle(idle_timeout, "deliveries while the window was full")
    stop_at = time.monotonic() + duration if duration else 0.0
    sent = 0
    last_seen = -1
    while sent < count and not ctx.stopped:
        if stop_at and time.monotonic() >= stop_at:
            break
        n = min(batch, count - sent)
        if share:
            delivered = counters[DELIVERED]
            if delivered != last_seen:
                last_seen = delivered
                idle.moved()
            if share - (sent - delivered // publishers) < n:
                idle.check()
                time.sleep(0.0002)
                continue
        written = _send(ctx, sock, chunk[: n * size])
        sent += written // size
        if written < n * size:
            break
    return {"sent": sent, "end_ns": _now()}


def mqtt_pub_qos0(
    ctx: RoleContext,
    port: int,
    client_id: str,
    topic: str,
    count: int,
    payload: int,
    batch: int,
    window: int,
    publishers: int,
    idle_timeout: float,
    duration: float = 0.0,
) -> Result:
    sock = mqtt_connect(port, client_id, idle_timeout)
    sock.settimeout(POLL_S)
    ctx.ready()
    record = mqtt_publish(topic, _payload(payload))
    try:
        return _windowed_publish(
            ctx, sock, record, count, batch, window, publishers, idle_timeout, duration
        )
    finally:
        mqtt_disconnect(sock)


def mqtt_pub_qos1(
    ctx: RoleContext,
    port: int,
    client_id: str,
    topic: str,
    count: int,
    payload: int,
    in_flight: int,
    idle_timeout: float,
) -> Result:
    """QoS 1 with `in_flight` PUBLISHes awaiting PUBACK; the result counts PUBACKs."""
    sock = mqtt_connect(port, client_id, idle_timeout)
    body = _payload(payload)
    # Every packet identifier pre-encoded: a batch is one slice of this buffer.
    records = [mqtt_publish(topic, body, qos=1, packet_id=pid) for pid in range(1, 0x10000)]
    size = len(records[0])
    encoded = memoryview(b"".join(records))
    acks = PubackCounter()
    refill = max(1, in_flight // 4)
    sock.settimeout(POLL_S)
    ctx.ready()
    idle = _Idle(idle_timeout, "PUBACK")
    sent = 0
    next_pid = 1
    end_ns = 0
    try:
        while acks.count < count and not ctx.stopped:
            credit = min(in_flight - (sent - acks.count), count - sent)
            if credit >= refill or (credit > 0 and sent + credit == count):
                n = min(credit, 0x10000 - next_pid)
                start = (next_pid - 1) * size
                _send(ctx, sock, encoded[start : start + n * size])
                sent += n
                next_pid = next_pid + n if next_pid + n < 0x10000 else 1
                continue
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                idle.check()
                continue
            if not data:
                raise ConnectionError("closed by the broker")
            acks.feed(data)
            end_ns = _now()
            idle.moved()
    finally:
        mqtt_disconnect(sock)
    return {"sent": sent, "settled": acks.count, "end_ns": end_ns}


def mqtt_pub_paced(
    ctx: RoleContext,
    port: int,
    client_id: str,
    topic: str,
    count: int,
    payload: int,
    rate: float,
    idle_timeout: float,
) -> Result:
    """One QoS 0 PUBLISH at a time on a fixed schedule, each stamped as it leaves."""
    sock = mqtt_connect(port, client_id, idle_timeout)
    sock.settimeout(POLL_S)
    record = bytearray(mqtt_publish(topic, _payload(payload)))
    stamp_at = len(record) - payload
    ctx.ready()
    start = time.monotonic()
    sent = 0
    try:
        while sent < count and not ctx.stopped:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            STAMP.pack_into(record, stamp_at, _now())
            _send(ctx, sock, record)
            sent += 1
    finally:
        mqtt_disconnect(sock)
    return {"sent": sent, "end_ns": _now()}


def amqp_pub(
    ctx: RoleContext,
    port: int,
    exchange: str,
    routing_key: str,
    count: int,
    payload: int,
    batch: int,
    window: int,
    publishers: int,
    idle_timeout: float,
    confirm_window: int = 0,
    duration: float = 0.0,
) -> Result:
    """basic.publish in batches; with `confirm_window`, publisher confirms bound the window."""
    conn = AmqpConnection(port, idle_timeout)
    if confirm_window:
        conn.confirm_select()
    conn.sock.settimeout(POLL_S)
    record = amqp_publish(exchange, routing_key, _payload(payload))
    ctx.ready()
    try:
        if not confirm_window:
            return _windowed_publish(
                ctx, conn.sock, record, count, batch, window, publishers, idle_timeout, duration
            )
        return _confirmed_publish(ctx, conn, record, count, batch, confirm_window, idle_timeout)
    finally:
        conn.close()


def _confirmed_publish(
    ctx: RoleContext,
    conn: AmqpConnection,
    record: bytes,
    count: int,
    batch: int,
    window: int,
    idle_timeout: float,
) -> Result:
    size = len(record)
    chunk = memoryview(record * min(batch, window))
    confirms = AmqpConfirmCounter()
    confirms.feed(conn.pending())
    refill = max(1, min(batch, window // 4))
    idle = _Idle(idle_timeout, "confirms")
    sent = 0
    end_ns = 0
    while confirms.confirmed < count and not ctx.stopped:
        credit = min(window - (sent - confirms.confirmed), count - sent, len(chunk) // size)
        if credit >= refill or (credit > 0 and sent + credit == count):
            _send(ctx, conn.sock, chunk[: credit * size])
            sent += credit
            continue
        try:
            data = conn.sock.recv(RECV_SIZE)
        except TimeoutError:
            idle.check()
            continue
        if not data:
            raise ConnectionError("closed by the broker")
        confirms.feed(data)
        if confirms.controls:
            raise ConnectionError(f"unexpected frame {confirms.controls[0][:16].hex()}")
        end_ns = _now()
        idle.moved()
    return {
        "sent": sent,
        "settled": confirms.confirmed,
        "nacked": confirms.nacked,
        "end_ns": end_ns,
    }


# -- receivers ------------------------------------------------------------------------------------


def mqtt_sub(
    ctx: RoleContext,
    port: int,
    client_id: str,
    topic_filter: str,
    qos: int,
    expected: int,
    idle_timeout: float,
    latency: bool = False,
    max_rate: float = 0.0,
    duration: float = 0.0,
) -> Result:
    """Count deliveries (PUBACK them at QoS 1) until `expected` or the stop signal.

    `max_rate` > 0 makes a deliberately slow consumer: it reads no faster than that many
    messages per second (the bounded-memory check); `duration` > 0 ends it after that long.
    """
    sock = mqtt_connect(port, client_id, idle_timeout)
    mqtt_subscribe(sock, topic_filter, qos)
    sock.settimeout(POLL_S)
    counter = MqttCounter(latency=latency)
    counters = ctx.counters
    ctx.ready()
    idle = _Idle(idle_timeout, "deliveries")
    end_ns = 0
    recv_size = RECV_SIZE if not max_rate else 16384
    stop_at = time.monotonic() + duration if duration else float("inf")
    error = None
    try:
        while counter.count < expected and not ctx.stopped and time.monotonic() < stop_at:
            try:
                data = sock.recv(recv_size)
            except TimeoutError:
                idle.check()
                continue
            if not data:
                raise ConnectionError("closed by the broker")
            end_ns = _now()
            acks = counter.feed(data, end_ns)
            if acks:
                sock.sendall(acks)
            counters[DELIVERED] = counter.count
            idle.moved()
            if len(data) < COALESCE_BELOW and not latency and not acks:
                time.sleep(COALESCE_S)
            if max_rate:
                behind = counter.count / max_rate - (time.monotonic_ns() - ctx.go_ns) / 1e9
                if behind > 0:
                    time.sleep(behind)
    except TimeoutError as exc:  # stalled: report what arrived
        error = f"sub: {exc} after {counter.count} of {expected}"
    finally:
        mqtt_disconnect(sock)
    return {
        "delivered": counter.count,
        "end_ns": end_ns,
        "latencies_ns": counter.latencies_ns,
        "error": error,
    }


def amqp_consumer(
    ctx: RoleContext,
    port: int,
    bind: tuple[str, str] | None,
    queue: str,
    prefetch: int,
    expected: int,
    idle_timeout: float,
) -> Result:
    """Declare `queue` (exclusive; bound with `bind` = (exchange, routing key) if given) and
    consume it with acks: one basic.ack(multiple) per read."""
    conn = AmqpConnection(port, idle_timeout)
    conn.declare_queue(queue)
    if bind is not None:
        conn.bind(queue, *bind)
    conn.consume(queue, prefetch, manual_ack=True)
    sock = conn.sock
    sock.settimeout(POLL_S)
    counter = AmqpDeliveryCounter()
    counter.feed(conn.pending())
    counters = ctx.counters
    ctx.ready()
    idle = _Idle(idle_timeout, "deliveries")
    end_ns = 0
    acked = 0
    error = None
    try:
        while counter.count < expected and not ctx.stopped:
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                idle.check()
                continue
            if not data:
                raise ConnectionError("closed by the broker")
            end_ns = _now()
            counter.feed(data, end_ns)
            if counter.controls:
                raise ConnectionError(f"unexpected frame {counter.controls[0][:16].hex()}")
            if counter.count > acked:
                acked = counter.count
                sock.sendall(_basic_ack(acked))
            counters[DELIVERED] = counter.count
            idle.moved()
            if len(data) < COALESCE_BELOW:
                time.sleep(COALESCE_S)
    except TimeoutError as exc:  # stalled: report what arrived
        error = f"consumer: {exc} after {counter.count} of {expected}"
    finally:
        conn.close()
    return {"delivered": counter.count, "end_ns": end_ns, "error": error}


def _basic_ack(tag: int) -> bytes:
    from gateway.amqp.fastpath import encode_basic_ack

    return encode_basic_ack(1, tag, multiple=True)


# -- idle connections (S7) ------------------------------------------------------------------------


def mqtt_idle_connections(
    ctx: RoleContext,
    port: int,
    prefix: str,
    count: int,
    concurrency: int,
    idle_timeout: float,
    slot: int,
) -> Result:
    """Open `count` MQTT connections, `concurrency` handshakes at a time, and hold them idle
    until the stop signal. Shared counter CONNECTED + `slot` counts this process's CONNACKs.

    As few system calls per connection as a client can make, so that the generator does not
    set the pace (it shares the machine with the broker): a non-blocking socket, its CONNECT
    sent right after `connect` (on loopback the handshake has completed by the time `connect`
    returns; a socket that is not connected yet waits for writability instead), one-shot
    epoll registration for the CONNACK (no unregister call), one `recv`."""
    packets = [mqtt_connect_packet(f"{prefix}-{i}") for i in range(count)]
    poller = select.epoll()
    sockets: dict[int, tuple[socket.socket, int]] = {}  # fd -> (socket, packet index)
    unsent: set[int] = set()  # fds waiting for the handshake before their CONNECT
    held: list[socket.socket] = []
    ctx.ready()
    idle = _Idle(idle_timeout, "CONNACK")
    opened = 0
    pending = 0
    failed = 0
    end_ns = 0
    address = (HOST, port)
    stream = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    want_reply = select.EPOLLIN | select.EPOLLONESHOT
    want_write = select.EPOLLOUT | select.EPOLLONESHOT
    try:
        while len(held) + failed < count:
            while pending < concurrency and opened < count:
                sock = socket.socket(socket.AF_INET, stream)
                sock.connect_ex(address)
                fd = sock.fileno()
                sockets[fd] = (sock, opened)
                try:
                    sock.send(packets[opened])
                    poller.register(fd, want_reply)
                except OSError:  # not connected yet: send once it is
                    unsent.add(fd)
                    poller.register(fd, want_write)
                opened += 1
                pending += 1
            events = poller.poll(POLL_S)
            if not events:
                idle.check()
                if ctx.stopped:
                    break
            for fd, _mask in events:
                sock, index = sockets[fd]
                if fd in unsent:
                    unsent.discard(fd)
                    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        sock.send(packets[index])
                        poller.modify(fd, want_reply)
                        continue
                    connack = b""
                else:
                    connack = sock.recv(4)
                del sockets[fd]
                pending -= 1
                if len(connack) == 4 and connack[0] == 0x20 and connack[3] == 0:
                    held.append(sock)
                    idle.moved()
                else:
                    poller.unregister(fd)
                    sock.close()
                    failed += 1
            end_ns = _now() if held else 0
            ctx.counters[CONNECTED + slot] = len(held)
        connected_cpu = ctx.cpu_since_go()
        while not ctx.stopped:
            time.sleep(POLL_S)
    finally:
        for sock in held:
            sock.close()
        for sock, _index in sockets.values():
            sock.close()
        poller.close()
    return {"connected": len(held), "failed": failed, "end_ns": end_ns, "cpu_s": connected_cpu}
