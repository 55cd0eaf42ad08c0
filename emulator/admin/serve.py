"""Wiring the admin API into a server: on the emulator's port, on its own (`admin.port`), and
as JSON over HTTP (`admin.http_port`).

`attach_admin(control)` runs before the server starts (so a refused configuration stops the
start-up with one message, before any port is bound); the ports of its own open once the
emulator's is bound, and are printed after it.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from emulator.admin.guard import AdminGuard, admin_host, check_exposure
from emulator.admin.operations import Operations
from emulator.admin.service import AdminHandler
from emulator.contracts.builtin import ADMIN_SERVICE, REFLECTION_SERVICES
from emulator.control import ControlPlane
from emulator.errors import ConfigError
from emulator.runtime.reflection import Catalogue, ReflectionHandler
from emulator.runtime.server import EmulatorServer, _address

__all__ = ["AdminServing", "attach_admin"]

log = logging.getLogger("emulator")


def attach_admin(control: ControlPlane) -> AdminServing | None:
    """Serve the admin API of `control`'s server as its config says (None: `admin.enabled`
    is false). ConfigError when the admin API would be open to the network unguarded."""
    server = control.server
    config = server.config
    if not config.admin.enabled:
        return None
    check_exposure(config)
    operations = Operations(control)
    serving = AdminServing(operations, AdminHandler(operations, AdminGuard(config)))
    if config.admin.port is None:
        server.extra_handlers.append(serving.handler)
    server.companions.append(serving)  # (its stop ends the preparer on any port)
    server.admin = serving
    return serving


class _Shown:
    """What reflection lists on the admin API's own port: the admin service (and reflection)."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self._catalogue: tuple[Any, Catalogue] | None = None

    @property
    def snapshot(self) -> _Shown:
        return self

    @property
    def catalogue(self) -> Catalogue:
        contracts = self._server.contracts  # the served snapshot's pool holds admin.proto
        if self._catalogue is None or self._catalogue[0] is not contracts:
            self._catalogue = (
                contracts,
                Catalogue(contracts, [ADMIN_SERVICE, *REFLECTION_SERVICES]),
            )
        return self._catalogue[1]


class AdminServing:
    """The admin API's ports of its own, if any; `port` and `http_port` once started."""

    def __init__(self, operations: Operations, handler: AdminHandler) -> None:
        self.operations = operations
        self.handler = handler
        self.port: int | None = None
        self.http_port: int | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: Any = None

    async def start(self, server: EmulatorServer) -> None:
        admin = server.config.admin
        host = admin_host(server.config)
        if admin.port is not None:
            own = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            own.add_generic_rpc_handlers((self.handler, ReflectionHandler(_Shown(server))))
            address = _address(host, admin.port)
            credentials = server.security.credentials
            try:
                if credentials is None:
                    port = int(own.add_insecure_port(address))
                else:
                    port = int(own.add_secure_port(address, credentials))
            except RuntimeError:
                port = 0
            if port == 0:
                raise ConfigError(
                    f"admin.port: cannot listen on {address}: the address is in use or not "
                    "local; choose another admin.port (0 picks a free one)"
                )
            await own.start()
            self._grpc, self.port = own, port
        if admin.http_port is not None:
            from emulator.admin.http import start_http

            self._http, self.http_port = await start_http(
                self.operations, self.handler, host, admin.http_port
            )

    async def stop(self) -> None:
        await self.operations.preparer.stop()
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._grpc is not None:
            await self._grpc.stop(0)
            self._grpc = None
