"""Bind behaviour methods to the RPCs they implement, refusing anything that does not fit."""

from __future__ import annotations

import difflib
import enum
import inspect
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from emulator.behavior.base import Behavior, is_placeholder
from emulator.behavior.discovery import BehaviorSource, at, discover, no_service, where
from emulator.changes import Changes
from emulator.contracts.generated import generated_class
from emulator.contracts.model import Contracts, MethodSpec
from emulator.errors import BehaviorError

__all__ = ["Implementation", "Registry", "Style", "bind", "check_parameters", "check_shape"]


class Style(enum.Enum):
    """How a behaviour method produces its answer; decides how the runtime drives it."""

    SYNC = "function"
    ASYNC = "async function"
    SYNC_GEN = "generator"
    ASYNC_GEN = "async generator"

    @classmethod
    def of(cls, func: Callable[..., Any]) -> Style:
        if inspect.isasyncgenfunction(func):
            return cls.ASYNC_GEN
        if inspect.isgeneratorfunction(func):
            return cls.SYNC_GEN
        if inspect.iscoroutinefunction(func):
            return cls.ASYNC
        return cls.SYNC

    @property
    def is_async(self) -> bool:
        return self in (Style.ASYNC, Style.ASYNC_GEN)

    @property
    def is_generator(self) -> bool:
        return self in (Style.SYNC_GEN, Style.ASYNC_GEN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Implementation:
    spec: MethodSpec
    func: Callable[..., Any]
    style: Style
    origin: str  # "Class.Method at file:line", for messages and logs
    # The classes of the user's generated modules for the method's types, when the process has
    # imported matching ones (`emulator.contracts.generated`): requests reach the behaviour as
    # `request_class` and a `response_class` message is sent as it is. Looked up once, here,
    # so a call pays nothing for them.
    request_class: type[Message] = field(init=False)
    response_class: type[Message] | None = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        object.__setattr__(
            self, "request_class", generated_class(spec.input_class) or spec.input_class
        )
        object.__setattr__(self, "response_class", generated_class(spec.output_class))

    def raised_at(self, exc: BaseException) -> str:
        """Where `exc` left the method, as `Class.Method at file:line` with the line of the method
        it was raised at (or passed through); the method's own origin when its frame is not on
        the traceback (a callable without source, an error raised before the method ran)."""
        code = getattr(inspect.unwrap(getattr(self.func, "__func__", self.func)), "__code__", None)
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code is code:
                line = lineno  # the innermost: a recursive method's deepest call
        if code is None or line is None:
            return self.origin
        return f"{code.co_qualname} at {at(code.co_filename, line)}"


class Registry:
    """Which implementation answers each method path; methods with none get defaults."""

    def __init__(
        self,
        contracts: Contracts,
        sources: Sequence[BehaviorSource] = (),
        *,
        changes: Changes | None = None,
    ) -> None:
        self.contracts = contracts
        self.changes = changes or Changes()  # moved by every replace() and restore()
        self._impls: dict[str, Implementation] = {}
        for item in discover(sources):
            for impl in bind(contracts, item):
                previous = self._impls.get(impl.spec.path)
                if previous is not None:
                    raise BehaviorError(
                        f"two behaviours for {impl.spec.name}: {previous.origin} and "
                        f"{impl.origin}; keep one (or override explicitly in a test)"
                    )
                self._impls[impl.spec.path] = impl
        self._built = dict(self._impls)

    def get(self, path: str) -> Implementation | None:
        return self._impls.get(path)

    def replace(self, impl: Implementation | None, path: str) -> Implementation | None:
        """Install `impl` (or remove with None) for `path`; returns what was there, to restore."""
        previous = self._impls.pop(path, None)
        if impl is not None:
            self._impls[path] = impl
        self.changes.moved()
        return previous

    def built(self, path: str) -> Implementation | None:
        """What `path` had when the registry was built: its behaviour, or None."""
        return self._built.get(path)

    def restore(self) -> None:
        """Back to the behaviours it was built with: every `replace()` (a test's override)
        undone at once. Each snapshot has a registry of its own, so after a swap this restores
        the new one's behaviours, never the old one's."""
        self._impls = dict(self._built)
        self.changes.moved()

    def __iter__(self) -> Iterator[Implementation]:
        return iter(list(self._impls.values()))

    def snapshot(self) -> Mapping[str, Implementation]:
        return dict(self._impls)


def bind(contracts: Contracts, item: type[Behavior] | Behavior) -> list[Implementation]:
    """What one behaviour class or instance implements, checked against the contracts."""
    cls = item if isinstance(item, type) else type(item)
    location = where(cls)
    if not cls.service:
        raise BehaviorError(no_service(cls))
    service = contracts.services.get(cls.service)
    if service is None:
        hint = _suggest(cls.service, list(contracts.services))
        raise BehaviorError(
            f"{location}: class {cls.__qualname__}: service {cls.service!r} is not in the "
            f"contracts{hint}; set `service` to a full name such as 'package.Service'"
        )
    try:
        instance = item if isinstance(item, Behavior) else cls()
    except Exception as exc:
        raise BehaviorError(
            f"{location}: class {cls.__qualname__} cannot be created without arguments: {exc}"
        ) from None
    rpc_names = list(service.methods)
    lowered = {name.lower(): name for name in rpc_names}
    impls = []
    for name in _public_callables(cls):
        spec = service.methods.get(name)
        if spec is None:
            if name[0].isupper() or name.replace("_", "").lower() in lowered:
                guess = lowered.get(name.replace("_", "").lower())
                hint = f"; did you mean {guess!r}?" if guess else _suggest(name, rpc_names)
                raise BehaviorError(
                    f"{location}: {cls.__qualname__}.{name}: {service.name} has no method "
                    f"{name!r}{hint}; methods are named exactly as the RPCs "
                    f"({', '.join(rpc_names)}); start helper names with a lower-case letter"
                )
            continue
        func = getattr(instance, name)
        style = Style.of(func)
        origin = f"{cls.__qualname__}.{name} at {_line_of(func, location)}"
        check_shape(spec, style, origin)
        check_parameters(spec, func, origin)
        impls.append(Implementation(spec=spec, func=func, style=style, origin=origin))
    return impls


def _public_callables(cls: type) -> list[str]:
    base = set(dir(Behavior))
    return [
        name
        for name in dir(cls)
        if not name.startswith("_")
        and name not in base
        and callable(getattr(cls, name))
        # A generated typed base's declaration is not an implementation: it keeps the default.
        and not is_placeholder(getattr(cls, name))
    ]


def check_shape(spec: MethodSpec, style: Style, origin: str) -> None:
    if not spec.kind.server_streaming and style.is_generator:
        raise BehaviorError(
            f"{origin}: is a {style.value}, but {spec.name} is {spec.kind.value} and answers "
            "with one message: `return` it instead of `yield`"
        )


def check_parameters(spec: MethodSpec, func: Callable[..., Any], origin: str) -> None:
    """The runtime calls every method with (request or requests, ctx): refuse, at load, a
    method that cannot take them, rather than fail each call with a TypeError."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some callables (builtins) hide theirs: let them be
        return
    try:
        signature.bind(None, None)
    except TypeError:
        pass
    else:
        return
    first = "requests" if spec.kind.client_streaming else "request"
    method = inspect.ismethod(func)  # a behaviour's method; an override may be a plain function
    own = ["self"] if method else []
    shown = ", ".join([*own, *(str(p) for p in signature.parameters.values())])
    called = f"{spec.method}(self, {first}, ctx)" if method else f"fn({first}, ctx)"
    after = " after self" if method else ""
    raise BehaviorError(
        f"{origin}: takes ({shown}), but {spec.name} is {spec.kind.value} and is called as "
        f"{called}: give it exactly those two parameters{after}"
    )


def _line_of(func: Callable[..., Any], fallback: str) -> str:
    """`file:line` of a method, for messages; the class's location when it has no source."""
    found = where(inspect.unwrap(getattr(func, "__func__", func)))
    return found if ":" in found else fallback


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
