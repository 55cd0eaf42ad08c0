"""Request ids: the caller's (`x-request-id`, `telemetry.request_id_header`), or one made here,
carried by the access log line and the span of the call."""

from __future__ import annotations

import uuid

from emulator.call import Call
from emulator.chain import Interceptor

__all__ = ["RequestIds"]


class RequestIds(Interceptor):
    def __init__(self, header: str) -> None:
        self.header = header

    async def before(self, call: Call) -> None:
        sent = next((v for k, v in call.metadata if k == self.header), None)
        self.set_state(call, sent if isinstance(sent, str) and sent else uuid.uuid4().hex)

    def of(self, call: Call) -> str:
        found: str = self.state(call, "")
        return found
