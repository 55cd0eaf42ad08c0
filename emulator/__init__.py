"""grpc-emulator: turn .proto contracts into running gRPC service emulators for tests."""

from __future__ import annotations

from emulator.behavior.base import Behavior
from emulator.config import Config
from emulator.errors import BehaviorError, ConfigError, ContractError, EmulatorError, RpcAbort
from emulator.runtime.context import CallContext
from emulator.testing import Emulator

__all__ = [
    "Behavior",
    "BehaviorError",
    "CallContext",
    "Config",
    "ConfigError",
    "ContractError",
    "Emulator",
    "EmulatorError",
    "RpcAbort",
    "__version__",
]

__version__ = "0.1.0"
