"""Templates in stub responses, rendered by Jinja2's sandbox (never `eval`).

    respond:
      message: {order_id: "{{ request.customer_id }}-{{ call.index }}", note: "{{ fake.email }}"}
      headers: {x-tenant: "{{ metadata['x-tenant'] }}"}

A string value holding `{{` or `{%` is a template. What a template sees:

    request     the request message (client streams: the first; a bidi reply: the message
                being answered); fields by their proto names
    requests    every request message read (client and bidi streams)
    metadata    request headers, each key's first value (lowercase keys)
    call        index (1 = the first call this stub answered), method, peer, stub
    now         the emulator clock, RFC 3339 (`2026-12-03T09:00:00Z`); `clock` the datetime
    fake        realistic values by name, as defaults have them: fake.email, fake.name,
                fake.city, fake.uuid, fake.phone, ... (any field-like name), seeded
    rng         a seeded random.Random for this call (rng.randint(1, 6))

Everything random is seeded by (seed, stub, call index): a rerun renders the same text. Jinja2 is
imported only when a stub has a template.
"""

from __future__ import annotations

import datetime
import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Fake", "Template", "TemplateError", "compile_template", "is_template"]


class TemplateError(ValueError):
    """A template that does not compile; `key` is where it was written."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@functools.cache
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Immutable: a template may read the request and the state it is shown, never change them.
    # StrictUndefined: a misspelt name fails the call with a message, rather than rendering "".
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template and where it was written (for the error a failed render gives)."""

    source: str
    key: str
    compiled: Any

    def render(self, context: Mapping[str, Any]) -> str:
        from jinja2 import TemplateError as JinjaError

        try:
            return str(self.compiled.render(context))
        except JinjaError as exc:
            raise TemplateError(self.key, f"template {self.source!r} failed: {exc}") from None
        except Exception as exc:  # a sandboxed call that raised (int("x"), a zero division)
            problem = f"template {self.source!r} failed: {type(exc).__name__}: {exc}"
            raise TemplateError(self.key, problem) from None


def compile_template(source: str, key: str) -> Template:
    from jinja2 import TemplateSyntaxError

    try:
        return Template(source, key, _environment().from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(key, f"template {source!r}: {exc.message}") from None


class Fake:
    """`fake.email`, `fake.name`, ...: a realistic value for whatever a field of that name
    would hold, drawn from `rng` (so the same call renders the same value)."""

    def __init__(self, rng: random.Random, time_range: tuple[int, int]) -> None:
        self._rng = rng
        self._time_range = time_range

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        from emulator.behavior.values import text_for

        return text_for(name, self._rng, self._time_range)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
