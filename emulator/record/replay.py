"""Recordings loaded as stubs: their timings (`replay.timings`), their age (`record.max_age`)
and whether the contracts served are the ones they were recorded against."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from emulator.config import Config
from emulator.stubs.model import Stub

__all__ = ["prepare_recordings"]


def prepare_recordings(
    stubs: Sequence[Stub], config: Config, now: datetime.datetime | None = None
) -> tuple[list[Stub], list[str]]:
    """The stubs to serve (recordings past `record.max_age` left out), each recording's waits
    scaled as `replay.timings` says; and the warnings to give."""
    if not any(stub.recorded is not None for stub in stubs):
        return list(stubs), []
    from emulator.record.recorder import method_fingerprint

    replay = config.replay
    scale = {"recorded": 1.0, "none": 0.0, "scaled": replay.scale}[replay.timings]
    now = now or datetime.datetime.now(datetime.UTC)
    max_age = config.record.max_age
    kept: list[Stub] = []
    stale: dict[str, int] = {}
    changed: dict[str, str] = {}
    old = 0
    for stub in stubs:
        recorded = stub.recorded
        if recorded is None:
            kept.append(stub)
            continue
        at = _parse(recorded.at)
        if max_age is not None and at is not None and (now - at).total_seconds() > max_age:
            old += 1
            continue
        stub.delay_scale = scale
        for spec in stub.methods:
            if recorded.messages and recorded.messages != method_fingerprint(spec):
                stale[spec.name] = stale.get(spec.name, 0) + 1
                changed.setdefault(spec.name, stub.source)
        kept.append(stub)
    warnings = []
    if replay.scale != 1.0 and replay.timings != "scaled":
        warnings.append(
            f"replay.scale {replay.scale:g} is not used: replay.timings is {replay.timings!r}; "
            "set replay.timings: scaled (--replay-timings scaled) to scale the recorded waits"
        )
    if old:
        warnings.append(
            f"{old} recorded stub{'s' if old != 1 else ''} older than record.max_age "
            f"({_age(max_age or 0)}) left out: record them again"
        )
    for name, count in sorted(stale.items()):
        warnings.append(
            f"{name}: {count} recording{'s' if count != 1 else ''} (first: {changed[name]}) "
            f"{'were' if count != 1 else 'was'} made against other messages than the contracts "
            "served now define: record them again, or check that they still match"
        )
    return kept, warnings


def _parse(text: str) -> datetime.datetime | None:
    if not text:
        return None
    try:
        at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=datetime.UTC)


def _age(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g}d" if days >= 1 else f"{seconds:g}s"
