"""Stubs from plain data, checked against the contracts: every problem refused at load.

An unknown method (with the closest names), an unknown field path, a value of the wrong type, an
unknown enum name, a bad regex, a status that does not exist, a stream response for a unary
method, a template that does not compile: each is a `ConfigError` naming the file, line and key,
and saying what to do. Response messages are converted to the output type here, once.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from emulator._schema import build as build_dataclass
from emulator._schema import invalid, parse_duration, where
from emulator.contracts.model import Contracts, MethodSpec, RpcKind
from emulator.contracts.patterns import check_method_pattern, method_matches
from emulator.errors import ConfigError
from emulator.faults.config import AbortConfig, DelayConfig
from emulator.faults.rules import Abort, compile_abort
from emulator.stubs.conditions import ConditionError, header_conditions, request_conditions
from emulator.stubs.config import ResponseConfig, StreamItemConfig, StubConfig
from emulator.stubs.messages import MessageSpec, StubDataError
from emulator.stubs.model import HeaderValue, Item, OnMessage, Reply, Stub
from emulator.stubs.templates import TemplateError, compile_template, is_template

__all__ = ["Source", "build_stubs"]

_ORDER = itertools.count()  # file order, across every stub loaded in this process
_STATUS_NAMES = {code.name: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Source:
    """Where a list of stubs was written: a file (with the line of every key, as `[0].match`),
    emulator.yaml's `stubs:`, or a call at run time."""

    name: str  # the file, `Emulator(...)`, `emu.stubs.add()`
    lines: Mapping[str, int] = field(default_factory=dict)
    prefix: str = ""  # what the keys of `lines` start with for this list: "" or "stubs"
    origin: str = "file"  # file, config or runtime
    first: int = 0  # the index of the first stub in the list it came from

    def at(self, key: str) -> str:
        return where(self.name, self.lines, key)


def build_stubs(data: Any, contracts: Contracts, source: Source) -> list[Stub]:
    """Stubs from a list of stub mappings (a stub file's content)."""
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError(
            f"{source.at(source.prefix)}: a stub file holds a list of stubs "
            "(`- method: pkg.Service/Method`), got " + type(data).__name__
        )
    stubs = []
    lines = _lines_by_stub(source.lines, source.prefix)
    for offset, raw in enumerate(data):
        index = source.first + offset
        key = f"{source.prefix}[{index}]"
        shown = key if key.startswith("stubs") else f"stubs{key}"
        if source.origin == "runtime":
            # What the caller wrote: one stub (`emu.stub_for(...)`: `match.request...`), or
            # the position in the stubs of this call, not among every stub added so far.
            shown = "" if len(data) == 1 else f"stubs[{offset}]"
        stubs.append(_Builder(contracts, source, key, shown, lines.get(key, {})).stub(raw))
    return stubs


def _join(*keys: str) -> str:
    return ".".join(k for k in keys if k)


def _lines_by_stub(lines: Mapping[str, int], prefix: str) -> dict[str, dict[str, int]]:
    """The lines of each stub's keys (`[3].match...` under `[3]`), split once: handing every
    stub the whole file's lines made loading quadratic (10,000 stubs took minutes). A stub's
    keys all start with its own `[i]`, and `where()` only ever walks up from them."""
    groups: dict[str, dict[str, int]] = {}
    start = len(prefix)
    opening = f"{prefix}["
    for key, line in lines.items():
        end = key.find("]", start) if key.startswith(opening) else -1
        if end >= 0:
            groups.setdefault(key[: end + 1], {})[key] = line
    return groups


class _Builder:
    def __init__(
        self,
        contracts: Contracts,
        source: Source,
        key: str,
        shown: str,
        lines: Mapping[str, int],
    ) -> None:
        self.contracts = contracts
        self.source = source
        self.key = key  # `[0]`, `stubs[2]`: where this stub's keys are, in `source.lines`
        # How messages show the stub: `stubs[2]`, then `stubs[2] (name)` once its name is known.
        self.base = shown
        self.shown = self.base
        # `lines`: this stub's keys only (see _lines_by_stub), renamed to start with `base`.
        self.lines = {self.base + k[len(key) :]: v for k, v in lines.items()}

    def fail(self, key: str, problem: str) -> ConfigError:
        full = _join(self.key, key)
        shown = _join(self.shown, key)
        if not shown:
            return ConfigError(f"{self.source.at(full)}: {problem}", key=full, problem=problem)
        return invalid(self.source.at(full), shown, problem)

    def stub(self, raw: Any) -> Stub:
        config: StubConfig = build_dataclass(
            StubConfig, raw, self.base, self.source.name, self.lines
        )
        if config.name and self.shown:
            self.shown = f"{self.shown} ({config.name})"
        methods = self._methods(config)
        spec = methods[0]
        kinds = {m.kind for m in methods}
        request, metadata, mode = self._match(config, methods)
        stream = self._stream(config, spec)
        replies = self._replies(config, methods, kinds)
        on_message = self._on_message(config, methods, kinds)
        if config.times is not None and config.times < 1:
            raise self.fail(
                "times",
                f"must be at least 1, got {config.times}; leave it out to answer every matching "
                "call",
            )
        if (config.when_state or config.set_state) and not config.scenario:
            which = "when_state" if config.when_state else "set_state"
            raise self.fail(which, "needs a `scenario:` name that the states belong to")
        line = self.source.lines.get(self.key)
        # Without a line (written in code), the stub's index keeps unnamed stubs apart.
        located = f"{self.source.name}:{line}" if line else f"{self.source.name} {self.key}"
        return Stub(
            name=config.name or f"{spec.name.rpartition('/')[2]}@{located}",
            source=located,
            methods=tuple(methods),
            order=next(_ORDER),
            priority=config.priority,
            request=tuple(request),
            metadata=tuple(metadata),
            mode=mode,
            stream=stream,
            recorded=config.recorded,
            times=config.times,
            replies=replies,
            then=config.then,
            on_message=on_message,
            scenario=config.scenario,
            when_state=config.when_state,
            set_state=config.set_state,
            origin=self.source.origin,
        )

    # -- method and match -----------------------------------------------------------------------

    def _methods(self, config: StubConfig) -> list[MethodSpec]:
        if not config.method:
            raise self.fail("method", "missing: name the method, `pkg.Service/Method`")
        paths = self.contracts.methods
        try:
            check_method_pattern(config.method, paths.keys(), "method")
        except ConfigError as exc:
            raise self.fail("method", exc.problem) from None
        found = [spec for path, spec in paths.items() if method_matches(config.method, path)]
        types = {
            (m.input_class.DESCRIPTOR.full_name, m.output_class.DESCRIPTOR.full_name) for m in found
        }
        if len(types) > 1 and (config.match.request or self._has_messages(config)):
            names = ", ".join(m.name for m in found[:4])
            raise self.fail(
                "method",
                f'"{config.method}" matches methods of different message types ({names}): '
                "name one method, since the stub's fields must fit its types",
            )
        return found

    @staticmethod
    def _has_messages(config: StubConfig) -> bool:
        responses = [config.respond, *config.sequence]
        return any(r is not None and (r.message or r.stream) for r in responses) or bool(
            config.on_message
        )

    def _match(
        self, config: StubConfig, methods: list[MethodSpec]
    ) -> tuple[list[Any], list[Any], str | int]:
        spec = methods[0]
        match = config.match
        try:
            request = request_conditions(
                spec.input_class.DESCRIPTOR, match.request, _join(self.shown, "match.request")
            )
            metadata = header_conditions(match.metadata, _join(self.shown, "match.metadata"))
        except ConditionError as exc:
            raise self._located(exc) from None
        mode = match.message
        if isinstance(mode, str) and mode.startswith("index "):
            mode = mode[6:].strip()
            mode = int(mode) if mode.isdigit() else mode
        if isinstance(mode, dict) and set(mode) == {"index"}:
            mode = mode["index"]
        if not (
            mode in ("first", "any", "all")
            or (isinstance(mode, int) and not isinstance(mode, bool) and mode >= 0)
        ):
            raise self.fail(
                "match.message",
                f"is first, any, all or `index N` (N from 0), got {match.message!r}",
            )
        if mode != "first" and not spec.kind.client_streaming:
            raise self.fail(
                "match.message",
                f"applies to client and bidi streams; {spec.name} takes one request: leave "
                "`match.message` out",
            )
        return request, metadata, mode

    def _stream(self, config: StubConfig, spec: MethodSpec) -> tuple[tuple[Any, ...], ...] | None:
        """`match.requests`: a client stream's every message, in order."""
        wanted = config.match.requests
        if wanted is None:
            return None
        if spec.kind is not RpcKind.STREAM_UNARY:
            raise self.fail(
                "match.requests",
                f"matches a whole client stream; {spec.name} is not client streaming: use "
                "`match.request`",
            )
        if config.match.request:
            raise self.fail(
                "match.requests",
                "give `match.request` (with `match.message`) or `match.requests`, not both",
            )
        out = []
        for number, fields in enumerate(wanted):
            key = _join(self.shown, f"match.requests[{number}]")
            try:
                out.append(tuple(request_conditions(spec.input_class.DESCRIPTOR, fields, key)))
            except ConditionError as exc:
                raise self._located(exc) from None
        return tuple(out)

    def _located(self, exc: ConditionError | StubDataError | TemplateError) -> ConfigError:
        key = exc.key.removeprefix(self.shown).lstrip(".")
        return self.fail(key, exc.problem)

    # -- responses ------------------------------------------------------------------------------

    def _replies(
        self, config: StubConfig, methods: list[MethodSpec], kinds: set[RpcKind]
    ) -> tuple[Reply, ...]:
        if config.respond is not None and config.sequence:
            raise self.fail("sequence", "give `respond` or `sequence`, not both")
        spec = methods[0]
        if config.sequence:
            return tuple(
                self._reply(r, spec, f"sequence[{i}]") for i, r in enumerate(config.sequence)
            )
        if config.respond is not None:
            return (self._reply(config.respond, spec, "respond"),)
        if config.on_message:
            return (Reply(items=(), stream=True),)
        if config.then != "repeat_last":
            raise self.fail("then", "goes with a `sequence:`")
        # No response given: the default, as a stub that only shapes which calls match, counts
        # them and moves scenarios along.
        return (Reply(items=(Item(None),)),)

    def _reply(self, config: ResponseConfig, spec: MethodSpec, key: str) -> Reply:
        kind = spec.kind
        status = self._status(config.status, f"{key}.status") if config.status else None
        fails = status is not None and status.code != grpc.StatusCode.OK
        if config.stream is not None:
            if not kind.server_streaming:
                raise self.fail(
                    f"{key}.stream",
                    f"{spec.name} answers one message: use `message:` (a stream response is for "
                    "server and bidi streaming methods)",
                )
            if config.message is not None:
                raise self.fail(f"{key}.message", "give `message` or `stream`, not both")
            items = tuple(
                self._item(item, spec, f"{key}.stream[{i}]") for i, item in enumerate(config.stream)
            )
        elif fails:
            if config.message is not None:
                raise self.fail(
                    f"{key}.message",
                    f"a call that ends {status.code.name} sends no message: drop `message`, "  # type: ignore[union-attr]
                    "or the status",
                )
            items = ()
        else:
            message = None
            if config.message is not None:
                message = self._message(spec, config.message, f"{key}.message", config.replace)
            items = (Item(message),)
        return Reply(
            items=items,
            status=status,
            headers=self._headers(config.headers, f"{key}.headers"),
            trailers=self._headers(config.trailers, f"{key}.trailers"),
            delay=self._delay(config.delay, f"{key}.delay"),
            stream=config.stream is not None,
        )

    def _item(self, config: StreamItemConfig, spec: MethodSpec, key: str) -> Item:
        message = (
            self._message(spec, config.message, f"{key}.message", config.replace)
            if config.message
            else None
        )
        return Item(message, self._delay(config.delay, f"{key}.delay"))

    def _message(self, spec: MethodSpec, data: Any, key: str, replace: bool) -> MessageSpec:
        try:
            return MessageSpec(spec.output_class, data, _join(self.shown, key), replace=replace)
        except (StubDataError, TemplateError) as exc:
            raise self._located(exc) from None

    def _status(self, config: AbortConfig, key: str) -> Abort:
        name = config.code.upper()
        if name not in _STATUS_NAMES:
            import difflib

            close = difflib.get_close_matches(name, list(_STATUS_NAMES), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise self.fail(f"{key}.code", f"{config.code!r} is not a gRPC status code{hint}")
        try:
            return compile_abort(config, _join(self.shown, key))
        except ConfigError as exc:
            raise self.fail(key, exc.problem) from None

    def _headers(self, values: Mapping[str, Any], key: str) -> tuple[tuple[str, HeaderValue], ...]:
        from emulator.metadata import MetadataError, checked

        out: list[tuple[str, HeaderValue]] = []
        for name, value in values.items():
            here = f"{key}.{name}"  # each header on its own, so the message names its line
            header = str(name).lower()
            templated = is_template(value)
            probe = "x" if templated else value if isinstance(value, bytes) else str(value)
            try:
                checked({name: probe}, _join(self.shown, here))
            except MetadataError as exc:
                raise self.fail(here, str(exc).split(": ", 1)[-1]) from None
            if templated:
                try:
                    out.append((header, compile_template(value, _join(self.shown, here))))
                except TemplateError as exc:
                    raise self._located(exc) from None
            else:
                out.append((header, probe))
        plain = [(k, v) for k, v in out if isinstance(v, str | bytes)]
        try:
            checked(plain, key)  # all together: their size
        except MetadataError as exc:
            raise self.fail(key, str(exc).split(": ", 1)[-1]) from None
        return tuple(out)

    def _delay(self, value: Any, key: str) -> DelayConfig | None:
        if value is None:
            return None
        if isinstance(value, Mapping):
            delay: DelayConfig = build_dataclass(
                DelayConfig, value, _join(self.base, key), self.source.name, self.lines
            )
            kinds = [
                k
                for k in ("fixed", "uniform", "normal", "lognormal")
                if getattr(delay, k) not in (None, ())
            ]
            if len(kinds) != 1:
                raise self.fail(key, "give exactly one of fixed, uniform, normal, lognormal")
            if delay.uniform and len(delay.uniform) != 2:
                raise self.fail(f"{key}.uniform", "is [low, high]")
            return delay
        try:
            return DelayConfig(fixed=parse_duration(value))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    # -- bidi ---------------------------------------------------------------------------------

    def _on_message(
        self, config: StubConfig, methods: list[MethodSpec], kinds: set[RpcKind]
    ) -> tuple[OnMessage, ...]:
        if not config.on_message:
            return ()
        spec = methods[0]
        if spec.kind is not RpcKind.STREAM_STREAM:
            raise self.fail(
                "on_message",
                f"is for bidi streaming methods; {spec.name} is {spec.kind.value}: answer it "
                "with `respond:` (or `sequence:`)",
            )
        rules = []
        for index, rule in enumerate(config.on_message):
            key = f"on_message[{index}]"
            try:
                conditions = request_conditions(
                    spec.input_class.DESCRIPTOR, rule.match, _join(self.shown, key, "match")
                )
            except ConditionError as exc:
                raise self._located(exc) from None
            items = tuple(
                self._item(item, spec, f"{key}.reply[{i}]") for i, item in enumerate(rule.reply)
            )
            status = self._status(rule.status, f"{key}.status") if rule.status else None
            rules.append(OnMessage(tuple(conditions), items, status))
        return tuple(rules)
