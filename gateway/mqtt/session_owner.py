"""`HandlerOwner`: what a `ClientHandler` (session_handler.py) needs from the shell it runs in,
the TCP listener (listener.py), the WebSocket endpoint (websocket.py) or a test harness."""

from __future__ import annotations

from typing import Protocol


class HandlerOwner(Protocol):
    """The shell a handler runs in (the TCP listener, the WebSocket endpoint, a test harness).

    One reference to the owner instead of four bound-method callbacks: each of those is a
    64-byte object kept per connection, most of them idle (issue 7, S7).
    """

    @property
    def can_pause_reading(self) -> bool:
        """False for a shell that cannot stop reading: flow control then leaves publishers
        to queue limits and the memory alarm."""

    def output_ready(self) -> None:
        """The connection has output queued: flush it (now or at the end of the loop turn)."""

    def write_now(self, packet: bytes) -> bool:
        """Write one whole packet for the client at once, past the connection's buffer, if
        nothing waits in that buffer before it; False when it cannot (the caller queues it).
        A lone QoS 0 PUBLISH is forwarded as the publisher's bytes this way (issue 7, S6)."""

    def close_transport(self) -> None:
        """Close once what is queued has been written."""

    def pause_reading(self) -> None:
        """Stop reading the client (flow control holds a publisher)."""

    def resume_reading(self) -> None:
        """Read the client again."""
