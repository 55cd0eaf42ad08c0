"""Every exception the emulator raises, in one place.

    EmulatorError                 a setup problem: the emulator refuses to start
    ├── ContractError             a .proto file or descriptor set that does not compile or load
    ├── ContractsChanged          the contracts differ from the lock file (`locked:`): exit 1
    ├── BehaviorError             a behaviour file, class or method that does not fit the contracts
    └── ConfigError               emulator.yaml, flags or keyword arguments that do not validate
    RpcAbort                      raised by a behaviour to end one call with a gRPC status
    Interrupted (BaseException)   SIGINT or SIGTERM arrived while `emulate` was starting
    BehaviorFailedError           a behaviour raised during a test; raised in the test at exit

Setup errors carry a message that already names the file, line or key and says what to do; the CLI
prints it and exits 2. `RpcAbort` is not an `EmulatorError`: it is the expected way for a behaviour
to fail a call, and it never stops the server. `BehaviorFailedError` is not one either: the
server answered the call (UNKNOWN or INTERNAL) and kept serving, and `Emulator` reports the
failure to the test so that a bug in a behaviour does not pass unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

__all__ = [
    "BehaviorError",
    "BehaviorFailedError",
    "ConfigError",
    "ContractError",
    "ContractsChanged",
    "EmulatorError",
    "Interrupted",
    "NotFoundError",
    "RpcAbort",
]


class EmulatorError(Exception):
    """The emulator cannot start as configured; the message says where and what to do."""


class NotFoundError(EmulatorError):
    """A name given at run time (a method, service, stub or fault) is not there."""


class ContractError(EmulatorError):
    """A contract (.proto file or descriptor set) does not compile or load."""


class ContractsChanged(EmulatorError):
    """The contracts differ from the lock file (`locked:`): the message names what changed.

    Apart from the other setup errors because `emulate` exits 1 for it, as a check that found
    something: 2 stays "could not check" (a lock file that is missing or malformed)."""


class BehaviorError(EmulatorError):
    """A behaviour file, class or method does not fit the contracts."""


class ConfigError(EmulatorError):
    """emulator.yaml, a command-line flag or a keyword argument is invalid.

    `key` (dotted, as in emulator.yaml) and `problem` are kept apart from the full message, so
    a caller can say where the value came from without taking the message apart.
    """

    def __init__(self, message: str, *, key: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.problem = problem if problem is not None else message


class RpcAbort(Exception):
    """End the current call with a gRPC status.

    `details` are protobuf messages (for example `google.rpc.error_details_pb2.BadRequest`); they
    travel as `grpc-status-details-bin` and decode with `grpc_status.rpc_status.from_call`.

        raise RpcAbort(grpc.StatusCode.NOT_FOUND, "no such order", details=[ResourceInfo(...)])
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str = "",
        *,
        details: Sequence[Message] = (),
        trailers: Mapping[str, str | bytes] | None = None,
    ) -> None:
        if getattr(code, "name", None) == "OK":
            raise ValueError("RpcAbort ends a call with an error code; return normally for OK")
        from emulator.metadata import checked

        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)
        for detail in self.details:
            if not hasattr(detail, "SerializeToString"):
                raise TypeError(
                    f"RpcAbort details must be protobuf messages, not {type(detail).__name__}"
                )
        # Checked now, inside the behaviour that raises it: grpc would only fail once the status
        # is on its way, and the client would see INTERNAL "Invalid metadata" instead.
        self.trailers = dict(checked(trailers or {}, "RpcAbort trailers"))

    def __repr__(self) -> str:
        return f"RpcAbort({self.code!r}, {self.message!r})"


class BehaviorFailedError(Exception):
    """Behaviours raised (or returned the wrong type) while a test ran; the first exception is
    the `__cause__`, and `failures` holds every (method, exception)."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = tuple(failures)
        lines = [
            f"{len(self.failures)} call(s) failed because a behaviour raised "
            "(the callers got UNKNOWN or INTERNAL):"
        ]
        lines.extend(f"  {method}: {_describe(exc)}" for method, exc in self.failures[:5])
        if len(self.failures) > 5:
            lines.append(f"  ... and {len(self.failures) - 5} more")
        lines.append(
            "(if the test means it, pass raise_behavior_errors=False to Emulator(...) or "
            "@pytest.mark.emulator(...))"
        )
        super().__init__("\n".join(lines))


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose __str__ fails still gets reported
        return type(exc).__name__


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while `emulate` was still starting (compiling, importing)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
