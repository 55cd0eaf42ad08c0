"""What a failed test leaves for CI to keep (`pytest --emulator-artifacts DIR`): its calls, one
JSON object a line in the admin API's CallRecord form (as `--journal-out` writes them), and the
access log lines its calls wrote, each in a file named after the test."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_artifacts"]


def _name(nodeid: str) -> str:
    """`tests/test_x.py::test_y[a-1]` → `tests_test_x.py__test_y_a-1_`: a file name anywhere."""
    return re.sub(r"[^\w.-]", "_", nodeid)[:200]


def write_artifacts(folder: Path, nodeid: str, emu: Any, access: Sequence[str]) -> str:
    """Write the files; what was written (or why not), for the test's report."""
    from emulator.admin.convert import call_record
    from emulator.admin.operations import to_json

    try:
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / _name(nodeid)
        control = getattr(emu, "control", None)  # in-process; a client knows it from GetInfo
        header = (control or emu).session_header
        calls = base.with_name(base.name + ".calls.jsonl")
        with calls.open("w", encoding="utf-8") as out:
            for record in emu.calls():
                out.write(json.dumps(to_json(call_record(record, header))) + "\n")
        written = [str(calls)]
        if access:
            log = base.with_name(base.name + ".access.log")
            log.write_text("".join(line + "\n" for line in access), encoding="utf-8")
            written.append(str(log))
    except Exception as exc:  # never an INTERNALERROR that ends the whole session
        return f"(the artifacts could not be written: {type(exc).__name__}: {exc})"
    return "\n".join(written)
