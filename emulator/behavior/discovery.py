"""Find `Behavior` classes in the files and folders given to `--behaviors`.

Each load runs the files as they are on disk now, as new modules (a snapshot built again, a
second `Emulator` in one test process): never what an earlier load left in `sys.modules` or a
`.pyc`, and the helper modules that load imported from the behaviours' own folders are imported
afresh too. The latest module of each file stays in `sys.modules` (dataclasses and pickle look
classes up there), for the last `KEPT_MODULES` files loaded.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import linecache
import os
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from emulator.behavior.base import Behavior
from emulator.contracts.compiler import shown_path
from emulator.errors import BehaviorError, Interrupted

__all__ = ["BehaviorSource", "at", "discover", "no_service", "where"]

BehaviorSource = str | os.PathLike[str] | ModuleType | type[Behavior] | Behavior

# A behaviour module sits in sys.modules while it runs (see _import): without this lock, another
# thread loading the same files would replace it, or forget the helpers it shares, halfway.
_IMPORT_LOCK = threading.RLock()
_PACKAGE = "emulator_behaviors"  # behaviour modules are named as if in it, by file
KEPT_MODULES = 256  # behaviour files whose latest module stays in sys.modules
_KEPT: OrderedDict[str, None] = OrderedDict()


def discover(sources: Sequence[BehaviorSource]) -> list[type[Behavior] | Behavior]:
    """Every behaviour class (or instance) found in `sources`, in a stable order. Files run
    afresh on every call: a file changed since an earlier load gives its new code."""
    with _IMPORT_LOCK:
        if any(isinstance(s, str | os.PathLike) for s in sources):
            # Once per call, not per file: behaviour files that share a helper share one copy.
            _forget_helpers()
        found: list[type[Behavior] | Behavior] = []
        for source in sources:
            if isinstance(source, Behavior) or (
                isinstance(source, type) and issubclass(source, Behavior)
            ):
                found.append(source)
            elif isinstance(source, ModuleType):
                found.extend(_classes(source))
            else:
                for file in _files(Path(source)):
                    found.extend(_classes(_import(file)))
        return found


def where(obj: type | Callable[..., Any]) -> str:
    """`file:line` of a class or function definition, for messages."""
    try:
        file = inspect.getsourcefile(obj) or "<unknown>"
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
    return at(file, line)


def at(file: str, line: int) -> str:
    """`file:line`, the file relative to the working directory when it is under it."""
    return f"{shown_path(Path(file))}:{line}"


def _files(path: Path) -> Iterable[Path]:
    if not path.exists():
        raise BehaviorError(f"--behaviors {path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".py":
            raise BehaviorError(f"--behaviors {path}: not a Python file (.py)")
        return [path]

    def unreadable(exc: OSError) -> None:
        # Skipping a folder would run without its behaviours, silently: refuse instead.
        raise BehaviorError(
            f"--behaviors {path}: cannot list the folder {exc.filename}: {exc.strerror}; "
            "make it readable or move it out of the behaviours"
        )

    found = []
    for folder, subfolders, names in os.walk(path, onerror=unreadable):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        # Private modules (_helpers.py) and tests beside behaviours are imported by them.
        found += [
            Path(folder, n) for n in names if n.endswith(".py") and not n.startswith(("_", "test_"))
        ]
    return sorted(found)


def _import(file: Path) -> ModuleType:
    """Run the file as it is on disk now, as a new module: never a copy a previous load left."""
    resolved = file.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = f"{_PACKAGE}.{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(
        name, resolved, loader=_FreshLoader(name, str(resolved))
    )
    if spec is None or spec.loader is None:
        raise BehaviorError(f"{shown_path(file)}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    linecache.checkcache(str(resolved))  # tracebacks and inspect show the new lines
    with _IMPORT_LOCK:  # (held by discover(): taken again for a caller of its own)
        # One module per file in sys.modules, the latest load's: dataclasses and pickling look
        # the module up there, while it runs and after.
        previous = sys.modules.get(name)
        sys.modules[name] = module
        if _PACKAGE not in sys.modules:  # pickle imports the parent of a class's module
            parent = ModuleType(_PACKAGE, "behaviour files, loaded by emulator")
            parent.__path__ = []
            sys.modules[_PACKAGE] = parent
        folders, helpers = _import_roots(resolved)
        sys.path[:0] = folders
        before = set(sys.modules)
        try:
            spec.loader.exec_module(module)
        except Interrupted:
            _restore(name, previous)
            raise  # the emulator was asked to stop: not the file's fault
        except BaseException as exc:
            _restore(name, previous)
            # sys.exit() or Ctrl-C in a behaviour file is a file that does not load, not a
            # request to end the emulator quietly with its status.
            raise BehaviorError(_import_failure(resolved, exc)) from None
        finally:
            for folder in folders:
                sys.path.remove(folder)
            _remember_helpers(set(sys.modules) - before, helpers)
        _keep(name)
        return module


def _keep(name: str) -> None:
    """Behaviour modules stay in sys.modules for pickle's sake, but not every one a long test
    session ever loaded: the least recently loaded go first."""
    _KEPT[name] = None
    _KEPT.move_to_end(name)
    while len(_KEPT) > KEPT_MODULES:
        oldest, _ = _KEPT.popitem(last=False)
        sys.modules.pop(oldest, None)


class _FreshLoader(importlib.machinery.SourceFileLoader):
    """Compiles the source as it is now. A cached .pyc is trusted when the file's mtime (in
    whole seconds) and size match: a file rewritten within the second would run its old code."""

    def get_code(self, fullname: str) -> CodeType:
        return self.source_to_code(self.get_data(self.path), self.path)


def _restore(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def _import_roots(file: Path) -> tuple[list[str], list[str]]:
    """What goes on sys.path while a behaviour file runs: its folder, so that it can import the
    modules beside it, and, inside a package, the folder above the package, so that
    `from behaviors.helpers import x` works whatever the current directory. Then where its
    helpers are: that folder, and the package."""
    folder = file.parent
    top = folder
    while (top / "__init__.py").is_file() and top.parent != top:
        top = top.parent
    if top == folder:
        return [str(folder)], [str(folder)]
    package = folder
    while package.parent != top:
        package = package.parent
    return [str(folder), str(top)], [str(folder), str(package)]


# Modules a behaviour file imported from its own folders (`_helpers.py`, `behaviors.helpers`):
# forgotten before the next load, so that it imports them afresh too.
_HELPERS: dict[str, ModuleType] = {}


def _remember_helpers(names: Iterable[str], folders: Sequence[str]) -> None:
    for name in names:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or file is None or name.partition(".")[0] == "emulator":
            continue
        path = os.path.abspath(file)
        if any(path.startswith(os.path.join(f, "")) for f in folders) and not _installed(path):
            _HELPERS[name] = module


def _installed(path: str) -> bool:
    """A package installed in an environment inside the behaviours' folder (a venv)."""
    parts = Path(path).parts
    return "site-packages" in parts or "dist-packages" in parts


def _forget_helpers() -> None:
    """Drop the helper modules earlier loads imported, unless something replaced them since."""
    with _IMPORT_LOCK:
        for name, module in list(_HELPERS.items()):
            if sys.modules.get(name) is module:
                del sys.modules[name]
        _HELPERS.clear()
        importlib.invalidate_caches()  # a helper file created since is found
        linecache.checkcache()


def _import_failure(file: Path, exc: BaseException) -> str:
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename == str(file):
        line = exc.lineno
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(file):
                line = frame.lineno
    location = f"{shown_path(file)}:{line}" if line else shown_path(file)
    if isinstance(exc, SyntaxError):
        detail = exc.msg or ""
    elif isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)
        detail = f"sys.exit({code}) while being imported; a behaviour file must not exit"
    elif isinstance(exc, KeyboardInterrupt):
        detail = "interrupted while being imported"
    else:
        detail = str(exc)
    return (
        f"{location}: behaviour file does not import: {type(exc).__name__}: {detail}\n"
        "fix the file (run it with `python FILE` to see the whole traceback) and start again"
    )


def _classes(module: ModuleType) -> list[type[Behavior]]:
    """The module's own behaviour classes; a class without `service` is a mistake unless its
    name starts with `_` (a base that others share)."""
    found = []
    for obj in vars(module).values():
        if not (
            isinstance(obj, type)
            and issubclass(obj, Behavior)
            and obj is not Behavior
            and obj.__module__ == module.__name__
        ):
            continue
        if obj.service:
            found.append(obj)
        elif not obj.__name__.startswith("_"):
            raise BehaviorError(no_service(obj))
    return found


def no_service(cls: type) -> str:
    return (
        f"{where(cls)}: class {cls.__qualname__} has no `service`: set "
        "`service = 'package.Service'` (the full service name it implements), or start the "
        "class name with `_` if it is only a base for other behaviours"
    )
