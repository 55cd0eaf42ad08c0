"""The contracts as generated Python sees them: modules, type names, services and comments.

Read from the compiled `FileDescriptorProto`s (not the loaded pool) because only they carry
`source_code_info`, where the comments that become docstrings are.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from emulator.contracts.model import RpcKind
from emulator.errors import ContractError

__all__ = [
    "Method",
    "PyType",
    "Service",
    "TypeIndex",
    "aliases",
    "docstring",
    "module_of",
    "services_of",
    "snake",
]

# FileDescriptorProto field numbers, as source_code_info paths name them.
_SERVICE, _METHOD, _MESSAGE, _FIELD = 6, 2, 4, 2


def module_of(file_name: str) -> str:
    """The module protoc's `--python_out` writes for a .proto file (its naming: `-` → `_`)."""
    return file_name.removesuffix(".proto").replace("-", "_").replace("/", ".") + "_pb2"


@dataclass(frozen=True, slots=True)
class PyType:
    """A message type as Python names it: `module` (`acme.shop.v1.catalog_pb2`) and `path`
    inside it (`Product.Dimensions` for a nested message)."""

    full_name: str  # acme.shop.v1.Product
    module: str
    path: str
    fields: tuple[str, ...]  # its fields, for the scaffold's comments


class TypeIndex:
    """Every message type of the compiled files, by full name."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._types: dict[str, PyType] = {}
        for file in files:
            prefix = f"{file.package}." if file.package else ""
            self._add(module_of(file.name), prefix, "", file.message_type)

    def _add(
        self,
        module: str,
        prefix: str,
        outer: str,
        messages: Iterable[descriptor_pb2.DescriptorProto],
    ) -> None:
        for message in messages:
            path = f"{outer}{message.name}"
            fields = tuple(f.name for f in message.field)
            self._types[prefix + path] = PyType(prefix + path, module, path, fields)
            self._add(module, prefix, f"{path}.", message.nested_type)

    def __getitem__(self, type_name: str) -> PyType:
        found = self._types.get(type_name.lstrip("."))
        if found is None:  # the compiler would have refused such contracts first
            raise ContractError(f"message type {type_name} is in none of the compiled files")
        return found


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    kind: RpcKind
    input: PyType
    output: PyType
    doc: str


@dataclass(frozen=True, slots=True)
class Service:
    full_name: str  # acme.shop.v1.Catalog
    name: str  # Catalog
    file: str  # acme/shop/v1/catalog.proto
    methods: tuple[Method, ...]
    doc: str
    skipped: tuple[str, ...] = ()  # methods named as Python keywords: no `def` can have the name


def services_of(file: descriptor_pb2.FileDescriptorProto, types: TypeIndex) -> list[Service]:
    """The services `file` declares, in the file's order, with their comments."""
    comments = _comments(file)
    prefix = f"{file.package}." if file.package else ""
    found = []
    for s, service in enumerate(file.service):
        methods = []
        skipped = []
        for m, method in enumerate(service.method):
            # A keyword cannot be a `def` name: such a method is left out (and said so in a
            # comment) rather than written as code that does not compile.
            if keyword.iskeyword(method.name):
                skipped.append(method.name)
                continue
            methods.append(
                Method(
                    name=method.name,
                    kind=RpcKind.of(method),
                    input=types[method.input_type],
                    output=types[method.output_type],
                    doc=comments.get((_SERVICE, s, _METHOD, m), ""),
                )
            )
        found.append(
            Service(
                full_name=prefix + service.name,
                name=service.name,
                file=file.name,
                methods=tuple(methods),
                doc=comments.get((_SERVICE, s), ""),
                skipped=tuple(skipped),
            )
        )
    return found


def _comments(file: descriptor_pb2.FileDescriptorProto) -> Mapping[tuple[int, ...], str]:
    """Each commented element's comment (leading, else trailing), by its source path. A set
    compiled without source info (a descriptor set written without it) has none."""
    found = {}
    for location in file.source_code_info.location:
        text = location.leading_comments or location.trailing_comments
        if text.strip():
            found[tuple(location.path)] = _clean(text)
    return found


def _clean(text: str) -> str:
    """protoc keeps the space after `//` and the line breaks: drop the one and trailing blanks."""
    lines = [line.removeprefix(" ").rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def docstring(text: str, indent: str) -> list[str]:
    """`text` as the lines of a docstring at `indent`, escaped so any comment stays one string."""
    if not text:
        return []
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{_closing(lines[0])}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _closing(line: str) -> str:
    # A docstring ending in a quote would close early: `"a "b""""` is a syntax error.
    return line + " " if line.endswith('"') else line


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """`OrderHistory` → `order_history`: a service's file name in `behaviors/`."""
    return _CAMEL.sub("_", name).lower()


def aliases(modules: Sequence[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """A short, unique name for each module to import: its last part (`catalog_pb2`), or the
    whole dotted path with `_` when two modules share a last part."""
    last = [m.rpartition(".")[2] for m in modules]
    reserved = set(taken)
    out = {}
    for module, short in zip(modules, last, strict=True):
        clash = last.count(short) > 1 or short in reserved
        out[module] = module.replace(".", "_") if clash else short
    return out
