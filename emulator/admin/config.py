"""The `admin:` section of emulator.yaml: where the admin API listens and who may use it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SESSION_HEADER", "AdminConfig"]

SESSION_HEADER = "x-emulator-session"


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    """The admin API (`emulator.admin.v1.Admin`, and JSON over HTTP): stubs, faults, calls,
    verify, reset, clock, health and scenarios of a running emulator, per session."""

    enabled: bool = field(default=True, metadata={"help": "serve the admin API"})
    port: int | None = field(
        default=None,
        metadata={"help": "a port of its own for the gRPC admin API (unset: the emulator's port)"},
    )
    http_port: int | None = field(
        default=None,
        metadata={"help": "serve the admin API as JSON over HTTP on this port (0: a free one)"},
    )
    host: str = field(
        default="",
        metadata={"help": "address of the admin ports (unset: server.host)"},
    )
    token: str = field(
        default="",
        metadata={"help": "bearer token every admin call must send (`authorization: Bearer T`)"},
    )
    identities: tuple[str, ...] = field(
        default=(),
        metadata={"help": "client certificate identities (SAN or CN) allowed to use the admin API"},
    )
    allow_unauthenticated: bool = field(
        default=False,
        metadata={"help": "serve the admin API on a non-loopback address with no token or mTLS"},
    )
    session_header: str = field(
        default=SESSION_HEADER,
        metadata={"help": "the header that tags a call with its test's session"},
    )
