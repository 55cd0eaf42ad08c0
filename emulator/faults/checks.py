"""The checks of fault rules and rate limits that the schema alone cannot make: values that must
fit together (probabilities, delays, windows, status codes and their details)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emulator.errors import ConfigError
from emulator.faults.config import FaultConfig, RateLimitConfig

__all__ = ["check_faults"]


_STATUS_NAMES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def check_faults(
    faults: Sequence[FaultConfig],
    rate_limits: Sequence[RateLimitConfig],
    max_active_faults: int | None,
    bad: Callable[[str, str], Exception],
) -> None:
    """Fault rules and rate limits whose values do not fit together; `bad(key, problem)` makes
    the error (with the file and line of the key)."""
    names: set[str] = set()
    for i, rule in enumerate(faults):
        at = f"faults[{i}]"
        if not rule.name:
            raise bad(f"{at}.name", "every fault needs a name (for logs, journal and counters)")
        if rule.name in names:
            raise bad(f"{at}.name", f"{rule.name!r} is used by another fault")
        names.add(rule.name)
        at = f"faults[{i}] ({rule.name})"
        when = rule.when
        if not 0 <= when.probability <= 1:
            raise bad(f"{at}.when.probability", f"must be 0 to 1, got {when.probability}")
        if any(n < 1 for n in when.calls) or when.after_calls < 0:
            raise bad(f"{at}.when", "calls count from 1 and after_calls from 0")
        if rule.abort is not None and rule.abort.code.upper() not in _STATUS_NAMES:
            raise bad(
                f"{at}.abort.code",
                f"unknown status code {rule.abort.code!r}; use one of "
                f"{', '.join(sorted(_STATUS_NAMES))}",
            )
        if rule.abort is not None and rule.abort.details:
            from emulator.faults.rules import compile_abort  # grpc and protobuf: only when needed

            try:
                compile_abort(rule.abort, f"{at}.abort")
            except ConfigError as exc:  # add the file and line
                raise bad(exc.key or f"{at}.abort", exc.problem) from None
        if rule.delay is not None:
            delay = rule.delay
            kinds = [
                delay.fixed is not None,
                bool(delay.uniform),
                delay.normal is not None,
                delay.lognormal is not None,
            ]
            if sum(kinds) != 1:
                raise bad(f"{at}.delay", "give exactly one of fixed, uniform, normal, lognormal")
            if delay.uniform and (len(delay.uniform) != 2 or delay.uniform[0] > delay.uniform[1]):
                raise bad(f"{at}.delay.uniform", "expected [low, high] with low <= high")
            if delay.lognormal is not None and delay.lognormal.sigma < 0:
                raise bad(f"{at}.delay.lognormal.sigma", "must not be negative")
            if delay.lognormal is not None and delay.lognormal.median <= 0:
                raise bad(f"{at}.delay.lognormal.median", "must be positive")
        if rule.stream is not None and (rule.stream.abort_after or 0) < 0:
            raise bad(f"{at}.stream.abort_after", "must not be negative")
        effects = [rule.abort, rule.delay, rule.stream, rule.deadline, rule.health]
        if all(e is None for e in effects):
            raise bad(at, "a fault needs abort, delay, stream, deadline or health")
    for i, limit in enumerate(rate_limits):
        at = f"rate_limits[{i}]" + (f" ({limit.name})" if limit.name else "")
        if limit.rps <= 0:
            raise bad(f"{at}.rps", f"must be positive, got {limit.rps}")
        if limit.burst < 1:
            raise bad(f"{at}.burst", f"must be at least 1, got {limit.burst}")
    if max_active_faults is not None and max_active_faults < 0:
        raise bad("max_active_faults", "must not be negative")
