"""Fingerprints of contracts: sha256 of their canonical descriptors, overall and per part.

What counts is what protoc declares: names, numbers, types, labels, `json_name`, options (custom
ones too, such as `google.api.http`) and the order of declarations inside a file. What does not:

- comments and source locations (`source_code_info`): protoc writes them only when asked, and
  they change neither the wire, the JSON mapping nor what the emulator serves; a lock that broke
  on a reworded comment would teach people to re-lock without looking;
- the order of the files, the folder they sit in (names are relative to an import root), and the
  order of the `import` lines;
- unknown fields of a file (buf adds its image metadata to every file), so the same contracts
  as a folder, a `protoc --descriptor_set_out` set or a `buf build` image agree;
- the well-known types' files (`google/protobuf/*.proto`): they belong to the protobuf release
  (buf bundles newer copies than grpcio-tools), not to the contracts. Their messages still count
  in the methods that use them.

The overall fingerprint is over the files' (so a message no method uses counts too); a method's
is over its own descriptor and every message and enum it reaches from its request and response;
a service's over its descriptor and its methods'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

from emulator.contracts.compiler import WELL_KNOWN

__all__ = ["Fingerprints", "canonical_file", "fingerprints"]

_FIELD = descriptor_pb2.FieldDescriptorProto
_REFERENCES = frozenset({_FIELD.TYPE_MESSAGE, _FIELD.TYPE_ENUM, _FIELD.TYPE_GROUP})


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """Hex sha256 digests: of everything, of each file, service, method and type used."""

    fingerprint: str
    files: Mapping[str, str]
    services: Mapping[str, str]
    methods: Mapping[str, Mapping[str, str]]  # service → method → digest
    types: Mapping[str, str]  # messages and enums the methods use, by full name
    # method `pkg.Svc/Method` → the types it uses (not written: explains a change)
    uses: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        # Each part's length first, so that no two different lists of parts hash alike.
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def canonical_file(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """The file's known fields without comments, with its imports sorted, deterministically."""
    clean = descriptor_pb2.FileDescriptorProto()
    # Field by field, not CopyFrom + DiscardUnknownFields: that would also drop the custom
    # options (parsed as unknown fields of the options messages), which do count.
    for desc, value in file.ListFields():
        if desc.name == "source_code_info":
            continue
        if desc.is_repeated:
            getattr(clean, desc.name).extend(value)
        elif desc.message_type is not None:
            getattr(clean, desc.name).CopyFrom(value)
        else:
            setattr(clean, desc.name, value)
    imports = list(clean.dependency)
    order = sorted(range(len(imports)), key=lambda i: imports[i])
    moved = {old: new for new, old in enumerate(order)}
    public = sorted(moved[i] for i in clean.public_dependency)
    weak = sorted(moved[i] for i in clean.weak_dependency)
    clean.ClearField("dependency")
    clean.ClearField("public_dependency")
    clean.ClearField("weak_dependency")
    clean.dependency.extend(imports[i] for i in order)
    clean.public_dependency.extend(public)
    clean.weak_dependency.extend(weak)
    return clean.SerializeToString(deterministic=True)


def _types(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """Every message and enum by full name: its own bytes (nested types apart, each a type of
    its own) and the types its fields refer to."""
    found: dict[str, tuple[bytes, tuple[str, ...]]] = {}

    def message(proto: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}{proto.name}"
        own = descriptor_pb2.DescriptorProto()
        own.CopyFrom(proto)
        own.ClearField("nested_type")
        own.ClearField("enum_type")
        refs = [f.type_name.lstrip(".") for f in proto.field if f.type in _REFERENCES]
        found[name] = (b"message\0" + own.SerializeToString(deterministic=True), tuple(refs))
        for nested in proto.nested_type:
            message(nested, name + ".")
        for enum in proto.enum_type:
            found[f"{name}.{enum.name}"] = (
                b"enum\0" + enum.SerializeToString(deterministic=True),
                (),
            )

    for file in files:
        scope = f"{file.package}." if file.package else ""
        for proto in file.message_type:
            message(proto, scope)
        for enum in file.enum_type:
            found[scope + enum.name] = (b"enum\0" + enum.SerializeToString(deterministic=True), ())
    return found


def _reached(start: Iterable[str], types: Mapping[str, tuple[bytes, tuple[str, ...]]]) -> list[str]:
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in seen or name not in types:
            continue
        seen.add(name)
        pending.extend(types[name][1])
    return sorted(seen)


def fingerprints(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
    served: Iterable[str] | None = None,
) -> Fingerprints:
    """The fingerprints of `files` (the contracts and their imports), with the services named in
    `served` (default: every service they declare)."""
    everything = list(files)
    wanted = None if served is None else set(served)
    own = sorted((f for f in everything if not f.name.startswith(WELL_KNOWN)), key=lambda f: f.name)
    by_file = {f.name: _sha(f.name.encode(), canonical_file(f)) for f in own}
    overall = _sha(*(f"{name}\0{digest}".encode() for name, digest in by_file.items()))
    types = _types(everything)
    type_digests: dict[str, str] = {}
    services: dict[str, str] = {}
    methods: dict[str, dict[str, str]] = {}
    uses: dict[str, tuple[str, ...]] = {}
    for file in everything:
        scope = f"{file.package}." if file.package else ""
        for service in file.service:
            name = scope + service.name
            if (wanted is not None and name not in wanted) or name in services:
                continue
            digests: dict[str, str] = {}
            for method in service.method:
                used = _reached(
                    (method.input_type.lstrip("."), method.output_type.lstrip(".")), types
                )
                for type_name in used:
                    type_digests.setdefault(type_name, _sha(types[type_name][0]))
                parts = [f"{t}\0{type_digests[t]}".encode() for t in used]
                digests[method.name] = _sha(method.SerializeToString(deterministic=True), *parts)
                uses[f"{name}/{method.name}"] = tuple(used)
            bare = descriptor_pb2.ServiceDescriptorProto()
            bare.CopyFrom(service)
            bare.ClearField("method")  # (in the methods' digests, with the types they use)
            listed = [f"{m}\0{d}".encode() for m, d in digests.items()]
            services[name] = _sha(bare.SerializeToString(deterministic=True), *listed)
            methods[name] = digests
    return Fingerprints(
        fingerprint=overall,
        files=by_file,
        services=dict(sorted(services.items())),
        methods={name: dict(sorted(methods[name].items())) for name in sorted(methods)},
        types=dict(sorted(type_digests.items())),
        uses=uses,
    )
