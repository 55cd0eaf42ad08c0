"""What a page of docs/ shows, checked against the code: each Python example is a region of a
test (`<!-- example: tests/examples/test_x.py#name -->` above it, `# region name` ... `# endregion`
in the test), and each YAML example is a config file `emulate check` accepts."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.conftest import PROTOS, ROOT, emulate

__all__ = ["check_page"]

_BLOCK = re.compile(
    r"(?:<!-- example: (?P<ref>\S+) -->\n)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S
)


def _region(ref: str) -> str:
    path, _, name = ref.partition("#")
    text = (ROOT / path).read_text()
    match = re.search(
        rf"^[ \t]*# region {re.escape(name)}\n(.*?)^[ \t]*# endregion", text, re.S | re.M
    )
    assert match, f"{path} has no region {name!r}"
    return textwrap.dedent(match.group(1))


def check_page(page: Path, tmp_path: Path) -> None:
    """Every example of `page` is current: Python ones match their test, YAML ones load."""
    text = page.read_text()
    seen = 0
    for i, block in enumerate(_BLOCK.finditer(text)):
        body, lang, ref = block["body"], block["lang"], block["ref"]
        if lang == "python":
            assert ref, f"{page.name}: a Python example without <!-- example: ... --> above it"
            assert body == _region(ref), f"{page.name}: the example of {ref} differs from the test"
        elif lang == "yaml":
            config = tmp_path / f"example-{i}.yaml"
            config.write_text(body)
            result = emulate("check", "--proto", str(PROTOS), "--config", str(config))
            assert result.returncode == 0, f"{page.name}, YAML example {i}:\n{result.stderr}"
        seen += 1
    assert seen, f"{page.name} has no examples"
