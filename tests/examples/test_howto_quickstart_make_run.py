"""README, Quickstart: `make run`, then the grpcurl commands it shows, as they are written.

`make run` is `emulate --proto protos/ --behaviors behaviors/ --port 50051`; here on port 0, so
the README's `127.0.0.1:50051` becomes the real target.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, EmulateProcess

README_PORT = "127.0.0.1:50051"


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]


def _banner() -> list[str]:
    """The lines the README shows after `$ make run`."""
    block = _quickstart().split("$ make run\n", 1)[1]
    return block.split("\n```", 1)[0].splitlines()


def _grpcurl_commands() -> list[list[str]]:
    """Every `$ .venv/bin/grpcurl ...` command of the Quickstart, continuation lines joined."""
    text = _quickstart().replace("\\\n", " ")
    return [shlex.split(m) for m in re.findall(r"^\$ (\.venv/bin/grpcurl .*)$", text, re.M)]


def test_make_run_then_grpcurl() -> None:
    commands = _grpcurl_commands()
    assert len(commands) == 2, commands  # reflection, then the contract from protos/
    assert any("-proto" in command for command in commands)
    assert _banner()[0] == f"emulator listening on {README_PORT}"
    with EmulateProcess("--proto", "protos/", "--behaviors", "behaviors/", cwd=ROOT) as proc:
        # $ make run
        assert proc.header.splitlines() == [
            line.replace(README_PORT, proc.target) for line in _banner()
        ]
        results = []
        for command in commands:
            # .venv/bin/grpcurl is the grpcurl of this environment's venv
            grpcurl = Path(sys.executable).parent / "grpcurl"
            args = [str(grpcurl), *(a.replace(README_PORT, proc.target) for a in command[1:])]
            results.append(
                subprocess.run(
                    args, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
                )
            )
        code, _, err = proc.stop()
    for result in results:
        assert result.returncode == 0, result.stderr
        product = json.loads(result.stdout)
        # { "productId": "p1", "sku": "SKU-...", "name": "...", "price": {...}, ... }
        assert product["productId"] == "p1"
        assert product["sku"].startswith("SKU-")
        assert product["name"]
        assert product["price"]["currencyCode"]
        assert "Traceback" not in result.stderr
    assert results[0].stdout == results[1].stdout  # reflection and the .proto agree
    assert code == 0, err
