"""`EmulatorClient`: the in-process `Emulator`'s test API over the admin service (being built)."""

from __future__ import annotations

__all__ = ["EmulatorClient"]


class EmulatorClient:
    """Placeholder until the client lands."""
