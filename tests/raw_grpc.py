"""A gRPC call over a bare HTTP/2 connection (the `h2` package), for what grpcio clients hide:
the `grpc-encoding` response header and the compressed flag of each message.

    reply = raw_call(emu.target, "/pkg.Svc/Method", [request.SerializeToString()])
    assert reply.headers["grpc-encoding"] == "gzip" and reply.flags == [1]
"""

from __future__ import annotations

import gzip
import socket
import time
import zlib
from dataclasses import dataclass, field

from h2 import events
from h2.config import H2Configuration
from h2.connection import H2Connection

__all__ = ["RawReply", "raw_call"]


@dataclass
class RawReply:
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    flags: list[int] = field(default_factory=list)  # each message's compressed flag (0 or 1)
    messages: list[bytes] = field(default_factory=list)  # each message, decompressed

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)["grpc-status"])


def raw_call(
    target: str,
    path: str,
    messages: list[bytes],
    *,
    accept: str = "identity,deflate,gzip",
    gzip_requests: bool = False,
    timeout: float = 10.0,
) -> RawReply:
    """One call, plaintext; `gzip_requests` sends each request message gzip-compressed."""
    host, _, port = target.rpartition(":")
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", target),
        (":path", path),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-accept-encoding", accept),
    ]
    if gzip_requests:
        headers.append(("grpc-encoding", "gzip"))
    conn.send_headers(stream, headers)
    body = b"".join(
        _frame(gzip.compress(m) if gzip_requests else m, gzip_requests) for m in messages
    )
    reply, received = RawReply(), b""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
        ended = False
        while True:
            # Send what the stream's flow-control window allows; the rest after WINDOW_UPDATEs.
            while body and (room := min(conn.local_flow_control_window(stream), len(body))) > 0:
                room = min(room, conn.max_outbound_frame_size)
                conn.send_data(stream, body[:room])
                body = body[room:]
            if not body and not ended:
                conn.end_stream(stream)
                ended = True
            sock.sendall(conn.data_to_send())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: no end of stream within {timeout}s")
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{path}: the server closed the connection")
            done = False
            for event in conn.receive_data(data):
                if isinstance(event, events.ResponseReceived):
                    reply.headers = dict(event.headers)
                elif isinstance(event, events.TrailersReceived):
                    reply.trailers = dict(event.headers)
                elif isinstance(event, events.DataReceived):
                    received += event.data or b""
                    conn.acknowledge_received_data(event.flow_controlled_length or 0, stream)
                elif isinstance(event, events.StreamEnded | events.StreamReset):
                    done = True
            sock.sendall(conn.data_to_send())
            if done:
                break
    encoding = reply.headers.get("grpc-encoding", "identity")
    while received:
        flag, size = received[0], int.from_bytes(received[1:5], "big")
        payload, received = received[5 : 5 + size], received[5 + size :]
        reply.flags.append(flag)
        reply.messages.append(_decompress(payload, encoding) if flag else payload)
    return reply


def _frame(message: bytes, compressed: bool) -> bytes:
    return bytes([int(compressed)]) + len(message).to_bytes(4, "big") + message


def _decompress(payload: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(payload)
    if encoding == "deflate":
        return zlib.decompress(payload)
    raise AssertionError(f"a compressed message with grpc-encoding {encoding!r}")
