"""`max_duration`: how long a method's behaviour may take before the call ends DEADLINE_EXCEEDED,
as a production server's own timeout would end it, whatever deadline the client set."""

from __future__ import annotations

from collections.abc import Mapping

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.contracts.patterns import method_matches

__all__ = ["MaxDurationInterceptor"]

Budget = tuple[float, str]  # seconds, and the message a call that runs past them ends with


class MaxDurationInterceptor(Interceptor):
    """Gives each call to a limited method its time budget (`Call.budget`), counted from the
    call's start; the behaviour responder ends a step that runs past it."""

    def __init__(self, limits: Mapping[str, float]) -> None:
        self._patterns = dict(limits)
        # Resolved per method on its first call, from the patterns alone: whatever contracts a
        # snapshot serves, a call pays one dict lookup. Only served paths reach it.
        self._limits: dict[str, Budget | None] = {}

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def budget(self, path: str) -> Budget | None:
        try:
            return self._limits[path]
        except KeyError:
            pass
        found = None
        for pattern, limit in self._patterns.items():
            if method_matches(pattern, path):
                found = (
                    limit,
                    f"{path.lstrip('/')} ran longer than its max_duration of {limit:g}s",
                )
        self._limits[path] = found
        return found

    async def before(self, call: Call) -> None:
        budget = self.budget(call.spec.path)
        if budget is not None:
            call.budget = budget
