"""`python -m emulator` is `emulate`."""

from __future__ import annotations

from emulator.cli import main

raise SystemExit(main())
