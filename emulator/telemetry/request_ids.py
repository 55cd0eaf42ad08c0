"""Request ids: the caller's (`x-request-id`, `telemetry.request_id_header`), or one made here,
carried by the access log line, the span and the journal record of the call.

A made id joins the call's request headers, as a proxy such as Envoy adds `x-request-id` on its
way to a service: behaviours, the journal and the admin API then see the id the log names."""

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
        if isinstance(sent, str) and sent:
            self.set_state(call, sent)
            return
        made = uuid.uuid4().hex
        call.metadata = (*call.metadata, (self.header, made))
        self.set_state(call, made)

    def of(self, call: Call) -> str:
        found: str = self.state(call, "")
        return found
