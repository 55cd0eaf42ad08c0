"""Fault rules ready to apply: matchers, gates, seeded draws and delay samplers.

Every random choice comes from SHA-256 of (seed, rule name, matching-call index, fault kind):
each fault kind draws independently (gRFC A33), and the same seed and call order give the same
faults in every run.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from emulator.contracts.patterns import method_matches
from emulator.errors import ConfigError, RpcAbort
from emulator.faults.config import AbortConfig, DelayConfig, FaultConfig

__all__ = ["Abort", "Rule", "compile_rule", "method_matches", "seeded"]


def seeded(seed: int, *parts: object) -> random.Random:
    key = "\0".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest(), "big"))


@dataclass(frozen=True, slots=True)
class Abort:
    code: grpc.StatusCode
    message: str
    details: tuple[Message, ...]
    trailers: tuple[tuple[str, str], ...]

    def error(self, default_message: str) -> RpcAbort:
        return RpcAbort(
            self.code,
            self.message or default_message,
            details=self.details,
            trailers=dict(self.trailers),
        )


class Rule:
    """One configured fault; `matched` and `injected` count its calls."""

    def __init__(self, config: FaultConfig, abort: Abort | None) -> None:
        self.config = config
        self.name = config.name
        self.abort = abort
        self.needs_request = bool(config.match.request)
        self._metadata = tuple((k.lower(), v) for k, v in config.match.metadata.items())
        self._lock = threading.Lock()
        self.matched = 0
        self.injected = 0
        self.removed = False  # taken out at run time (`emu.fault()` undone): it fires no more

    def matches_call(self, metadata: Sequence[tuple[str, str | bytes]], request: Any) -> bool:
        """Headers and request fields, for a call whose method is known to match."""
        return self.matches_metadata(metadata) and self.matches_request(request)

    def matches_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> bool:
        """`match.metadata`: a header sent more than once matches when any of its values does."""
        return all(any(k == key and v == want for k, v in metadata) for key, want in self._metadata)

    def matches_request(self, request: Any) -> bool:
        """`match.request` against one request message (None: none, or one that did not parse)."""
        wanted = self.config.match.request
        if not wanted:
            return True
        if request is None:
            return False
        from emulator.journal.matching import message_differences

        return not message_differences(request, wanted)

    def next_index(self) -> int:
        with self._lock:
            self.matched += 1
            return self.matched

    def counted(self) -> None:
        with self._lock:
            self.injected += 1

    def reset(self) -> None:
        with self._lock:
            self.matched = self.injected = 0

    def gate(self, index: int, elapsed: float) -> bool:
        """`calls`, `after_calls` and `window`: does the rule apply to this matching call?"""
        when = self.config.when
        if when.calls and index not in when.calls:
            return False
        if index <= when.after_calls:
            return False
        window = when.window
        return window is None or window.start <= elapsed < window.start + window.duration

    def draw(self, seed: int, index: int, kind: str) -> bool:
        probability = self.config.when.probability
        if probability >= 1.0:
            return True
        return seeded(seed, self.name, index, kind).random() < probability

    def delay(self, seed: int, index: int) -> float:
        delay = self.config.delay
        return sample(delay, seeded(seed, self.name, index, "delay-value")) if delay else 0.0


def sample(delay: DelayConfig, rng: random.Random) -> float:
    if delay.fixed is not None:
        return delay.fixed
    if delay.uniform:
        low, high = delay.uniform
        return rng.uniform(low, high)
    if delay.normal is not None:
        return max(0.0, rng.gauss(delay.normal.mean, delay.normal.stddev))
    if delay.lognormal is not None:
        import math

        return rng.lognormvariate(math.log(delay.lognormal.median), delay.lognormal.sigma)
    return 0.0


def compile_rule(config: FaultConfig, where: str) -> Rule:
    return Rule(config, compile_abort(config.abort, f"{where}.abort") if config.abort else None)


def compile_abort(config: AbortConfig, where: str) -> Abort:
    code = grpc.StatusCode[config.code.upper()]  # the name was checked with the config
    details = tuple(_detail(raw, f"{where}.details[{i}]") for i, raw in enumerate(config.details))
    from emulator.metadata import MetadataError, checked

    try:
        trailers = checked({k: str(v) for k, v in config.trailers.items()}, f"{where}.trailers")
    except MetadataError as exc:
        raise ConfigError(str(exc)) from None
    return Abort(code, config.message, details, trailers)  # type: ignore[arg-type]


def _detail(raw: Mapping[str, Any], where: str) -> Message:
    """A google.rpc detail from its JSON form: `{"@type": "type.googleapis.com/...", ...}`."""
    from google.protobuf import any_pb2, json_format
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]  # noqa: F401 - registers google.rpc types

    type_url = str(raw.get("@type", ""))
    if not type_url:
        problem = 'a detail needs an "@type", e.g. type.googleapis.com/google.rpc.RetryInfo'
        raise ConfigError(f"{where}: {problem}", key=where, problem=problem)
    packed = any_pb2.Any()
    try:
        json_format.ParseDict(dict(raw), packed)
    except json_format.ParseError as exc:
        raise ConfigError(f"{where}: {exc}", key=where, problem=str(exc)) from None
    from google.protobuf import symbol_database

    name = type_url.rsplit("/", 1)[-1]
    cls = symbol_database.Default().GetSymbol(name)
    message: Message = cls()
    packed.Unpack(message)
    return message
