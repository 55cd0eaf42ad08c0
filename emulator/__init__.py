"""grpc-emulator: turn .proto contracts into running gRPC service emulators for tests."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emulator.behavior.base import Behavior
from emulator.errors import (
    BehaviorError,
    BehaviorFailedError,
    ConfigError,
    ContractError,
    EmulatorError,
    RpcAbort,
)
from emulator.headers import Headers
from emulator.metadata import MetadataError

if TYPE_CHECKING:
    from emulator.admin.client import EmulatorClient
    from emulator.config import Config
    from emulator.journal import CallList, CallRecord
    from emulator.runtime.context import CallContext
    from emulator.testing import Emulator

__all__ = [
    "Behavior",
    "BehaviorError",
    "BehaviorFailedError",
    "CallContext",
    "CallList",
    "CallRecord",
    "Config",
    "ConfigError",
    "ContractError",
    "Emulator",
    "EmulatorClient",
    "EmulatorError",
    "Headers",
    "MetadataError",
    "RpcAbort",
    "__version__",
]

__version__ = "0.1.0"

# Behaviour files import `emulator` for Behavior and RpcAbort; the server, its grpc and protobuf
# machinery load only when first used, which keeps `emulate` start-up short.
_LAZY = {
    "CallContext": "emulator.runtime.context",
    "CallList": "emulator.journal",
    "CallRecord": "emulator.journal",
    "Config": "emulator.config",
    "Emulator": "emulator.testing",
    "EmulatorClient": "emulator.admin.client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
