"""The leak check: the lines of recorded files where an original value still appears."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["MIN_LEAK_LENGTH", "leaks"]

# Shorter originals ("US", "42", "Bob") are everywhere in a recording by chance: the leak check
# would cry wolf on every line, so it leaves them out.
MIN_LEAK_LENGTH = 4


def leaks(paths: Iterable[Path], originals: Iterable[str] | Mapping[str, str]) -> list[str]:
    """Each line of the files (folders are searched through) where an original value appears,
    as `path:line: ...`: the check that a recording holds no real data. The message names the
    field (pass `Pseudonymizer.labels`) but never the value, which is real data.

    Found regardless of case, and in JSON's escaped form too. Originals shorter than
    MIN_LEAK_LENGTH are left out (they appear everywhere by chance), and one made of digits
    counts only where no digit touches it (1234 is not in 2012345).
    """
    labels: Mapping[str, str] = originals if isinstance(originals, Mapping) else {}
    by_head: dict[str, list[tuple[str, str, bool]]] = {}
    for original in originals:
        if len(original) < MIN_LEAK_LENGTH:
            continue
        label = labels.get(original, "")
        for form in {original, json.dumps(original)[1:-1]}:
            lowered = form.lower()
            if len(lowered) >= MIN_LEAK_LENGTH:
                entry = (lowered, label, original.isdigit())
                by_head.setdefault(lowered[:MIN_LEAK_LENGTH], []).append(entry)
    found: list[str] = []
    if not by_head:
        return found
    for path in _files(paths):
        text = path.read_bytes().decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            hits = sorted(set(_hits(line.lower(), by_head)))
            found.extend(
                f"{path}:{number}: an original value of a pseudonymized field ({label})"
                if label
                else f"{path}:{number}: an original value that was pseudonymized"
                for label in hits
            )
    return found


def _hits(line: str, by_head: Mapping[str, list[tuple[str, str, bool]]]) -> Iterable[str]:
    for i in range(len(line) - MIN_LEAK_LENGTH + 1):
        for value, label, digits in by_head.get(line[i : i + MIN_LEAK_LENGTH], ()):
            if not line.startswith(value, i):
                continue
            end = i + len(value)
            if digits and (
                (i and line[i - 1].isdigit()) or (end < len(line) and line[end].isdigit())
            ):
                continue
            yield label


def _files(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path
