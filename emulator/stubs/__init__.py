"""Declarative stubs: responses shaped in files, emulator.yaml or at run time, no Python."""

from __future__ import annotations
