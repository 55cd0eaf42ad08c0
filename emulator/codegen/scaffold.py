"""The behaviour files `emulate scaffold` writes: one per service, every method stubbed.

An untouched stub answers what the emulator answers without it: None (the default response)
once the request stream is read, one None per request of a bidi stream, and for a server stream
as many Nones as a default stream has messages (`defaults.stream_messages`, 3 unless
configured). Editing one method gives that method logic and leaves the others as they were.
"""

from __future__ import annotations

from emulator.codegen.model import Method, PyType, Service, aliases, docstring, module_of
from emulator.codegen.typed import base_names, behaviors_module, import_line, signature_types
from emulator.contracts.model import RpcKind

__all__ = ["DEFAULT_STREAM_MESSAGES", "render_scaffold"]

DEFAULT_STREAM_MESSAGES = 3  # `defaults.stream_messages`' default (emulator.config)
_WIDTH = 99 - len("        # ")  # a stub's comment lines fit in 99 columns


def render_scaffold(service: Service, *, typed: bool, is_async: bool) -> str:
    """A behaviour file for `service`: a plain `Behavior` subclass, or with `typed` one of the
    typed bases `emulate generate` wrote, with annotations mypy --strict accepts."""
    kinds = {m.kind for m in service.methods}
    lines = [
        f'"""Behaviours for {service.full_name}.',
        "",
        f"Scaffolded by emulate scaffold from {service.file}. Each method answers the default",
        "response until you give it logic: return a message, a dict (JSON or proto field names)",
        "or None (the default); streams yield them. Delete a method to leave it wholly to the",
        "emulator (defaults, stubs, faults).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    names: dict[str, str] = {}
    if typed:
        modules = sorted({t.module for m in service.methods for t in (m.input, m.output)})
        names = aliases(modules)
        sync_base, async_base = base_names(service)
        base = async_base if is_async else sync_base
        iterator = "AsyncIterator" if is_async else "Iterator"
        if any(k.server_streaming or k.client_streaming for k in kinds):
            lines.append(f"from collections.abc import {iterator}")
        lines += ["from typing import TYPE_CHECKING, Any", ""]
        imports = [import_line(module, names[module]) for module in modules]
        # The bases sit beside the message module of the service's own file.
        imports.append(f"from {behaviors_module(module_of(service.file))} import {base}")
        lines += [*sorted(imports), ""]
        lines += ["if TYPE_CHECKING:", "    from emulator import CallContext", "", ""]
        lines.append(f"class {service.name}({base}):")
    else:
        lines += ["from emulator import Behavior", "", ""]
        lines.append(f"class {service.name}(Behavior):")
    lines += docstring(service.doc, "    ")
    if service.doc:
        lines.append("")
    if typed:
        lines.append(f'    # service = "{service.full_name}", set by the base')
    else:
        lines.append(f'    service = "{service.full_name}"')
    lines += [
        f"    # {name}: a Python keyword, so it cannot be a method here" for name in service.skipped
    ]
    for method in service.methods:
        lines += ["", *_method(method, names, typed=typed, is_async=is_async)]
    return "\n".join(lines) + "\n"


def _method(method: Method, names: dict[str, str], *, typed: bool, is_async: bool) -> list[str]:
    kind = method.kind
    first = "requests" if kind.client_streaming else "request"
    head = "async def" if is_async else "def"
    if typed:
        first, first_type, returns = signature_types(method, names, is_async=is_async)
        if kind.server_streaming and not is_async:
            returns = returns.replace("Iterable[", "Iterator[", 1)  # a generator: an Iterator
        signature = [
            f"    {head} {method.name}(",
            f"        self, {first}: {first_type}, ctx: CallContext",
            f"    ) -> {returns}:",
        ]
    else:
        signature = [f"    {head} {method.name}(self, {first}, ctx):"]
    return [
        *signature,
        *docstring(method.doc, "        "),
        *(f"        # {line}" for line in _about(method)),
        *_body(kind, is_async),
    ]


def _about(method: Method) -> list[str]:
    """What the method receives and may answer, for the comment above its body."""
    if method.kind.client_streaming:
        before = f"{method.kind.value}; requests: a stream of "
        receives = before + _shown(method.input, _WIDTH - len(before))
    else:
        before = f"{method.kind.value}; request: "
        receives = before + _shown(method.input, _WIDTH - len(before))
    verb = "yields" if method.kind.server_streaming else "returns"
    default = "a default message" if method.kind.server_streaming else "the default"
    after = f", a dict, or None ({default})"
    answer = f"{verb} {_shown(method.output, _WIDTH - len(verb) - 1 - len(after))}{after}"
    return [receives, answer]


def _shown(pytype: PyType, width: int) -> str:
    """`pkg.Type (field, field, ...)`, naming as many fields as fit in `width` characters."""
    room = width - len(pytype.full_name) - 3  # " (" and ")"
    shown: list[str] = []
    for i, name in enumerate(pytype.fields):
        last = i == len(pytype.fields) - 1
        if len(", ".join([*shown, name, *([] if last else ["..."])])) > room:
            shown.append("...")
            break
        shown.append(name)
    return f"{pytype.full_name} ({', '.join(shown) or 'no fields'})"


def _body(kind: RpcKind, is_async: bool) -> list[str]:
    loop = "async for" if is_async else "for"
    if kind is RpcKind.UNARY_UNARY:
        return ["        return None"]
    if kind is RpcKind.STREAM_UNARY:
        # The default of a client stream depends on every request: read them all first.
        return [f"        {loop} _ in requests:", "            pass", "        return None"]
    if kind is RpcKind.STREAM_STREAM:
        return [f"        {loop} _ in requests:", "            yield None  # the default answer"]
    return [
        f"        for _ in range({DEFAULT_STREAM_MESSAGES}):  # as many as a default stream "
        "(defaults.stream_messages)",
        "            yield None",
    ]
