"""`Changes`: a count that moves whenever what picks a call's answer changes at run time.

A test's override (`emu.override`) and stubs added or removed (`emu.stubs`) change which
responder answers a method. The handler of each method keeps the responders it has to ask,
worked out once, and works them out again only when this count has moved: the next call sees
the change, and a call in between pays one comparison (see `emulator.runtime.routes`).
A leaf: it imports nothing, so the registry and the stub set below the responders share it.
"""

from __future__ import annotations

__all__ = ["Changes"]


class Changes:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def moved(self) -> None:
        """Call it after the change is in place: a reader that sees the new count sees it."""
        self.count += 1
