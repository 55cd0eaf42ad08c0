"""`max_duration`: how long a method's behaviour may take before the call ends DEADLINE_EXCEEDED,
as a production server's own timeout would end it, whatever deadline the client set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.contracts.patterns import method_matches

__all__ = ["MaxDurationInterceptor"]


class MaxDurationInterceptor(Interceptor):
    """Gives each call to a limited method its time budget (`Call.budget`), counted from the
    call's start; the behaviour responder ends a step that runs past it."""

    def __init__(self, limits: Mapping[str, float], paths: Iterable[str]) -> None:
        # Resolved per method once: a call pays one dict lookup.
        self._limits: dict[str, tuple[float, str]] = {}
        for path in paths:
            for pattern, limit in limits.items():
                if method_matches(pattern, path):
                    name = path.lstrip("/")
                    message = f"{name} ran longer than its max_duration of {limit:g}s"
                    self._limits[path] = (limit, message)

    def __bool__(self) -> bool:
        return bool(self._limits)

    async def before(self, call: Call) -> None:
        budget = self._limits.get(call.spec.path)
        if budget is not None:
            call.budget = budget
