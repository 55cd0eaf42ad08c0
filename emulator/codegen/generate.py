"""Everything `emulate generate` writes for a set of contracts, as text by relative path.

Message modules come from grpc_tools' protoc (`--python_out`, `--pyi_out`) run over the
descriptor set the emulator compiled, so imports resolve exactly as they do when serving
(the same roots, the bundled validation files, descriptor-set inputs too). Typed behaviour
bases come from `typed.py`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from google.protobuf import descriptor_pb2

from emulator.codegen.model import Service, TypeIndex, module_of, services_of
from emulator.codegen.output import MARK
from emulator.codegen.typed import HEADER, behaviors_module, render_bases
from emulator.contracts.compiler import WELL_KNOWN, run_protoc
from emulator.errors import ContractError

__all__ = ["Generated", "generate", "module_path"]

# `google` is a namespace package that protobuf and googleapis-common-protos share: an
# `__init__.py` in the output would hide theirs (google.protobuf) behind the generated folder.
_NAMESPACES = frozenset({"google"})

# protoc's .pyi stubs do not pass `mypy --strict` themselves (a bare `Mapping`, module-level
# `ClassVar`s for extensions, an `_ExtensionDict` they never import): every project importing
# them would see those errors, in files it cannot fix. mypy still reads their types.
_STUB_CHECKS = "# mypy: ignore-errors"


class Generated:
    """The files of one generation and the services they declare bases for."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.bases: dict[str, list[Service]] = {}  # behaviours module path → its services
        self.message_modules = 0


def module_path(module: str, suffix: str = ".py") -> str:
    return module.replace(".", "/") + suffix


def generate(files: Sequence[descriptor_pb2.FileDescriptorProto]) -> Generated:
    """Message modules and stubs for every file but the well-known types (protobuf ships
    those), and a typed bases module for every file that declares a service."""
    out = Generated()
    wanted = [f for f in files if not f.name.startswith(WELL_KNOWN)]
    if not wanted:
        raise ContractError("the contracts hold only well-known types: nothing to generate")
    for name, text in sorted(_protoc(files, [f.name for f in wanted]).items()):
        header = HEADER.format(source=_source_of(name, text))
        if name.endswith(".pyi"):
            header += f"\n{_STUB_CHECKS}"
        out.files[name] = f"{header}\n{text}"
        out.message_modules += name.endswith(".py")
    types = TypeIndex(files)
    for file in wanted:
        services = services_of(file, types)
        if not services:
            continue
        path = module_path(behaviors_module(module_of(file.name)))
        out.files[path] = render_bases(file.name, module_of(file.name), services)
        out.bases[path] = services
    for package in sorted(_packages(out.files)):
        out.files[f"{package}/__init__.py"] = f"{MARK}; do not edit\n"
    return out


def _protoc(
    files: Sequence[descriptor_pb2.FileDescriptorProto], names: Sequence[str]
) -> dict[str, str]:
    """protoc's Python output for `names`, compiled from the set itself (`--descriptor_set_in`):
    nothing is looked up on disk again."""
    fds = descriptor_pb2.FileDescriptorSet(file=files)
    with tempfile.TemporaryDirectory(prefix="emulate-generate-") as tmp:
        root = Path(tmp)
        (root / "set.binpb").write_bytes(fds.SerializeToString(deterministic=True))
        target = root / "out"
        target.mkdir()
        args = [
            "protoc",
            f"--descriptor_set_in={root / 'set.binpb'}",
            f"--python_out={target}",
            f"--pyi_out={target}",
            *names,
        ]
        status, diagnostics = run_protoc(args)
        if status != 0:
            raise ContractError(
                "protoc could not write Python for the contracts:\n"
                + (diagnostics.strip() or "protoc failed without a message")
            )
        return {
            p.relative_to(target).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(target.rglob("*"))
            if p.is_file()
        }


def _source_of(name: str, text: str) -> str:
    """The .proto file a protoc output came from (its `# source:` line, else its own name)."""
    for line in text.splitlines()[:8]:
        if line.startswith("# source: "):
            return line.removeprefix("# source: ").strip()
    return name.removesuffix(".pyi").removesuffix(".py").removesuffix("_pb2") + ".proto"


def _packages(paths: Sequence[str] | dict[str, str]) -> set[str]:
    """Every folder that holds a generated module, and the folders above it, outside the
    shared namespaces: each gets an `__init__.py`, so mypy and Python agree on module names."""
    found = set()
    for path in paths:
        parents = PurePosixPath(path).parents
        for parent in parents:
            if str(parent) == "." or parent.parts[0] in _NAMESPACES:
                continue
            found.add(parent.as_posix())
    return found
