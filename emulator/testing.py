"""In-process emulators for tests: `with Emulator(...) as emu:` or `async with Emulator(...)`.

Sync code gets the server on a background event-loop thread; async code runs it on its own loop.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any

import grpc

from emulator.behavior.discovery import BehaviorSource
from emulator.client import DynamicStub
from emulator.config import Config
from emulator.errors import EmulatorError
from emulator.runtime.server import EmulatorServer

__all__ = ["Emulator"]

PathLike = str | os.PathLike[str]


class Emulator:
    """An emulator bound to 127.0.0.1 on a free port, for the length of a `with` block.

    with Emulator(protos="protos/", behaviors="behaviors/", seed=7) as emu:
        channel = emu.channel()
    """

    def __init__(
        self,
        protos: PathLike | Sequence[PathLike] = (),
        behaviors: BehaviorSource | Sequence[BehaviorSource] = (),
        *,
        seed: int = 0,
        **config: Any,
    ) -> None:
        proto_list = [protos] if isinstance(protos, str | os.PathLike) else list(protos)
        sources: list[BehaviorSource] = (
            list(behaviors) if isinstance(behaviors, list | tuple) else [behaviors]  # type: ignore[list-item]
        )
        server = dict(config.pop("server", {}))
        server.setdefault("host", "127.0.0.1")
        server.setdefault("port", 0)
        data = {
            "protos": [os.fspath(p) for p in proto_list],
            "seed": seed,
            "server": server,
            **config,
        }
        self.config = Config.from_mapping(data, source="Emulator(...)")
        self._server = EmulatorServer(self.config, behaviors=sources)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: list[Any] = []
        self._running = False
        self._stub_channel: grpc.Channel | None = None

    @property
    def server(self) -> EmulatorServer:
        return self._server

    @property
    def target(self) -> str:
        self._check_running()
        return self._server.target

    def _check_running(self) -> None:
        if not self._running:
            raise EmulatorError("the emulator is not running: use it inside `with Emulator(...)`")

    def channel(self) -> grpc.Channel:
        """A grpc.Channel to the emulator, closed when the emulator stops."""
        channel = grpc.insecure_channel(self.target)
        self._channels.append(channel)
        return channel

    def stub(self, service: str) -> DynamicStub:
        """A client for `service` (full name) whose methods take dicts or messages."""
        spec = self._server.contracts.services.get(service)
        if spec is None:
            close = difflib.get_close_matches(service, list(self._server.contracts.services), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise EmulatorError(f"no service {service!r} in the contracts{hint}")
        if self._stub_channel is None:
            self._stub_channel = self.channel()
        return DynamicStub(self._stub_channel, spec, self._server.contracts)

    def aio_channel(self) -> grpc.aio.Channel:
        """A grpc.aio.Channel to the emulator, for asyncio tests."""
        channel = grpc.aio.insecure_channel(self.target)
        self._channels.append(channel)
        return channel

    # -- sync: a background event-loop thread --------------------------------------------

    def __enter__(self) -> Emulator:
        started: Future[None] = Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._server.start())
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="emulator-loop", daemon=True)
        self._thread.start()
        started.result()
        self._running = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        self._stub_channel = None
        for channel in self._channels:
            if isinstance(channel, grpc.Channel):
                channel.close()
        assert self._loop is not None and self._thread is not None
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    async def _shutdown(self) -> None:
        for channel in self._channels:
            if isinstance(channel, grpc.aio.Channel):
                await channel.close()
        self._channels.clear()
        await self._server.stop(0)

    # -- async: on the caller's loop -------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self._server.start()
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        for channel in self._channels:
            if isinstance(channel, grpc.Channel):
                channel.close()
        await self._shutdown()
