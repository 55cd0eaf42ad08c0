"""Declarative stubs: their shape, checks against the contracts, matching, and emu.stubs."""
