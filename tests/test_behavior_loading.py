"""Behaviour files run afresh on every load: a file changed on disk between two emulators (or two
snapshots of one) gives its new code, as do the helper modules it imports from its own folders."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.behavior.discovery import discover, where

PROTO = """
syntax = "proto3";
package loading.v1;
message Msg { string text = 1; }
service Echo { rpc Say(Msg) returns (Msg); }
"""

BEHAVIOR = """
from emulator import Behavior


class Echo(Behavior):
    service = "loading.v1.Echo"

    def Say(self, request, ctx):
        return {{"text": "{answer}"}}
"""


def _say(protos: Path, behaviors: Path) -> str:
    with Emulator(protos=protos, behaviors=behaviors) as emu:
        return str(emu.stub("loading.v1.Echo").Say({}).text)


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    folder = tmp_path / "protos"
    folder.mkdir()
    (folder / "echo.proto").write_text(PROTO)
    return folder


def test_a_file_rewritten_between_two_emulators_gives_its_new_answer(
    tmp_path: Path, protos: Path
) -> None:
    file = tmp_path / "echo.py"
    file.write_text(BEHAVIOR.format(answer="one"))
    assert _say(protos, file) == "one"
    # Same size and (most likely) the same second: what a cached .pyc cannot tell apart.
    file.write_text(BEHAVIOR.format(answer="two"))
    assert _say(protos, file) == "two"
    assert _say(protos, tmp_path / "echo.py") == "two"


def test_a_helper_beside_the_behaviour_is_imported_afresh_too(tmp_path: Path, protos: Path) -> None:
    folder = tmp_path / "behaviors"
    folder.mkdir()
    (folder / "_words.py").write_text('WORD = "first"\n')
    (folder / "echo.py").write_text(
        BEHAVIOR.format(answer="{_words.WORD}")
        .replace('{"text": "', '{"text": f"')
        .replace("from emulator import Behavior", "import _words\nfrom emulator import Behavior")
    )
    assert _say(protos, folder) == "first"
    (folder / "_words.py").write_text('WORD = "again"\n')
    assert _say(protos, folder) == "again"


def test_a_behaviour_package_imports_its_helpers_by_package_name_from_any_directory(
    tmp_path: Path, protos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "project" / "mybehaviors"
    (package / "shop").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "shop" / "__init__.py").write_text("")
    (package / "helpers.py").write_text('def answer():\n    return "from the package"\n')
    (package / "shop" / "echo.py").write_text(
        BEHAVIOR.format(answer="x")
        .replace('{"text": "x"}', '{"text": answer()}')
        .replace(
            "from emulator import Behavior",
            "from emulator import Behavior\nfrom mybehaviors.helpers import answer",
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the project: its folder is not on sys.path
    assert str(tmp_path / "project") not in sys.path
    assert _say(protos, package) == "from the package"
    (package / "helpers.py").write_text('def answer():\n    return "changed package"\n')
    assert _say(protos, package) == "changed package"
    assert str(tmp_path / "project") not in sys.path  # only while the files ran


def test_a_helper_the_test_imported_itself_is_left_alone(tmp_path: Path, protos: Path) -> None:
    """Only modules a behaviour load imported first are forgotten before the next load."""
    folder = tmp_path / "behaviors"
    folder.mkdir()
    (folder / "_kept_words.py").write_text('WORD = "mine"\n')
    (folder / "echo.py").write_text(
        BEHAVIOR.format(answer="x")
        .replace('{"text": "x"}', '{"text": _kept_words.WORD}')
        .replace(
            "from emulator import Behavior", "import _kept_words\nfrom emulator import Behavior"
        )
    )
    sys.path.insert(0, str(folder))
    try:
        import _kept_words  # type: ignore[import-not-found]

        assert _say(protos, folder) == "mine"
        assert _say(protos, folder) == "mine"
        assert sys.modules["_kept_words"] is _kept_words
    finally:
        sys.path.remove(str(folder))
        del sys.modules["_kept_words"]


def test_loading_a_file_many_times_keeps_one_module_of_it(tmp_path: Path) -> None:
    file = tmp_path / "echo.py"
    file.write_text(BEHAVIOR.format(answer="one"))
    before = {name for name in sys.modules if name.startswith("emulator_behaviors.")}
    classes = [discover([file])[0] for _ in range(5)]
    assert len({id(cls) for cls in classes}) == 5  # five fresh runs of the file
    after = {name for name in sys.modules if name.startswith("emulator_behaviors.")}
    assert len(after - before) == 1


def test_the_newest_load_shows_its_real_file_and_line_and_pickles(tmp_path: Path) -> None:
    file = tmp_path / "echo.py"
    file.write_text(
        textwrap.dedent(
            """
            import dataclasses
            from emulator import Behavior


            @dataclasses.dataclass
            class Reply:
                text: str


            class Echo(Behavior):
                service = "loading.v1.Echo"

                def Say(self, request, ctx):
                    raise ValueError("boom")
            """
        )
    )
    (first,) = discover([file])
    assert isinstance(first, type)
    assert where(first).endswith("echo.py:11")
    file.write_text("# a new first line\n" + file.read_text())
    (cls,) = discover([file])
    assert isinstance(cls, type)
    assert where(cls).endswith("echo.py:12")  # the new line, not the cached old one
    with pytest.raises(ValueError) as raised:
        cls().Say(None, None)  # type: ignore[attr-defined]
    frame = raised.traceback[-1]
    assert Path(str(frame.path)) == file.resolve()
    assert frame.lineno + 1 == 16  # pytest counts from 0
    assert "raise ValueError" in str(frame.statement)
    module = sys.modules[cls.__module__]
    assert pickle.loads(pickle.dumps(cls)) is cls
    reply = module.Reply("hi")
    assert pickle.loads(pickle.dumps(reply)) == reply
