"""Who may use the admin API.

The admin API can change what every test sees, so it is guarded on its own, whatever the
emulated services' security: on a loopback address it may be open; anywhere else it needs
`admin.token` (a bearer token) or mutual TLS with a client identity in `admin.identities`, or
the emulator refuses to start, unless `admin.allow_unauthenticated: true` says the network is
trusted (a warning is logged). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from emulator.admin.operations import AdminError
from emulator.call import first_value
from emulator.config import Config
from emulator.errors import ConfigError
from emulator.security.setup import loopback

__all__ = ["AdminGuard", "admin_host", "check_exposure"]

log = logging.getLogger("emulator")


def admin_host(config: Config) -> str:
    """Where the admin API's own ports (admin.port, admin.http_port) listen."""
    return config.admin.host or config.server.host


def _hosts(config: Config) -> list[str]:
    admin = config.admin
    hosts = [config.server.host] if admin.port is None else []
    if admin.port is not None or admin.http_port is not None:
        hosts.append(admin_host(config))
    return hosts


def check_exposure(config: Config) -> None:
    """ConfigError when the admin API would be open to the network without saying so."""
    admin = config.admin
    if admin.identities and not config.tls.client_ca:
        raise ConfigError(
            "admin.identities: client identities need mutual TLS: set tls.cert, tls.key and "
            "tls.client_ca, or use admin.token"
        )
    exposed = [h for h in _hosts(config) if not loopback(h)]
    if not exposed or admin.token or admin.identities:
        return
    host = exposed[0]
    if not admin.allow_unauthenticated:
        raise ConfigError(
            f"admin: the admin API would listen on {host} with no authentication, and anyone "
            "who can reach it could change every test's answers: set admin.token "
            "(EMULATOR_ADMIN_TOKEN), admin.identities with mutual TLS, "
            "admin.allow_unauthenticated: true on a trusted network, or admin.enabled: false"
        )
    log.warning(
        "the admin API on %s accepts every caller (admin.allow_unauthenticated): use it only "
        "on a trusted network",
        host,
    )


class AdminGuard:
    """Admits an admin call by its bearer token or its client certificate."""

    def __init__(self, config: Config) -> None:
        self._token = config.admin.token.encode()
        self._identities = frozenset(config.admin.identities)

    @property
    def open(self) -> bool:
        return not self._token and not self._identities

    def admit(self, metadata: Sequence[tuple[str, Any]], identities: Sequence[str]) -> None:
        """Nothing when the caller may use the admin API; AdminError when not."""
        if self.open:
            return
        if self._token:
            sent = first_value(metadata, "authorization")
            if (
                isinstance(sent, str)
                and sent[:7].lower() == "bearer "
                and hmac.compare_digest(sent[7:].strip().encode(), self._token)
            ):
                return
        if self._identities and self._identities.intersection(identities):
            return
        if self._token:
            raise AdminError(
                grpc.StatusCode.UNAUTHENTICATED,
                "the admin API needs `authorization: Bearer <admin.token>`"
                + (" or an allowed client certificate" if self._identities else ""),
            )
        raise AdminError(
            grpc.StatusCode.PERMISSION_DENIED,
            "the admin API admits only the client identities in admin.identities",
        )
