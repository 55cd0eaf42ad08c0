"""The proxy responder: the calls no stub or behaviour answers, forwarded to a real service.

Asked after behaviours and before the default response, for the methods `proxy.methods` names
(`emulate record` forwards every method). Security and faults have run before it, as for any
responder. The call goes upstream as it came: request bytes untouched, headers (but the
emulator's own: the session and fault headers), the time left of its deadline, and a cancel
when the client cancels. The upstream's answer comes back the same way: its messages' bytes,
headers, trailers and status with its `google.rpc` details. With a recorder, each call is also
handed to it once it has ended, with the time of every message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from emulator.call import Call
from emulator.contracts.model import RpcKind
from emulator.contracts.patterns import method_matches
from emulator.errors import ConfigError, RpcAbort
from emulator.record.config import ProxyConfig
from emulator.record.tape import Tape
from emulator.respond import Answer, Exchange, Responder

__all__ = ["ProxyResponder", "Upstream"]

# Hop-by-hop and transport headers: grpc makes its own for the upstream call and for the answer.
_TRANSPORT = frozenset(
    {"content-type", "user-agent", "te", "grpc-timeout", "grpc-encoding"}
    | {"grpc-accept-encoding", "grpc-status", "grpc-message", "authority", "host"}
)
_UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Upstream:
    """The real service: one channel, opened on first use, on the loop that serves."""

    def __init__(self, config: ProxyConfig) -> None:
        self.target = config.upstream
        self._credentials = _credentials(config)
        self._options: list[tuple[str, Any]] = list(_UNLIMITED)
        if config.authority:
            self._options.append(("grpc.ssl_target_name_override", config.authority))
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=self._options
                )
        return self._channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


def _credentials(config: ProxyConfig) -> grpc.ChannelCredentials | None:
    if not (config.ca or config.cert or config.key):
        return None
    if bool(config.cert) != bool(config.key):
        given = "proxy.cert" if config.cert else "proxy.key"
        raise ConfigError(
            f"{given}: a client certificate needs both proxy.cert and proxy.key "
            "(--upstream-cert and --upstream-key)"
        )

    def read(key: str, path: str | None) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"proxy.{key}: {path}: cannot be read: {exc.strerror}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read("ca", config.ca),
        private_key=read("key", config.key),
        certificate_chain=read("cert", config.cert),
    )


class ProxyResponder(Responder):
    """Picks the calls of the methods it forwards, and answers them from the upstream."""

    def __init__(
        self,
        upstream: Upstream,
        methods: Sequence[str],
        *,
        own_headers: Callable[[str], bool],
        recorder: Callable[[Tape], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.patterns = tuple(methods)
        self._own = own_headers  # the emulator's headers: never sent upstream
        self.recorder = recorder
        self._label = f"proxy {upstream.target}"

    def picks(self, path: str) -> bool | None:
        return any(method_matches(p, path) for p in self.patterns)

    def pick(self, call: Call) -> Answer | None:
        if not self.picks(call.spec.path):
            return None
        call.answered_by = self._label
        return self._forward

    async def _forward(self, exchange: Exchange) -> AsyncIterator[bytes]:
        call = exchange.call
        spec = call.spec
        kind = spec.kind
        ctx = exchange.context_for(call, spec.output_class)
        tape = Tape(call, self.upstream.target) if self.recorder is not None else None
        channel = self.upstream.channel
        metadata = tuple(
            (key, value)
            for key, value in call.metadata
            if key not in _TRANSPORT and not key.startswith(":") and not self._own(key)
        )
        options: dict[str, Any] = {"metadata": metadata, "timeout": ctx.time_remaining()}
        if kind.client_streaming:
            outgoing: Any = self._requests(exchange, tape)
        else:
            outgoing = exchange.request
            if tape is not None:
                tape.inbound(outgoing)
        upstream = _OPEN[kind](channel, spec.path)(outgoing, **options)
        try:
            headers = await upstream.initial_metadata()
            if headers:
                ctx.set_initial_metadata(_answer_headers(headers))
            if tape is not None:
                tape.headers = tuple(headers or ())
            if kind.server_streaming:
                async for data in upstream:
                    if tape is not None:
                        tape.outbound(data)
                    yield data
                last = None
            else:
                last = await upstream
                if tape is not None:
                    tape.outbound(last)
            trailers = await upstream.trailing_metadata()
            if trailers:
                ctx.set_trailing_metadata(_answer_headers(trailers))
            if tape is not None:
                tape.end(grpc.StatusCode.OK, "", trailers)
            if last is not None:
                yield last
        except grpc.aio.AioRpcError as exc:
            if not _reached(channel, exc):
                raise _unreachable(self.upstream.target, exc) from None
            raise _failed(exc, ctx, tape, timed=options["timeout"] is not None) from None
        finally:
            if not upstream.done():
                upstream.cancel()  # our client left (or its deadline passed): so does the call
            if tape is not None and self.recorder is not None and tape.complete:
                self.recorder(tape)  # errors too; a call the client left is not an answer

    async def _requests(self, exchange: Exchange, tape: Tape | None) -> AsyncIterator[bytes]:
        """The request stream's bytes as they arrive: those the call read (the journal's own),
        or, for messages a stub looked at before passing the call on, their bytes again."""
        requests = exchange.call.requests
        count = requests.count
        async for message in exchange.messages():
            if requests.count > count:
                count = requests.count
                data = requests[-1]
            else:
                data = message.SerializeToString()
            if tape is not None:
                tape.inbound(data)
            yield data


_OPEN: dict[RpcKind, Callable[[grpc.aio.Channel, str], Any]] = {
    RpcKind.UNARY_UNARY: lambda channel, path: channel.unary_unary(path),
    RpcKind.UNARY_STREAM: lambda channel, path: channel.unary_stream(path),
    RpcKind.STREAM_UNARY: lambda channel, path: channel.stream_unary(path),
    RpcKind.STREAM_STREAM: lambda channel, path: channel.stream_stream(path),
}


def _reached(channel: grpc.aio.Channel, exc: grpc.aio.AioRpcError) -> bool:
    """Whether the error is the upstream's answer, not grpc's own word that it could not be
    reached (nothing listening, a refused handshake, the connection lost mid-call). Both are
    UNAVAILABLE with no headers; a channel that is still READY had a connection that answered.
    """
    if exc.code() is not grpc.StatusCode.UNAVAILABLE:
        return True
    return channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.READY


def _unreachable(target: str, exc: grpc.aio.AioRpcError) -> RpcAbort:
    """UNAVAILABLE naming the upstream. The tape is left unended, so nothing is recorded: a
    recording of it would replay the recorder's own outage as the service's answer."""
    return RpcAbort(
        grpc.StatusCode.UNAVAILABLE,
        f"proxy: the upstream {target} cannot be reached: {exc.details() or 'no reason given'}",
    )


def _failed(exc: grpc.aio.AioRpcError, ctx: Any, tape: Tape | None, *, timed: bool) -> RpcAbort:
    """The upstream's error, to end our call with: its status, details, headers, trailers
    (`grpc-status-details-bin`, its google.rpc details, among them, byte for byte)."""
    headers, trailers = exc.initial_metadata(), exc.trailing_metadata()
    if headers:
        ctx.set_initial_metadata(_answer_headers(headers))
    if trailers:
        ctx.set_trailing_metadata(_answer_headers(trailers))
    # A deadline the client set (and the upstream call took on) is not the upstream's answer:
    # a recording of it would fail calls with time to spare.
    timed_out = timed and exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    if tape is not None and not timed_out:
        tape.headers = tuple(headers or ())
        tape.end(exc.code(), exc.details() or "", trailers)
    return RpcAbort(exc.code(), exc.details() or "")


def _answer_headers(pairs: Any) -> list[tuple[str, str | bytes]]:
    return [
        (key, value) for key, value in pairs if key not in _TRANSPORT and not key.startswith(":")
    ]
