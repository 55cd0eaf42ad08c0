"""Faults: the failures a resilient client must survive, on demand and reproducible."""

from __future__ import annotations
