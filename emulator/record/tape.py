"""One forwarded call as it happened: its messages each way with their times, the upstream's
headers, trailers and status. The proxy fills it in; the recorder turns it into a stub."""

from __future__ import annotations

import datetime
import time
from typing import Any

import grpc

from emulator.call import Call

__all__ = ["Tape"]


class Tape:
    __slots__ = (
        "_t0",
        "at",
        "code",
        "complete",
        "details",
        "events",
        "headers",
        "spec",
        "trailers",
        "upstream",
    )

    def __init__(self, call: Call, upstream: str) -> None:
        self.spec = call.spec
        self.upstream = upstream
        self.at = datetime.datetime.now(datetime.UTC)
        self._t0 = time.monotonic()
        # ("in" | "out", seconds since the call started, message bytes), in order.
        self.events: list[tuple[str, float, bytes]] = []
        self.headers: tuple[tuple[str, Any], ...] = ()
        self.trailers: tuple[tuple[str, Any], ...] = ()
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.complete = False  # the upstream gave its status (not a call the client left)

    def inbound(self, data: bytes) -> None:
        self.events.append(("in", time.monotonic() - self._t0, data))

    def outbound(self, data: bytes) -> None:
        self.events.append(("out", time.monotonic() - self._t0, data))

    def end(self, code: grpc.StatusCode, details: str, trailers: Any) -> None:
        self.code, self.details = code, details
        self.trailers = tuple(trailers or ())
        self.complete = True

    @property
    def requests(self) -> list[bytes]:
        return [data for way, _, data in self.events if way == "in"]

    @property
    def responses(self) -> list[bytes]:
        return [data for way, _, data in self.events if way == "out"]
