"""Turn `--proto` inputs into one `FileDescriptorSet`, compiling in-process with grpc_tools' protoc.

Inputs are directories (every `.proto` under them; the directory is an import root), single
`.proto` files (their directory is an import root) and descriptor sets (`.pb`, `.binpb`, `.desc`).
Compiled sets are cached by content hash in memory and on disk, so a repeated start does not run
protoc again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from google.protobuf import descriptor_pb2

from emulator._bounded import BoundedCache
from emulator.errors import ContractError

__all__ = [
    "BUNDLED_FILES",
    "BUNDLED_INCLUDE",
    "DESCRIPTOR_SET_SUFFIXES",
    "WELL_KNOWN",
    "cache_dir",
    "compile_contracts",
    "compile_contracts_lazily",
    "run_protoc",
]

DESCRIPTOR_SET_SUFFIXES = frozenset({".pb", ".binpb", ".desc"})

# Where the well-known types' files sit: they belong to the protobuf release, not to contracts.
WELL_KNOWN = "google/protobuf/"

# Annotation files contracts import as they import the well-known types, shipped with the
# emulator (Apache-2.0, headers kept) so that validation rules compile with nothing to fetch:
# protovalidate's rules (v1.2.2, the version protovalidate 2.x evaluates) and googleapis'
# field_behavior. Only these two: an import root over all of googleapis-common-protos would
# make every google/api file resolve, and hide a missing -I for the user's own copy.
BUNDLED_INCLUDE = Path(__file__).parent / "include"
BUNDLED_FILES = ("buf/validate/validate.proto", "google/api/field_behavior.proto")

# One process-wide memory cache: in-process emulators in a test session start from it. Bounded:
# a session compiling many different contracts keeps the latest (the disk cache keeps the rest).
MEMORY_CACHE_ENTRIES = 64
MEMORY_CACHE_BYTES = 64 * 1024 * 1024  # of compiled descriptor sets
_memory_cache: BoundedCache[str, tuple[bytes, dict[str, str]]] = BoundedCache(
    MEMORY_CACHE_ENTRIES, max_bytes=MEMORY_CACHE_BYTES, size=lambda entry: len(entry[0])
)  # key -> (set, deps)


@dataclass(frozen=True, slots=True)
class _Sources:
    roots: tuple[Path, ...]  # import roots, in the order given
    files: tuple[tuple[Path, str], ...]  # (real path, name relative to its root)
    descriptor_sets: tuple[Path, ...]


def cache_dir() -> Path | None:
    """Where compiled contracts are kept between runs; `GRPC_EMULATOR_CACHE_DIR=off` disables it."""
    configured = os.environ.get("GRPC_EMULATOR_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grpc-emulator"


def compile_contracts(
    inputs: Sequence[str | os.PathLike[str]],
    import_paths: Sequence[str | os.PathLike[str]] = (),
) -> descriptor_pb2.FileDescriptorSet:
    """Compile and load every input into one descriptor set, files in dependency order."""
    return _merged(_sources(inputs, import_paths))


def compile_contracts_lazily(
    inputs: Sequence[str | os.PathLike[str]],
    import_paths: Sequence[str | os.PathLike[str]] = (),
) -> tuple[str, Callable[[], descriptor_pb2.FileDescriptorSet]]:
    """A digest of what the inputs compile to, and a function that gives the descriptor set.

    A caller that holds the contracts of that digest already (load_contracts, for the next
    emulator of a test session) parses nothing: parsing the set and serializing it again to
    know it were half of a warm in-process start. The digest is of protoc's bytes for .proto
    files alone, of the merged set otherwise: the same inputs give the same digest."""
    sources = _sources(inputs, import_paths)
    if sources.files and not sources.descriptor_sets:
        data, parsed = _compile_cached(sources)
        digest = hashlib.sha256(data).hexdigest()
        return digest, (lambda: parsed) if parsed is not None else functools.partial(_parsed, data)
    files = _merged(sources)
    return hashlib.sha256(files.SerializeToString(deterministic=True)).hexdigest(), lambda: files


def _sources(
    inputs: Sequence[str | os.PathLike[str]], import_paths: Sequence[str | os.PathLike[str]]
) -> _Sources:
    if not inputs:
        raise ContractError(
            "no contracts given: pass --proto with a directory, file or descriptor set"
        )
    return _collect(inputs, import_paths)


def _parsed(data: bytes) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(data)


def _merged(sources: _Sources) -> descriptor_pb2.FileDescriptorSet:
    merged = descriptor_pb2.FileDescriptorSet()
    seen: dict[str, tuple[descriptor_pb2.FileDescriptorProto, str]] = {}
    parts: list[tuple[descriptor_pb2.FileDescriptorSet, str]] = []
    if sources.files:
        data, parsed = _compile_cached(sources)
        parts.append((_parsed(data) if parsed is None else parsed, "the compiled .proto files"))
    for path in sources.descriptor_sets:
        parts.append((_read_descriptor_set(path), str(path)))
    if len(parts) == 1:
        return parts[0][0]  # nothing to merge (and copying every file costs start-up time)
    for fds, origin in parts:
        for file in fds.file:
            if file.name in seen:
                first = seen[file.name][0]
                # Well-known types differ between protoc releases (buf bundles newer ones than
                # grpc_tools): they declare the same types, so the first copy serves for both.
                # So do the bundled annotation files (buf's managed mode rewrites their options).
                wkt = file.name.startswith(WELL_KNOWN) or file.name in BUNDLED_FILES
                if not wkt and _content(first) != _content(file):
                    raise ContractError(
                        f"{file.name} is defined twice with different content, in "
                        f"{seen[file.name][1]} and in {origin}: keep one copy of each file"
                    )
                continue
            seen[file.name] = (file, origin)
            merged.file.append(file)
    return merged


def _content(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """What a file declares: without comments and locations (protoc writes them only when asked)
    and without unknown fields (buf adds its own image metadata to every file)."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    copy.ClearField("source_code_info")
    copy.DiscardUnknownFields()
    return copy.SerializeToString(deterministic=True)


def _collect(
    inputs: Sequence[str | os.PathLike[str]], import_paths: Sequence[str | os.PathLike[str]]
) -> _Sources:
    roots: list[Path] = []
    files: list[tuple[Path, str]] = []
    sets: list[Path] = []

    def add_root(root: Path) -> None:
        if root not in roots:
            roots.append(root)

    imports = [Path(raw).resolve() for raw in import_paths]
    for raw in inputs:
        path = Path(raw).resolve()
        if not path.exists():
            raise ContractError(f"--proto {raw}: no such file or directory")
        if path.is_dir():
            add_root(path)
            found = sorted(_find_protos(path, raw))
            if not found:
                raise ContractError(f"--proto {raw}: the directory holds no .proto files")
            files.extend((p, p.relative_to(path).as_posix()) for p in found)
        elif path.suffix in DESCRIPTOR_SET_SUFFIXES:
            _check_regular(path, f"--proto {raw}")
            sets.append(path)
        elif path.suffix == ".proto":
            _check_regular(path, f"--proto {raw}")
            # A file under an import path is known by its name there, as its importers know it.
            root = next((p for p in imports if path.is_relative_to(p)), path.parent)
            add_root(root)
            files.append((path, path.relative_to(root).as_posix()))
        else:
            raise ContractError(
                f"--proto {raw}: expected a directory, a .proto file or a descriptor set "
                f"({', '.join(sorted(DESCRIPTOR_SET_SUFFIXES))})"
            )
    for raw, path in zip(import_paths, imports, strict=True):
        if not path.is_dir():
            raise ContractError(f"import path {raw}: not a directory")
        add_root(path)
    unique = list(dict.fromkeys(files))
    return _Sources(tuple(roots), tuple(unique), tuple(sets))


def _find_protos(root: Path, raw: str | os.PathLike[str]) -> Iterator[Path]:
    """Every `.proto` file under `root`. A folder that cannot be listed or a `.proto` entry
    that is not a readable file is an error: skipping it would serve some services silently."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise ContractError(
                f"--proto {raw}: cannot list the folder {folder}: {exc.strerror}; "
                "make it readable or move it out of the contracts"
            ) from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)  # linked folders are not followed (they may loop)
            elif entry.name.endswith(".proto") and not entry.is_dir():
                _check_regular(path, f"--proto {raw}")
                yield path


def _check_regular(path: Path, flag: str) -> None:
    """A contract must be a regular file: reading a FIFO would wait forever."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            raise ContractError(
                f"{flag}: {path}: a broken symbolic link (to {os.readlink(path)}): fix or remove it"
            ) from None
        raise ContractError(f"{flag}: {path}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ContractError(
            f"{flag}: {path}: not a regular file (a FIFO, socket or device): give a file"
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContractError(
            f"{path}: cannot be read: {exc.strerror}; make it readable for this user"
        ) from None


def _wkt_include() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).parent / "_proto"


@functools.cache
def _protoc_version() -> str:
    from grpc_tools import grpc_version  # importlib.metadata costs ~25 ms of start-up

    return str(grpc_version.VERSION)


@functools.cache
def _bundled_digest() -> bytes:
    """The bundled files' content: a newer copy must not be served from an older compile."""
    digest = hashlib.sha256()
    for name in BUNDLED_FILES:
        digest.update(name.encode() + b"\0" + (BUNDLED_INCLUDE / name).read_bytes() + b"\0")
    return digest.digest()


def _cache_key(sources: _Sources) -> str:
    digest = hashlib.sha256()
    digest.update(_protoc_version().encode())
    digest.update(_bundled_digest())
    for root in sources.roots:
        digest.update(b"root\0" + str(root).encode() + b"\0")
    for path, name in sources.files:
        digest.update(b"file\0" + name.encode() + b"\0" + _read(path) + b"\0")
    return digest.hexdigest()


def _compile_cached(
    sources: _Sources,
) -> tuple[bytes, descriptor_pb2.FileDescriptorSet | None]:
    """The serialized descriptor set of the sources, from memory, the disk cache or protoc;
    and the set itself when it was parsed here already (a disk entry is, to be trusted), so
    that the caller does not parse it twice. Nobody else holds that set: the caller's own."""
    key = _cache_key(sources)
    cached = _memory_cache.get(key)
    # The key covers the inputs; imports found on the roots are checked on every hit.
    if cached is not None and _unchanged(cached[1]):
        return cached[0], None
    parsed = None
    data = _read_disk_cache(key)
    if data is not None:
        try:
            parsed = descriptor_pb2.FileDescriptorSet.FromString(data[0])
        except Exception:  # a damaged cache entry only costs a recompile
            data = None
    if data is None:
        compiled = _run_protoc(sources)
        data = (compiled, _dependencies(compiled, sources))
        _write_disk_cache(key, *data)
    _memory_cache[key] = data
    return data[0], parsed


def _unchanged(deps: dict[str, str]) -> bool:
    for path, sha in deps.items():
        try:
            if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha:
                return False
        except OSError:
            return False
    return True


def _dependencies(data: bytes, sources: _Sources) -> dict[str, str]:
    """Files outside the inputs that the compiled set came from (imports found on -I paths)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    given = {name for _, name in sources.files}
    deps = {}
    for file in fds.file:
        if file.name in given:
            continue
        for root in sources.roots:
            candidate = root / file.name
            if candidate.is_file():
                deps[str(candidate)] = hashlib.sha256(candidate.read_bytes()).hexdigest()
                break
    return deps


def _read_disk_cache(key: str) -> tuple[bytes, dict[str, str]] | None:
    directory = cache_dir()
    if directory is None:
        return None
    try:
        data = (directory / f"{key}.binpb").read_bytes()
        deps = json.loads((directory / f"{key}.deps.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(deps, dict) or not _unchanged(deps):
        return None
    return data, deps


def _write_disk_cache(key: str, data: bytes, deps: dict[str, str]) -> None:
    directory = cache_dir()
    if directory is None:
        return
    # A cache that cannot be written only costs a recompile next time: never fail start-up on it.
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        for suffix, content in ((".deps.json", json.dumps(deps).encode()), (".binpb", data)):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(tmp, directory / f"{key}{suffix}")


def run_protoc(args: Sequence[str]) -> tuple[int, str]:
    """grpc_tools' protoc, in-process: its exit status and what it wrote to stderr."""
    from grpc_tools import protoc

    with _captured_stderr() as captured:
        status: int = protoc.main(list(args))
        captured.seek(0)
        return status, captured.read().decode(errors="replace")


def _run_protoc(sources: _Sources) -> bytes:
    with tempfile.TemporaryDirectory(prefix="grpc-emulator-") as tmp:
        out = Path(tmp) / "contracts.binpb"
        args = [
            "protoc",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
        ]
        args += [f"-I{root}" for root in sources.roots]
        args.append(f"-I{_wkt_include()}")
        args.append(f"-I{BUNDLED_INCLUDE}")  # last: a user's own copy of these files wins
        args += [str(path) for path, _ in sources.files]
        status, diagnostics = run_protoc(args)
        if status != 0 or not out.exists():
            raise ContractError(_explain(diagnostics, sources))
        return out.read_bytes()


# File descriptor 2 belongs to the whole process: one capture at a time, or a second one saves
# the first one's file as "the original" and leaves stderr pointing at it once both are done.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[IO[bytes]]:
    """protoc writes its diagnostics from C++ straight to file descriptor 2: catch them there.

    grpc_tools offers no other way to get them; while one compile runs, other threads' writes to
    stderr land in the capture too, so the window is kept to the protoc call itself."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            yield capture
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_LOCATION = re.compile(r"^(?P<name>[^:\s]+\.proto)(?=:)", re.MULTILINE)
_NOT_FOUND = re.compile(r"^(?P<name>\S+\.proto): File not found\.$", re.MULTILINE)
_IMPORT = re.compile(
    r'^(?P<file>[^:\s]+\.proto):(?P<line>\d+):\d+: Import "(?P<name>[^"]+)" was not found',
    re.MULTILINE,
)


def _explain(output: str, sources: _Sources) -> str:
    """Name each file as the user knows it: protoc writes the files it was given by their disk
    path and the files it found through imports by their name under an import root."""
    known = {name: path for path, name in sources.files}
    known.update({str(path): path for path, _ in sources.files})

    def real(match: re.Match[str]) -> str:
        name = match.group("name")
        path = known.get(name)
        if path is None:
            path = next((r / name for r in sources.roots if (r / name).is_file()), None)
        return name if path is None else shown_path(path)

    lines = [line for line in output.strip().splitlines() if line.strip()]
    text = _LOCATION.sub(real, "\n".join(lines)) or "protoc failed without a message"
    hints = _missing_imports(text, sources)
    if not hints:
        return f"contracts do not compile:\n{text}\nfix the .proto files above and start again"
    # protoc's own lines first (the importer's line and column), then what to do about each.
    return "contracts do not compile:\n" + "\n".join([text, *hints])


def _missing_imports(text: str, sources: _Sources) -> list[str]:
    """A line per import protoc found on no import root: the importer, the import and the
    directory to add (an import that was found but has errors of its own is shown above)."""
    missing = set(_NOT_FOUND.findall(text))
    roots = ", ".join(shown_path(root) for root in sources.roots)
    hints = []
    for match in _IMPORT.finditer(text):
        name = match.group("name")
        if name not in missing:
            continue
        where = f"{match.group('file')}:{match.group('line')}: imports {name}"
        holder = next(
            (up for root in sources.roots for up in root.parents if (up / name).is_file()), None
        )
        if holder is None:
            hints.append(
                f"{where}, which is in no import root ({roots} and the well-known types): "
                "add the directory that holds it with -I DIR (import_paths: in emulator.yaml)"
            )
        else:
            hints.append(
                f"{where}, which is in no import root but at {shown_path(holder / name)}: "
                f"add -I {shown_path(holder)} (import_paths: in emulator.yaml)"
            )
    return hints


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is under it, as users type paths."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def _read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet()
    data = _read(path)
    try:
        fds.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError by implementation
        raise ContractError(
            f"{path}: not a FileDescriptorSet ({exc}); write one with "
            "`protoc --descriptor_set_out=FILE --include_imports` or `buf build -o FILE`"
        ) from None
    if not fds.file:
        raise ContractError(f"{path}: the descriptor set holds no files")
    return fds
