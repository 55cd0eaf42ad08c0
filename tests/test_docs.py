"""The user docs say what the code does: README.md, docs/*.md and CONTRIBUTING.md.

- Python and TOML examples are regions of tests under tests/examples/ (which run), never copies;
- YAML examples are emulator.yaml files that `emulate check` accepts against protos/, or stub
  files (`<!-- stub-file: NAME -->`) that it loads;
- `emulate` commands in shell examples parse, and those that can run here do;
- the generated tables (config keys, variables, flags) are what `make docs` makes now;
- the layout table of docs/architecture.md names every module of emulator/ and nothing else;
- relative links and their anchors resolve.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import BEHAVIORS, PROTOS, ROOT

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "CONTRIBUTING.md"]
MARKER = re.compile(r"^\s*<!-- (?P<kind>[\w-]+): (?P<value>.*?) -->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen_docs = _generator()


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    text: str  # dedented
    marker: tuple[str, str] | None  # (kind, value) of a `<!-- kind: value -->` line just above

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, start = fence.group("indent"), i
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"),
            None,
        )
        assert end is not None, f"{page.relative_to(ROOT)}:{i + 1}: a code block is not closed"
        body = [line.removeprefix(indent) for line in lines[start + 1 : end]]
        above = MARKER.match(lines[start - 1]) if start else None
        marker = (above.group("kind"), above.group("value")) if above else None
        yield Block(page, start + 1, fence.group("lang"), "\n".join(body), marker)
        i = end + 1


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def _of(*langs: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang in langs]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


def region(path: Path, name: str) -> str:
    """The lines between `# region NAME` and `# endregion` in `path`, dedented."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == f"# region {name}"]
    assert len(starts) == 1, f"{path.relative_to(ROOT)}: expected one `# region {name}`"
    end = next(
        (j for j in range(starts[0] + 1, len(lines)) if lines[j].strip() == "# endregion"), None
    )
    assert end is not None, f"{path.relative_to(ROOT)}: `# region {name}` has no `# endregion`"
    return textwrap.dedent("\n".join(lines[starts[0] + 1 : end]))


# ---- examples that are tests ----


@pytest.mark.parametrize("block", _of("python", "toml"), ids=_ids(_of("python", "toml")))
def test_code_examples_are_regions_of_tests(block: Block) -> None:
    assert block.marker is not None and block.marker[0] == "example", (
        f"{block.where}: a {block.lang} example must come from a test: put it in a file under "
        "tests/examples/ between `# region NAME` and `# endregion`, and mark the block with "
        "`<!-- example: tests/examples/FILE.py#NAME -->` on the line above it"
    )


EXAMPLES = [b for b in BLOCKS if b.marker and b.marker[0] == "example"]


@pytest.mark.parametrize("block", EXAMPLES, ids=_ids(EXAMPLES))
def test_examples_equal_their_region(block: Block) -> None:
    assert block.marker is not None
    target, _, name = block.marker[1].partition("#")
    path = ROOT / target
    assert path.is_file(), f"{block.where}: {target} does not exist"
    assert path.parent == ROOT / "tests" / "examples" and path.name.startswith("test_"), (
        f"{block.where}: {target} is not a test module under tests/examples/, so nothing runs it"
    )
    expected = region(path, name) if name else path.read_text(encoding="utf-8")
    assert textwrap.dedent(block.text).strip("\n") == expected.strip("\n"), (
        f"{block.where} differs from {block.marker[1]}: copy the region into the docs as it is"
    )


def test_the_region_helper() -> None:
    path = ROOT / "tests" / "examples" / "test_howto_pytest_ini.py"
    assert region(path, "pyproject").startswith("[tool.pytest.ini_options]\n")


# ---- emulator.yaml examples ----


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the docs assume: protos/, behaviors/, certs/ as `emulate certs`
    writes them, and certs/jwt-public.pem."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    root = tmp_path_factory.mktemp("project")
    (root / "protos").symlink_to(PROTOS, target_is_directory=True)
    (root / "behaviors").symlink_to(BEHAVIORS, target_is_directory=True)
    made = _emulate(["certs", "--out", "certs/", "--client", "ci-client"], root)
    assert made.returncode == 0, made.stderr
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (root / "certs" / "jwt-public.pem").write_bytes(public)
    (root / "stubs").mkdir()
    (root / "recordings").mkdir()  # what `emulate record` would have written
    for block in STUB_FILES:  # where the pages' commands look for them: stubs/NAME.yaml
        (root / "stubs" / f"{block.marker[1]}.yaml").write_text(block.text + "\n", "utf-8")  # type: ignore[index]
    return root


def _emulate(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JWT_SECRET": "a-test-secret-of-32-bytes-or-more!!"}
    return subprocess.run(
        [sys.executable, "-m", "emulator", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


STUB_FILES = [b for b in _of("yaml", "yml") if b.marker and b.marker[0] == "stub-file"]
CONFIGS = [b for b in _of("yaml", "yml") if b not in STUB_FILES]


@pytest.mark.parametrize("block", STUB_FILES, ids=_ids(STUB_FILES))
def test_stub_file_examples_load(block: Block, project: Path) -> None:
    """`<!-- stub-file: NAME -->` blocks are stub files (tests/examples/ serves them too)."""
    argv = ["check", "--proto", "protos/", "--stubs", f"stubs/{block.marker[1]}.yaml"]  # type: ignore[index]
    checked = _emulate(argv, project)
    assert checked.returncode == 0, f"{block.where}: emulate {shlex.join(argv)}:\n{checked.stderr}"


@pytest.mark.parametrize("block", CONFIGS, ids=_ids(CONFIGS))
def test_yaml_examples_are_valid_emulator_yaml(block: Block, project: Path) -> None:
    from emulator.config import load_config_file
    from emulator.errors import ConfigError

    path = project / f"emulator-{block.page.stem}-{block.line}.yaml"
    path.write_text(block.text + "\n", encoding="utf-8")
    try:
        config = load_config_file(path)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: not a valid emulator.yaml: {exc}")
    if block.marker == ("check", "config-only"):
        return
    # As `emulate check` would: contracts, behaviours, method patterns, certificates, keys.
    argv = ["check", "--config", path.name] + ([] if config.protos else ["--proto", "protos/"])
    checked = _emulate(argv, project)
    assert checked.returncode == 0, f"{block.where}: emulate {shlex.join(argv)}:\n{checked.stderr}"


# ---- shell examples ----


def _commands(block: Block) -> list[list[str]]:
    text = re.sub(r"\\\n\s*", " ", block.text)
    commands = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("$ ")
        if line.startswith("emulate "):
            commands.append(shlex.split(line, comments=True))
    return commands


SHELL = [b for b in _of("sh", "shell", "bash") if _commands(b)]


@pytest.mark.parametrize("block", SHELL, ids=_ids(SHELL))
def test_emulate_commands_in_shell_examples(block: Block, project: Path) -> None:
    parsers = gen_docs.parsers()
    for argv in _commands(block):
        command = f"emulate {argv[1]}" if f"emulate {argv[1]}" in parsers else "emulate"
        rest = argv[2:] if command != "emulate" else argv[1:]
        try:
            parsers[command].parse_args(rest)
        except SystemExit:
            pytest.fail(f"{block.where}: `{shlex.join(argv)}` does not parse (see stderr)")
        if command in ("emulate health", "emulate report", "emulate record", "emulate diff"):
            # Needs a server, a journal, an upstream or two versions of the contracts: parsing
            # is what it can promise (tests/test_diff.py runs docs/contracts.md's diff example).
            continue
        run = ["check", *rest] if command == "emulate" else argv[1:]  # serve → check
        if command == "emulate certs":
            run += ["--force"]  # the project already has certs/
        result = _emulate(run, project)
        assert result.returncode == 0, f"{block.where}: emulate {shlex.join(run)}:\n{result.stderr}"


# ---- generated parts ----


def test_generated_parts_are_up_to_date() -> None:
    for page in gen_docs.doc_files():
        text = page.read_text(encoding="utf-8")
        assert gen_docs.render(text, page.name) == text, (
            f"{page.relative_to(ROOT)} is out of date: run `make docs`"
        )


def test_every_subcommand_has_its_flags_in_the_cli_page() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in gen_docs.parsers():
        name = "flags-" + command.replace(" ", "-")
        assert f"<!-- BEGIN GENERATED: {name} " in page, f"docs/cli.md has no table for {command}"
        assert f"## `{command}`" in page, f"docs/cli.md has no section for {command}"


def test_every_config_key_is_in_the_reference() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section in gen_docs.sections():
        for key, _, _, text in section.rows:
            assert text, f"{key} has no help text"
            assert f"| `{key}` |" in page, f"docs/configuration.md does not list {key}"


def test_a_field_without_help_text_is_named() -> None:
    @dataclasses.dataclass
    class Undocumented:
        quiet: int = 0

    with pytest.raises(ValueError, match=r"Undocumented\.quiet has no help text"):
        list(gen_docs.sections(Undocumented))


def test_config_types_and_defaults_are_rendered_as_written_in_the_file() -> None:
    rows = {key: (kind, default) for s in gen_docs.sections() for key, kind, default, _ in s.rows}
    assert rows["server.grace_period"] == ("duration", "`5s`")
    assert rows["journal.max_bytes"] == ("size", "`64MiB`")
    assert rows["log_format"] == ("`text` or `json`", "`text`")
    assert rows["faults[].abort.code"] == ("string", "required")
    assert rows["server.max_connection_age"] == ("duration", "unset")
    assert rows["auth.tokens.<name>.scopes"] == ("list of strings", "`[]`")


# ---- the layout table ----


def _layout() -> dict[str, str]:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    table = page.split("\n## Package layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"^\| `(?P<name>[^`]+)` \| (?P<text>.*) \|$", line)
        if match:
            rows[match.group("name")] = match.group("text")
    return rows


def _entries(folder: Path) -> set[str]:
    """The modules (`x.py`) and packages (`x/`) directly in `folder`."""
    found = {p.name for p in folder.glob("*.py")}
    found |= {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return found


def test_the_layout_table_names_every_module_and_no_other() -> None:
    package = ROOT / "emulator"
    rows = _layout()
    missing = sorted(_entries(package) - set(rows))
    extra = sorted(set(rows) - _entries(package))
    assert not missing, f"docs/architecture.md: add rows for emulator/{missing}"
    assert not extra, f"docs/architecture.md names what emulator/ does not have: {extra}"
    for name, text in rows.items():
        if not name.endswith("/"):
            continue
        inside = _entries(package / name) - {"__init__.py"}
        named = set(re.findall(r"`(\w+\.py|\w+/)`", text)) - {"__init__.py"}
        assert inside <= named, f"docs/architecture.md, {name}: name {sorted(inside - named)}"
        assert named <= inside, f"docs/architecture.md, {name}: no {sorted(named - inside)} there"


# ---- links and what the pages say ----


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_relative_links_resolve() -> None:
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: link {target}"
            assert resolved.exists(), f"{where}: no such file"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{where}: no such heading"


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_user_docs_cite_no_design_notes() -> None:
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert "DESIGN.md" not in page.read_text(encoding="utf-8"), page.relative_to(ROOT)


def test_the_readme_stays_short() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", readme, re.M) == [
        "Why",
        "Install",
        "Quickstart",
        "Stubs without code",  # the stub format is the README's to show (issue 11)
        "Features",
    ]
    quickstart = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    assert len(quickstart.strip().splitlines()) <= 40  # a screen
    assert len(readme.splitlines()) <= 160
