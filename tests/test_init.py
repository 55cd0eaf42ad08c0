"""`emulate init [DIR]`: a project where `emulate check` and `pytest` pass at once, written
without overwriting anything unless `--force` says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.commands.init import files

ROOT = Path(__file__).resolve().parent.parent
PROJECT = [
    "README.md",
    "behaviors/greeter.py",
    "compose.yaml",
    "emulator.yaml",
    "protos/greeter/v1/greeter.proto",
    "stubs/greeter.yaml",
    "tests/test_greeter.py",
]


def written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def in_folder(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command of this venv run in `folder`, importing this worktree's emulator."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EMULATOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, *argv],
        check=False,  # the callers show the output when it failed
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_writes_a_project_where_check_and_pytest_pass(tmp_path: Path) -> None:
    project = tmp_path / "shop"  # a folder that does not exist yet
    done = in_folder(tmp_path, "-m", "emulator", "init", "shop")
    assert done.returncode == 0, done.stderr
    assert written(project) == PROJECT
    assert done.stdout.splitlines()[0] == "emulate init: wrote 7 files into shop:"
    assert "Next: cd shop && emulate check && pytest" in done.stdout
    assert "-tpl" not in done.stdout

    check = in_folder(project, "-m", "emulator", "check")  # emulator.yaml found, no flags
    assert check.returncode == 0, check.stderr
    summary = "ok: 1 service, 2 methods, 2 with behaviours, 2 stubs on 1 method"
    assert check.stdout.strip() == summary

    tests = in_folder(project, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout

    # The project's Python type-checks as strictly as a team's CI would check it (grpcio ships
    # no type stubs: such a CI installs types-grpcio or, as here, lets grpc's imports be Any).
    (project / "mypy.ini").write_text(
        f"[mypy]\nmypy_path = {ROOT}\n[mypy-emulator.*]\nfollow_imports = silent\n"
        "[mypy-grpc.*]\nignore_missing_imports = True\n"
    )
    typed = in_folder(project, "-m", "mypy", "--strict", "behaviors", "tests")
    assert typed.returncode == 0, typed.stdout + typed.stderr


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path)]) == 0
    behaviour = tmp_path / "behaviors" / "greeter.py"
    behaviour.write_text("# mine\n")
    capsys.readouterr()

    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"emulate init: error: 7 file(s) of the project are in {tmp_path} already; "
        "nothing was written:\n"
    )
    for path in PROJECT:
        assert f"  {tmp_path / path}\n" in err
    assert err.endswith("Move them away, init another folder, or pass --force to overwrite them.\n")
    assert behaviour.read_text() == "# mine\n"

    assert main(["init", str(tmp_path), "--force"]) == 0
    assert "(7 overwritten)" in capsys.readouterr().out
    assert behaviour.read_bytes() == files()["behaviors/greeter.py"]


def test_init_into_a_folder_with_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "README.md").write_text("# my project\n")

    assert main(["init", str(tmp_path)]) == 2  # one file in the way: none written
    err = capsys.readouterr().err
    assert f"1 file(s) of the project are in {tmp_path} already" in err
    assert f"  {tmp_path / 'README.md'}\n" in err
    assert written(tmp_path) == ["README.md", "notes.txt"]

    (tmp_path / "README.md").unlink()
    assert main(["init", str(tmp_path)]) == 0  # files of other names are no conflict
    assert written(tmp_path) == sorted([*PROJECT, "notes.txt"])
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_init_names_a_folder_or_file_in_the_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "emulator.yaml").mkdir()
    assert main(["init", str(tmp_path), "--force"]) == 2
    assert capsys.readouterr().err == (
        f"emulate init: error: {tmp_path / 'emulator.yaml'} is a folder where emulate init "
        "writes a file: move it away\n"
    )
    plain = tmp_path / "file"
    plain.write_text("")
    assert main(["init", str(plain)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_check_finds_emulator_yaml_only_when_nothing_names_the_contracts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EMULATOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2  # no emulator.yaml here: the error it always was
    assert "no contracts: pass --proto PATH" in capsys.readouterr().err

    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["check"]) == 0
    assert "2 stubs" in capsys.readouterr().out
    # Contracts named on the command line: served as named, emulator.yaml not read.
    assert main(["check", "--proto", str(ROOT / "protos")]) == 0
    out = capsys.readouterr().out
    assert out == "ok: 2 services, 9 methods, 0 with behaviours, 0 stubs\n"


def test_the_template_ships_in_the_package() -> None:
    """What a wheel installs (package data `commands/init_template/**/*`)."""
    assert sorted(files()) == PROJECT
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"commands/init_template/**/*"' in pyproject
