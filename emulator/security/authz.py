"""Per-method authorization: gRFC A43 policies and a short form of required token scopes.

A43: `deny_rules` are checked first, then `allow_rules`; once a policy is set, anything no allow
rule matches is denied. A rule matches when its `source` (principals) and its `request` (paths and
headers) all match; within a list, any entry may match. Patterns are exact, `prefix*`,
`*suffix`, or `*` (present at all). A header sent more than once is matched as its values joined
with "," (`joined_values`), as A43 and Envoy match it.

    {"name": "shop",
     "deny_rules": [{"name": "no-ci-refunds", "source": {"principals": ["ci"]},
                     "request": {"paths": ["/shop.v1.Payments/Refund"]}}],
     "allow_rules": [{"name": "tenants", "request": {"paths": ["/shop.v1.*"],
                      "headers": [{"key": "x-tenant", "values": ["acme"]}]}}]}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emulator.contracts.patterns import check_method_pattern, matches, method_pattern
from emulator.errors import ConfigError

__all__ = [
    "Policy",
    "Rule",
    "ScopeRules",
    "joined_values",
]


def joined_values(metadata: Sequence[tuple[str, str | bytes]]) -> dict[str, str]:
    """Each header once, its values joined with "," in the order sent, as A43 and Envoy match a
    repeated header (`acme` then `evil` is `acme,evil`, as if sent so in one header).

    Allow rules match the joined value, so a second value cannot hide behind an allowed first
    one; deny rules match the joined value or any one of its comma-separated parts, so a value
    cannot hide behind an innocent one either."""
    found: dict[str, list[str]] = {}
    for key, value in metadata:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        found.setdefault(key, []).append(text)
    return {key: ",".join(values) for key, values in found.items()}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    principals: tuple[str, ...]  # empty: any caller, authenticated or not
    paths: tuple[str, ...]  # empty: any method
    headers: tuple[tuple[str, tuple[str, ...]], ...]

    def matches(
        self,
        path: str,
        principals: Sequence[str],
        headers: Mapping[str, str],
        *,
        any_value: bool = False,
    ) -> bool:
        if self.principals and not any(
            matches(p, name) for p in self.principals for name in principals
        ):
            return False
        if self.paths and not any(matches(p, path) for p in self.paths):
            return False
        for key, values in self.headers:
            got = headers.get(key)
            candidates: list[str | None] = [got]
            if any_value and got is not None and "," in got:
                candidates += [part.strip() for part in got.split(",")]
            if not any(matches(v, c) for v in values for c in candidates):
                return False
        return True


class Policy:
    """An A43 policy: `decide()` returns None to allow, or the reason for PERMISSION_DENIED."""

    def __init__(self, data: Mapping[str, Any], where: str = "authorization") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected an A43 policy object with allow_rules")
        unknown = set(data) - {"name", "deny_rules", "allow_rules"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {sorted(unknown)[0]!r}; an A43 policy has name, "
                "deny_rules and allow_rules"
            )
        self.name = str(data.get("name", "policy"))
        if "allow_rules" not in data:
            raise ConfigError(f"{where}: allow_rules is required (A43); [] denies everything")
        self.where = where
        self.deny = _rules(data.get("deny_rules", []), f"{where}.deny_rules")
        self.allow = _rules(data["allow_rules"], f"{where}.allow_rules")

    def check_paths(self, paths: Collection[str]) -> None:
        """Refuse a rule path that matches no method served (a dead rule)."""
        for part, rules in (("deny_rules", self.deny), ("allow_rules", self.allow)):
            for i, rule in enumerate(rules):
                for j, path in enumerate(rule.paths):
                    key = f"{self.where}.{part}[{i}].request.paths[{j}]"
                    check_method_pattern(path, paths, key, a43=True)

    def decide(
        self, path: str, principals: Sequence[str], headers: Mapping[str, str]
    ) -> str | None:
        """`headers` as `joined_values()` gives them."""
        for rule in self.deny:
            if rule.matches(path, principals, headers, any_value=True):
                return f"denied by rule {rule.name!r} of policy {self.name!r}"
        for rule in self.allow:
            if rule.matches(path, principals, headers):
                return None
        return f"no allow rule of policy {self.name!r} matches {path}"


def _rules(raw: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of rules")
    return tuple(_rule(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a rule object with name, source and request")
    unknown = set(raw) - {"name", "source", "request"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (name, source, request)")
    if not raw.get("name"):
        raise ConfigError(f"{where}: every rule needs a name")
    source = raw.get("source", {}) or {}
    request = raw.get("request", {}) or {}
    for part, value in (("source", source), ("request", request)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}.{part}: expected a mapping, got {type(value).__name__}")
    if set(source) - {"principals"}:
        raise ConfigError(f"{where}.source: only `principals` is supported")
    if set(request) - {"paths", "headers"}:
        raise ConfigError(f"{where}.request: only `paths` and `headers` are supported")
    headers = []
    header_list = request.get("headers") or []
    if not isinstance(header_list, list):
        raise ConfigError(f"{where}.request.headers: expected a list of {{key, values}}")
    for i, header in enumerate(header_list):
        key = str(header.get("key", "")).lower() if isinstance(header, Mapping) else ""
        values = header.get("values") if isinstance(header, Mapping) else None
        if not key or not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.request.headers[{i}]: needs a key and a list of values")
        if key.startswith((":", "grpc-")) or key == "host":
            raise ConfigError(f"{where}.request.headers[{i}]: A43 does not allow matching {key!r}")
        headers.append((key, tuple(str(v) for v in values)))
    return Rule(
        name=str(raw["name"]),
        principals=_strings(source.get("principals", []), f"{where}.source.principals"),
        paths=_strings(request.get("paths", []), f"{where}.request.paths"),
        headers=tuple(headers),
    )


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(raw)


class ScopeRules:
    """The short form: method patterns (`pkg.Svc/Method`, `pkg.Svc/*`) → scopes all required."""

    def __init__(self, rules: Mapping[str, Sequence[str]]) -> None:
        self._rules = [(method_pattern(k), tuple(v)) for k, v in rules.items()]

    def missing(self, path: str, granted: frozenset[str]) -> list[str]:
        needed: list[str] = []
        for pattern, scopes in self._rules:
            if matches(pattern, path):
                needed.extend(s for s in scopes if s not in granted and s not in needed)
        return needed

    def __bool__(self) -> bool:
        return bool(self._rules)
