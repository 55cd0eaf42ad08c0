"""Find `Behavior` classes in the files and folders given to `--behaviors`."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from emulator.behavior.base import Behavior
from emulator.errors import BehaviorError, Interrupted

__all__ = ["BehaviorSource", "at", "discover", "no_service", "where"]

BehaviorSource = str | os.PathLike[str] | ModuleType | type[Behavior] | Behavior

# A behaviour module sits in sys.modules while it runs (see _import): without this lock, another
# thread loading the same file would take the half-run module and find no classes in it.
_IMPORT_LOCK = threading.RLock()


def discover(sources: Sequence[BehaviorSource]) -> list[type[Behavior] | Behavior]:
    """Every behaviour class (or instance) found in `sources`, in a stable order."""
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
    return f"{_shown(Path(file))}:{line}"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
    resolved = file.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = f"emulator_behaviors.{resolved.stem}_{digest}"
    with _IMPORT_LOCK:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise BehaviorError(f"{_shown(file)}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
        # Let a behaviour import helper modules that sit next to it.
        sys.path.insert(0, str(resolved.parent))
        try:
            spec.loader.exec_module(module)
        except Interrupted:
            del sys.modules[name]
            raise  # the emulator was asked to stop: not the file's fault
        except BaseException as exc:
            del sys.modules[name]
            # sys.exit() or Ctrl-C in a behaviour file is a file that does not load, not a
            # request to end the emulator quietly with its status.
            raise BehaviorError(_import_failure(resolved, exc)) from None
        finally:
            sys.path.remove(str(resolved.parent))
        return module


def _import_failure(file: Path, exc: BaseException) -> str:
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename == str(file):
        line = exc.lineno
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(file):
                line = frame.lineno
    location = f"{_shown(file)}:{line}" if line else _shown(file)
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
