"""`Behavior`: the base class that gives chosen methods of one service real logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

__all__ = ["Behavior", "is_placeholder", "placeholder"]

_F = TypeVar("_F", bound=Callable[..., Any])
_MARK = "__emulator_placeholder__"


class Behavior:
    """Subclass it, name the service, and define methods named as its RPCs.

        class Greeter(Behavior):
            service = "helloworld.Greeter"

            def SayHello(self, request, ctx):
                return {"message": f"Hello, {request.name}"}

    Methods may be sync or async; server-streaming methods are (async) generators; client- and
    bidi-streaming methods take an iterator of requests (an async iterator for async methods).
    Return a message, a dict (JSON or proto field names) or None for the default response.
    Methods whose names are not RPC names must start with a lower-case letter or underscore.
    """

    service: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.service, str):
            raise TypeError(
                f"{cls.__qualname__}.service must be the full service name as a string, "
                f"for example 'helloworld.Greeter', not {cls.service!r}"
            )


def placeholder(func: _F) -> _F:
    """Mark a method as declared for its types only (the typed bases `emulate generate` writes).

    The binder skips a placeholder: an RPC whose method a subclass does not override keeps its
    default response (and stubs, faults), as if the base did not name it at all."""
    setattr(func, _MARK, True)
    return func


def is_placeholder(obj: object) -> bool:
    return getattr(obj, _MARK, False) is True
