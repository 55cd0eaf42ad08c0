"""Method patterns, as config and tests write them, and their check against the contracts.

A pattern is `pkg.Svc/Method`, `pkg.Svc/*`, `*/Method` or `*`; call paths are `/pkg.Svc/Method`.
Every pattern a user writes (auth scopes, allowlists, faults, limits, `max_duration`,
`unimplemented`) is checked here against what is served, so a misspelt one fails at start-up
instead of leaving a rule silently unapplied.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from emulator.contracts.builtin import BUILTIN_SERVICES
from emulator.errors import ConfigError

if TYPE_CHECKING:
    from emulator.contracts.model import Contracts

__all__ = [
    "check_method",
    "check_method_pattern",
    "check_patterns",
    "matches",
    "method_matches",
    "method_pattern",
    "served_paths",
]


def matches(pattern: str, value: str | None) -> bool:
    """A43 string matching: exact, `prefix*`, `*suffix`, or `*` for presence."""
    if value is None:
        return False
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def method_pattern(pattern: str) -> str:
    """A method pattern as config writes it (`pkg.Svc/Method`, `pkg.Svc/*`, `*/Ping`, `*`) in
    the form `matches()` compares with call paths (`/pkg.Svc/Method`)."""
    return pattern if pattern.startswith("*") else "/" + pattern.lstrip("/")


def method_matches(pattern: str, path: str) -> bool:
    """`pkg.Svc/Method`, `pkg.Svc/*` or `*` against `/pkg.Svc/Method`."""
    return matches(method_pattern(pattern), path)


def check_method_pattern(
    pattern: str, paths: Collection[str], key: str, *, a43: bool = False
) -> None:
    """Refuse a pattern that matches none of `paths` (every method served, as `/pkg.Svc/M`).

    A misspelt pattern would leave its rule silently unapplied: a method meant to need a scope
    or a certificate stays open, a fault never fires. `a43` patterns are compared as written
    (A43 paths start with `/`); method patterns may leave the `/` out. ConfigError names `key`
    and the closest real names.
    """
    wanted = pattern if a43 else method_pattern(pattern)
    if any(matches(wanted, path) for path in paths):
        return
    if a43 and not pattern.startswith(("/", "*")):
        problem = (
            f'"{pattern}" never matches: A43 paths start with "/" (did you mean "/{pattern}"?)'
        )
        raise ConfigError(f"{key}: {problem}", key=key, problem=problem)
    lead = "/" if a43 else ""
    names = sorted({lead + p.lstrip("/") for p in paths})
    names += sorted({lead + p.lstrip("/").rpartition("/")[0] + "/*" for p in paths})
    close = _closest(pattern, names)
    if close:
        hint = "; did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
    else:
        services = sorted({p.lstrip("/").rpartition("/")[0] for p in paths})
        shown = ", ".join(services[:6]) + (", ..." if len(services) > 6 else "")
        hint = f"; write {lead}pkg.Service/Method, {lead}pkg.Service/* or *; services: {shown}"
    problem = f'"{pattern}" matches no method{hint}'
    raise ConfigError(f"{key}: {problem}", key=key, problem=problem)


def _closest(word: str, names: Sequence[str]) -> list[str]:
    """The closest names (difflib), ties with the best kept: one answer unless it is a toss-up."""
    scored = []
    for name in names:
        matcher = difflib.SequenceMatcher(None, word, name)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            scored.append((matcher.ratio(), name))
    scored = sorted((s for s in scored if s[0] >= 0.6), key=lambda s: (-s[0], s[1]))
    return [name for score, name in scored[:3] if score >= scored[0][0] - 0.02]


def served_paths(contracts: Contracts) -> frozenset[str]:
    """Every method path served: the contracts' own, then health and reflection."""
    builtin = [
        f"/{name}/{method.name}"
        for name in sorted(BUILTIN_SERVICES)
        for method in contracts.pool.FindServiceByName(name).methods
    ]
    return frozenset([*contracts.methods, *builtin])


def check_method(pattern: str, contracts: Contracts, key: str) -> None:
    """One method pattern given at runtime (`emu.fault(match=...)`) against the contracts."""
    check_method_pattern(pattern, served_paths(contracts), key)


def check_patterns(patterns: Iterable[tuple[str, str]], contracts: Contracts) -> None:
    """Each (pattern, config key) must match a method served: a misspelt one would leave a
    method unprotected (scopes, allowlists), or a rule silently dead (exempt, faults, limits)."""
    paths = served_paths(contracts)
    for pattern, key in patterns:
        check_method_pattern(pattern, paths, key)
