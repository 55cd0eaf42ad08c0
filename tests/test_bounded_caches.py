"""What the process keeps between emulators is bounded: contracts compiled and loaded, behaviour
modules, and every memoised function."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from emulator._bounded import BoundedCache, IdentityCache
from emulator.behavior import discovery
from emulator.contracts import LOADED_CONTRACTS, compiler, load_contracts
from emulator.contracts import _loaded as loaded_contracts

PACKAGE = Path(__file__).resolve().parent.parent / "emulator"


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now the most recent
    cache["c"] = 3
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    assert cache.get("b", 0) == 0


def test_values_are_bounded_by_their_bytes_too() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(10, max_bytes=10, size=len)
    cache["a"], cache["b"] = b"1234", b"5678"
    cache["c"] = b"90ab"  # 12 bytes: a goes
    assert "a" not in cache and cache.bytes == 8
    cache["huge"] = b"x" * 11  # heavier than the whole cache: not kept, nothing evicted for it
    assert "huge" not in cache and len(cache) == 2
    cache["b"] = b"1"  # replacing a value counts its new weight
    assert cache.bytes == 5
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
    with pytest.raises(ValueError, match="size"):
        BoundedCache(1, max_bytes=1)


def _protos(tmp_path: Path, count: int) -> list[Path]:
    folders = []
    for index in range(count):
        folder = tmp_path / f"protos{index}"
        folder.mkdir()
        (folder / "one.proto").write_text(
            f'syntax = "proto3";\npackage bounded.v{index};\nmessage M {{ string s = 1; }}\n'
            "service S { rpc Get(M) returns (M); }\n"
        )
        folders.append(folder)
    return folders


def test_loading_many_contracts_keeps_only_the_latest_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(loaded_contracts, BoundedCache)
    assert loaded_contracts.entries == LOADED_CONTRACTS
    assert isinstance(compiler._memory_cache, BoundedCache)
    monkeypatch.setattr(loaded_contracts, "entries", 3)
    monkeypatch.setattr(compiler._memory_cache, "entries", 4)
    folders = _protos(tmp_path, 6)
    for folder in folders:
        load_contracts([folder])
    assert len(loaded_contracts) <= 3
    assert len(compiler._memory_cache) <= 4
    # The latest are still shared: the same contracts object for the same files.
    assert load_contracts([folders[-1]]) is load_contracts([folders[-1]])


def test_behaviour_modules_kept_in_sys_modules_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "KEPT_MODULES", 3)
    names = []
    for index in range(5):
        file = tmp_path / f"b{index}.py"
        file.write_text("X = 1\n")
        discovery.discover([file])
        names.append(discovery._KEPT and next(reversed(discovery._KEPT)))
    kept = [name for name in names if name in sys.modules]
    assert kept == names[-3:]


def _memoised_functions_taking_arguments() -> list[str]:
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text(), str(file))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            takes = args.posonlyargs + args.args + args.kwonlyargs
            if not (takes or args.vararg or args.kwarg):
                continue  # one entry at most
            for decorator in node.decorator_list:
                if _unbounded(decorator):
                    found.append(f"{file.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    return found


def _unbounded(decorator: ast.expr) -> bool:
    """`@cache`, `@functools.cache`, `@lru_cache(maxsize=None)` and the like."""
    name = decorator.func if isinstance(decorator, ast.Call) else decorator
    called = name.attr if isinstance(name, ast.Attribute) else getattr(name, "id", "")
    if called == "cache":
        return True
    if called == "lru_cache" and isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "maxsize":
                return isinstance(keyword.value, ast.Constant) and keyword.value.value is None
        if decorator.args:
            first = decorator.args[0]
            return isinstance(first, ast.Constant) and first.value is None
    return False


def test_no_memoised_function_grows_without_bound() -> None:
    assert _memoised_functions_taking_arguments() == []


def test_an_identity_cache_finds_the_very_object_and_clears_when_full() -> None:
    class Thing:
        def __eq__(self, other: object) -> bool:  # equal by value: the cache must not care
            return isinstance(other, Thing)

        __hash__ = None  # type: ignore[assignment]  # unhashable, as some SDK objects are

    cache: IdentityCache[Thing, str] = IdentityCache(2)
    a, b = Thing(), Thing()
    assert cache.put(a, "a") == "a"
    assert cache.get(a) == "a" and cache.get(b) is None  # equal, but not the same object
    cache.put(b, "b")
    c = Thing()
    cache.put(c, "c")  # full: cleared, then kept
    assert len(cache) == 1 and cache.get(a) is None and cache.get(c) == "c"
