"""The `proxy:`, `record:` and `replay:` sections of emulator.yaml.

`proxy` forwards the calls no stub or behaviour answers to a real service; `record` says where
and how what it forwards is written as stubs (`emulate record` forwards every call and records
it); `replay` says how recordings loaded as stubs keep the timings they were recorded with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from emulator._schema import Duration

__all__ = ["KEY_VARIABLE", "ProxyConfig", "RecordConfig", "ReplayConfig"]

KEY_VARIABLE = "GRPC_EMULATOR_RECORD_KEY"  # (EMULATOR_* names are settings)


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """A real service behind the emulator: the calls nothing else answers go to it."""

    upstream: str = field(
        default="", metadata={"help": "HOST:PORT of the real service (unset: no proxy)"}
    )
    methods: tuple[str, ...] = field(
        default=("*",),
        metadata={"help": "method patterns forwarded (default: every method)"},
    )
    ca: str | None = field(
        default=None, metadata={"help": "CA that signs the upstream's certificate (PEM): TLS"}
    )
    cert: str | None = field(
        default=None, metadata={"help": "client certificate for the upstream (PEM): mTLS"}
    )
    key: str | None = field(default=None, metadata={"help": "client certificate's private key"})
    authority: str = field(
        default="", metadata={"help": "the name checked in the upstream's certificate"}
    )
    record: bool = field(
        default=False, metadata={"help": "write what it forwards as stubs under record.out"}
    )


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    """How forwarded calls are written: one stub file per method, under `out`."""

    out: str = field(default="recordings", metadata={"help": "the folder recordings go to"})
    ignore_fields: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "request fields left out of a recording's match (`*.request_id`): "
            "any value matches"
        },
    )
    pseudonymize: tuple[dict[str, Any], ...] = field(
        default=(),
        metadata={
            "help": "rules `{field: PATTERN, kind: email|id|name|phone|uuid|redact}`: values "
            "rewritten, keyed by the secret in record.key_env, before anything is written"
        },
    )
    key_env: str = field(
        default=KEY_VARIABLE,
        metadata={"help": "environment variable holding the pseudonymization key"},
    )
    max_age: Duration | None = field(
        default=None,
        metadata={"help": "recordings older than this are dropped when they load (`30d`)"},
    )


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """Recordings loaded as stubs: the waits they were recorded with."""

    timings: Literal["recorded", "none", "scaled"] = field(
        default="recorded",
        metadata={"help": "recorded waits as they were, none, or scaled by replay.scale"},
    )
    scale: float = field(
        default=1.0, metadata={"help": "with timings: scaled, the factor (0.5: twice as fast)"}
    )
