"""The lock file (`emulator.lock`): the contracts' fingerprints, written by `emulate lock` and
compared by `emulate check --locked` and `locked:` (a server that refuses to start on drift).

YAML, one digest a line, every mapping sorted: a change of contract is a change of a few lines
in review. Reading it names the file and line of what is wrong; a drift names each file, service
and method added, removed or changed, and for a changed method the messages it uses that changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.contracts.fingerprint import Fingerprints
from emulator.errors import ConfigError, ContractsChanged

__all__ = ["LOCK_FILE", "ContractsChanged", "check_lock", "differences", "read_lock", "render"]

LOCK_FILE = "emulator.lock"
VERSION = 1
ACCEPT = "review the change, then run `emulate lock` to accept it"

_HEX = re.compile(r"^[0-9a-f]{64}$")
_HEADER = """\
# emulator.lock: fingerprints (sha256) of the contracts grpc-emulator serves.
# `emulate check --locked` (and `locked:` in emulator.yaml) fail when the contracts differ,
# naming the files, services and methods that changed. Comments, file order and the folder
# the .proto files sit in do not count. Do not edit it: to accept a change, review it, then
# bump the lock with the command below and commit this file with the change.
#   {command}
"""


def render(prints: Fingerprints, command: str) -> str:
    """The lock file's text: a header comment, then every digest in a sorted order."""
    lines = [_HEADER.format(command=command).rstrip("\n")]
    lines += [f"version: {VERSION}", f"fingerprint: {prints.fingerprint}", "files:"]
    lines += [f"  {_key(name)}: {digest}" for name, digest in sorted(prints.files.items())]
    lines.append("services:" + ("" if prints.services else " {}"))
    for service, digest in sorted(prints.services.items()):
        lines += [f"  {_key(service)}:", f"    fingerprint: {digest}", "    methods:"]
        methods = sorted(prints.methods.get(service, {}).items())
        lines += [f"      {_key(m)}: {d}" for m, d in methods] or ["      {}"]
    lines.append("types:" + ("" if prints.types else " {}"))
    lines += [f"  {_key(name)}: {digest}" for name, digest in sorted(prints.types.items())]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    # Proto names and file paths are plain YAML scalars; quote anything else, to be safe.
    return name if re.fullmatch(r"[A-Za-z_][\w./-]*", name) else '"' + name + '"'


def read_lock(path: Path, flag: str = "lock file") -> Fingerprints:
    """The fingerprints a lock file holds; ConfigError naming the file (and line) if it cannot
    be read or is not a lock file."""
    from emulator._yaml import read_yaml

    if not path.exists():
        raise ConfigError(
            f"{flag} {path}: no such file; write it with `emulate lock --proto ...` "
            "(the same --proto flags) and commit it"
        )
    data, lines = read_yaml(path, flag)

    def bad(key: str, problem: str) -> ConfigError:
        line = lines.get(key)
        where = f"{path}:{line}" if line else str(path)
        return ConfigError(
            f"{where}: {problem}; not a lock file as `emulate lock` writes it: write it again "
            "with `emulate lock`"
        )

    if not isinstance(data, dict):
        raise bad("", "expected a mapping of version, fingerprint, files, services, types")
    if data.get("version") != VERSION:
        raise bad("version", f"version must be {VERSION}, got {data.get('version')!r}")

    def digest(value: Any, key: str) -> str:
        if not isinstance(value, str) or not _HEX.match(value):
            raise bad(key, f"{key}: expected a sha256 digest (64 hex digits), got {value!r}")
        return value

    def digests(value: Any, key: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad(key, f"{key}: expected a mapping of names to digests")
        return {str(name): digest(v, f"{key}.{name}") for name, v in value.items()}

    services: dict[str, str] = {}
    methods: dict[str, dict[str, str]] = {}
    listed = data.get("services") or {}
    if not isinstance(listed, dict):
        raise bad("services", "services: expected a mapping of service names")
    for name, entry in listed.items():
        key = f"services.{name}"
        if not isinstance(entry, dict):
            raise bad(key, f"{key}: expected fingerprint and methods")
        services[str(name)] = digest(entry.get("fingerprint"), f"{key}.fingerprint")
        methods[str(name)] = digests(entry.get("methods"), f"{key}.methods")
    return Fingerprints(
        fingerprint=digest(data.get("fingerprint"), "fingerprint"),
        files=digests(data.get("files"), "files"),
        services=services,
        methods=methods,
        types=digests(data.get("types"), "types"),
    )


def differences(locked: Fingerprints, now: Fingerprints) -> list[str]:
    """One line per file, service and method added, removed or changed since `locked`."""
    found = [f"file {name}: {what}" for name, what in _compare(locked.files, now.files)]
    for service, what in _compare(locked.services, now.services):
        if what != "changed":
            found.append(f"service {service}: {what}")
            continue
        before, after = locked.methods.get(service, {}), now.methods.get(service, {})
        changes = _compare(before, after)
        for method, change in changes:
            why = f" ({_why(locked, now, f'{service}/{method}')})" if change == "changed" else ""
            found.append(f"{service}/{method}: {change}{why}")
        if not changes:
            found.append(f"service {service}: changed (its options or the order of its methods)")
    return found


def _compare(before: Mapping[str, str], after: Mapping[str, str]) -> list[tuple[str, str]]:
    names = sorted(set(before) | set(after))
    out = []
    for name in names:
        if name not in before:
            out.append((name, "added"))
        elif name not in after:
            out.append((name, "removed"))
        elif before[name] != after[name]:
            out.append((name, "changed"))
    return out


def _why(locked: Fingerprints, now: Fingerprints, method: str) -> str:
    used = now.uses.get(method, ())
    changed = [t for t in used if locked.types.get(t) != now.types.get(t)]
    if changed:
        return "messages it uses: " + ", ".join(changed)
    return "its request or response type, streaming or options"


def check_lock(now: Fingerprints, path: Path, flag: str = "lock file") -> None:
    """Nothing when `now` matches the lock at `path`; else ContractsChanged saying what
    changed and what to do (ConfigError when the file cannot be used)."""
    locked = read_lock(path, flag)
    if locked == now:
        return
    # The overall digest alone can differ (a file's declaration order): say so rather than
    # nothing.
    lines = differences(locked, now) or ["the contracts' fingerprint"]
    listed = "\n".join(f"  {line}" for line in lines)
    raise ContractsChanged(
        f"the contracts differ from the lock {path} (fingerprint {locked.fingerprint[:12]}, "
        f"served {now.fingerprint[:12]}):\n{listed}\n{ACCEPT}"
    )
