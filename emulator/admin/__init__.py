"""The admin API: the control plane over gRPC (`emulator.admin.v1.Admin`) and JSON over HTTP,
and `EmulatorClient`, the in-process test API over it.

Nothing here is imported until used: an emulator with the admin API off pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.admin.client import EmulatorClient

__all__ = ["EmulatorClient"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorClient":
        from emulator.admin.client import EmulatorClient

        return EmulatorClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
