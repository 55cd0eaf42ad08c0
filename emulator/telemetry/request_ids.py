"""Request ids: the caller's (`x-request-id`, `telemetry.request_id_header`), or one made here,
sent back in the response headers (or trailers, `telemetry.request_id_response`), and carried by
the access log line, the span and the journal record of the call.

Trailers cost nothing: they go with the status, in the batch that ends every call. Headers of a
call's own cost grpc.aio a batch of their own before the answer (it has no way to add them to
the final one), which at full load is a fifth of a default call's CPU: hence the choice.

A made id joins the call's request headers, as a proxy such as Envoy adds `x-request-id` on its
way to a service: behaviours, the journal and the admin API then see the id the log names."""

from __future__ import annotations

import os

from emulator.call import Call, first_value
from emulator.chain import Interceptor

__all__ = ["RequestIds"]


class RequestIds(Interceptor):
    def __init__(self, header: str, response: str = "headers") -> None:
        self.header = header
        self.response = response  # headers, trailers or off

    async def before(self, call: Call) -> None:
        sent = first_value(call.metadata, self.header)
        if isinstance(sent, str) and sent:
            request_id = sent
        else:
            request_id = os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, at a fifth
            call.metadata = (*call.metadata, (self.header, request_id))
        self.set_state(call, request_id)
        # Back to the caller, with any headers or trailers the behaviour sets.
        if self.response == "headers":
            call.headers_out = (*call.headers_out, (self.header, request_id))
        elif self.response == "trailers":
            call.trailers_out = (*call.trailers_out, (self.header, request_id))

    def of(self, call: Call) -> str:
        found: str = self.state(call, "")
        return found
