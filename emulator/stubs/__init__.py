"""Declarative stubs: responses shaped in files, emulator.yaml or at run time, no Python needed.

`config` is their shape, `build` checks them against the contracts, `store` serves them per
method; `emulator.respond.stubs` answers the calls they match.
"""

from __future__ import annotations
