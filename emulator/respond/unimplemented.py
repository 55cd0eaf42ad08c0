"""The unimplemented responder: methods the config marks `unimplemented` answer UNIMPLEMENTED.

For tests of how a client copes with a service or method the server does not have (gRPC's
interop `unimplemented_service` and `unimplemented_method`). It comes first in the dispatcher's
list, so a behaviour or test override of such a method never runs. `unimplemented_hidden`
methods are unimplemented too, and reflection leaves them out (see `ReflectionHandler`).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Collection, Iterable

import grpc

from emulator.call import Call
from emulator.contracts.patterns import method_matches
from emulator.errors import ConfigError, RpcAbort
from emulator.respond import Answer, Exchange, Responder

__all__ = ["UnimplementedResponder"]


class UnimplementedResponder(Responder):
    """Picks calls to the methods that `unimplemented` or `unimplemented_hidden` patterns name.

    `paths` are the contracts' method paths (`/pkg.Svc/Method`). `hidden` holds the paths that
    reflection must not show, `hidden_services` the services all of whose methods are hidden.
    """

    def __init__(
        self,
        paths: Collection[str],
        unimplemented: Iterable[str] = (),
        hidden: Iterable[str] = (),
    ) -> None:
        self.messages: dict[str, str] = {}
        hidden_paths: set[str] = set()
        for section, patterns in (
            ("unimplemented", unimplemented),
            ("unimplemented_hidden", hidden),
        ):
            for i, pattern in enumerate(patterns):
                matched = [path for path in paths if method_matches(pattern, path)]
                if not matched:
                    # Every pattern matches some method served (checked at start-up): this
                    # one matches only the built-in health or reflection services.
                    key = f"{section}[{i}]"
                    problem = (
                        f'"{pattern}" matches only the built-in health and reflection services, '
                        "which the emulator always serves; name methods of your contracts"
                    )
                    raise ConfigError(f"{key}: {problem}", key=key, problem=problem)
                for path in matched:
                    self.messages.setdefault(
                        path,
                        f"{path.lstrip('/')} is marked unimplemented in the emulator's "
                        f'configuration ({section}: "{pattern}")',
                    )
                    if section == "unimplemented_hidden":
                        hidden_paths.add(path)
        self.hidden = frozenset(hidden_paths)
        services: dict[str, bool] = {}
        for path in paths:
            service = path.lstrip("/").rpartition("/")[0]
            services[service] = services.get(service, True) and path in hidden_paths
        self.hidden_services = frozenset(name for name, gone in services.items() if gone)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def picks(self, path: str) -> bool:
        return path in self.messages

    def pick(self, call: Call) -> Answer | None:
        message = self.messages.get(call.spec.path)
        if message is None:
            return None
        call.answered_by = "unimplemented"
        return functools.partial(self.answer, message)

    async def answer(self, message: str, exchange: Exchange) -> AsyncIterator[bytes]:
        # Raised before any request is read: a real server without the method answers at once.
        raise RpcAbort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield b""  # pragma: no cover - makes this an async generator, as every answer is
