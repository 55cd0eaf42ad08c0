"""`emulate report`: a journal written by `--journal-out` as one self-contained HTML page.

`calls.py` reads the JSON lines, `stats.py` sums them up per method and compares two journals,
`charts.py` draws the charts (matplotlib, as inline SVG) and `page.py` puts the page together.
Only `emulate report` imports this package: matplotlib loads for it alone.
"""

from __future__ import annotations

from emulator.report.calls import Call, read_journal
from emulator.report.stats import Drift, MethodStats, compare, summarize

__all__ = ["Call", "Drift", "MethodStats", "compare", "read_journal", "summarize"]
