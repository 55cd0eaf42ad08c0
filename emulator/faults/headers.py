"""Faults a client asks for in its own headers (off unless `header_faults: true`).

x-emulator-fault: code=UNAVAILABLE; delay=200ms; probability=0.5; message=try later
x-envoy-fault-abort-grpc-request: 14            (+ x-envoy-fault-abort-request-percentage)
x-envoy-fault-delay-request: 200                (milliseconds; + ...-delay-request-percentage)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc

from emulator._schema import parse_duration
from emulator.errors import RpcAbort

__all__ = ["HeaderFault", "header_fault", "warn_if_ignored"]

log = logging.getLogger("emulator")

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class HeaderFault:
    code: grpc.StatusCode | None = None
    message: str = ""
    delay: float = 0.0
    abort_probability: float = 1.0
    delay_probability: float = 1.0


def _text(value: str | bytes | None) -> str | None:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _percentage(value: str | None, header: str) -> float:
    if value is None:
        return 1.0
    try:
        number = float(value)
    except ValueError:
        raise _bad(header, f"expected a percentage 0-100, got {value!r}") from None
    if not 0 <= number <= 100:
        raise _bad(header, f"expected a percentage 0-100, got {value!r}")
    return number / 100


def _bad(header: str, problem: str) -> RpcAbort:
    return RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, f"header {header}: {problem}")


def header_fault(headers: Mapping[str, str | bytes]) -> HeaderFault | None:
    """The fault the headers ask for, None when they ask for none; RpcAbort(INVALID_ARGUMENT)
    naming the header when one is malformed."""
    own = _text(headers.get("x-emulator-fault"))
    if own is not None:
        return _own(own)
    abort = _text(headers.get("x-envoy-fault-abort-grpc-request"))
    delay = _text(headers.get("x-envoy-fault-delay-request"))
    if abort is None and delay is None:
        return None
    code = None
    if abort is not None:
        try:
            code = _CODES[int(abort)]
        except (ValueError, KeyError):
            code = None
        if code is None or code is grpc.StatusCode.OK:  # aborting with OK would hang the call
            raise _bad(
                "x-envoy-fault-abort-grpc-request", f"not a gRPC error status number: {abort!r}"
            )
    seconds = 0.0
    if delay is not None:
        try:
            seconds = float(delay) / 1000
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < math.inf:  # also NaN: it would never wake up
            raise _bad("x-envoy-fault-delay-request", f"expected milliseconds, got {delay!r}")
    return HeaderFault(
        code=code,
        delay=seconds,
        abort_probability=_percentage(
            _text(headers.get("x-envoy-fault-abort-request-percentage")),
            "x-envoy-fault-abort-request-percentage",
        ),
        delay_probability=_percentage(
            _text(headers.get("x-envoy-fault-delay-request-percentage")),
            "x-envoy-fault-delay-request-percentage",
        ),
    )


def warn_if_ignored(metadata: Iterable[tuple[str, object]]) -> bool:
    """While header faults are off, log that a client sent one; True once logged (the caller
    keeps that, so it is said once per server and costs nothing afterwards)."""
    for key, _ in metadata:
        if key == "x-emulator-fault" or key.startswith("x-envoy-fault-"):
            log.warning(
                "ignoring request header %s: header faults are off; enable them with "
                "`header_faults: true` in the config, --header-faults or "
                "EMULATOR_HEADER_FAULTS=true (said once)",
                key,
            )
            return True
    return False


def _own(value: str) -> HeaderFault:
    fields: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if not sep:
            raise _bad("x-emulator-fault", f"expected key=value, got {part.strip()!r}")
        fields[key.strip().lower()] = item.strip()
    unknown = set(fields) - {"code", "message", "delay", "probability"}
    if unknown:
        raise _bad(
            "x-emulator-fault",
            f"unknown key {sorted(unknown)[0]!r} (code, message, delay, probability)",
        )
    code = None
    if "code" in fields:
        name = fields["code"].upper()
        code = getattr(grpc.StatusCode, name, None) if not name.isdigit() else _CODES.get(int(name))
        if code is None or code is grpc.StatusCode.OK:
            raise _bad("x-emulator-fault", f"unknown status code {fields['code']!r}")
    try:
        seconds = parse_duration(fields["delay"]) if "delay" in fields else 0.0
        probability = float(fields.get("probability", "1"))
    except ValueError as exc:
        raise _bad("x-emulator-fault", str(exc)) from None
    if not 0 <= probability <= 1:
        raise _bad("x-emulator-fault", f"probability must be 0 to 1, got {probability}")
    return HeaderFault(code, fields.get("message", ""), seconds, probability, probability)
