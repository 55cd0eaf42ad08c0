"""Recording files: one stub file per method under `record.out`, kept whole at every moment.

A file is rewritten (to a temporary name, then renamed over the old one) rather than appended
to, so that a request seen again can join its stub's `sequence`, and so that a reader — replay,
`emulate check`, a person — never meets half a file, even if the recorder is killed. Writes
happen on a thread of their own, and so does turning calls into stubs (JSON forms and
pseudonyms cost a few hundred microseconds a call, which the serving loop would add to every
answer, and to the waits it records). A file is rewritten at most every FLUSH_EVERY seconds,
and less often as it grows: never more than a fifth of the time goes to rewriting. Stubs
already in a file when recording starts are kept, and new calls are added to them.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from emulator.contracts.model import MethodSpec

__all__ = ["RecordingFiles", "recording_path"]

log = logging.getLogger("emulator")

FLUSH_EVERY = 0.2  # seconds between rewrites of a file that changed, at least
PACE = 4  # and at least this many times as long as the last rewrite took
MAX_SEQUENCE = 100  # responses kept for one request (a load test would pile up thousands)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: 3x as fast


def recording_path(out: Path, spec: MethodSpec) -> Path:
    return out / f"{spec.service}.{spec.method}.yaml"


class RecordingFiles:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._stubs: dict[Path, dict[str, dict[str, Any]]] = {}  # file → stub name → stub
        self._dirty: set[Path] = set()
        self._lock = threading.Lock()
        self._working = threading.Lock()  # one thread at a time turns calls into stubs
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.recorded = 0  # calls kept since the start
        self.dropped = 0  # identical requests past MAX_SEQUENCE

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` (which calls `keep`) on the writer's thread: from the serving loop."""
        self._jobs.append(job)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="emulator-recorder", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def keep(self, spec: MethodSpec, name: str, stub: dict[str, Any]) -> None:
        """Add one call's stub (named after its request): a new request is a new stub, the
        same request again one more response of that stub's sequence."""
        path = recording_path(self.out, spec)
        with self._lock:
            stubs = self._stubs.get(path)
            if stubs is None:
                stubs = self._stubs[path] = _read(path)
            old = stubs.get(name)
            if old is not None and len(old.get("sequence", ())) >= MAX_SEQUENCE:
                self.dropped += 1
                return
            stubs[name] = stub if old is None else _joined(old, stub)
            self._dirty.add(path)
            self.recorded += 1

    def flush(self) -> list[Path]:
        """Every call submitted turned into its stub, and every file that changed written now;
        the files written."""
        self._drain()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            contents = {path: list(self._stubs[path].values()) for path in dirty}
        for path, stubs in sorted(contents.items()):
            _write(path, stubs)
        return sorted(contents)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    @property
    def paths(self) -> list[Path]:
        with self._lock:
            return sorted(self._stubs)

    def _drain(self) -> None:
        with self._working:
            while self._jobs:
                self._jobs.popleft()()

    def _run(self) -> None:
        due = 0.0  # when the files may be rewritten next
        while not self._closing:
            self._wake.wait(max(0.0, due - time.monotonic()) if self._dirty else None)
            self._wake.clear()
            self._drain()
            if self._closing or not self._dirty or time.monotonic() < due:
                continue
            started = time.monotonic()
            try:
                self.flush()
            except OSError as exc:  # said once per failure; the next change tries again
                log.error("recordings could not be written under %s: %s", self.out, exc)
            took = time.monotonic() - started
            due = time.monotonic() + max(FLUSH_EVERY, PACE * took)


def _joined(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with `new`'s response after its own (a sequence), recorded at `new`'s time."""
    if "on_message" in old or "on_message" in new:
        return old  # a bidi exchange has no sequence: the first one recorded answers
    out = dict(old)
    responses = list(out.pop("sequence", None) or [out.pop("respond", {})])
    responses.append(new.get("respond", {}))
    out["sequence"] = responses
    out["recorded"] = {**old.get("recorded", {}), "at": new["recorded"]["at"]}
    return out


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OSError(f"{path}: the recording there cannot be read to add to it: {exc}") from exc
    if not isinstance(data, list):
        return {}
    return {s["name"]: s for s in data if isinstance(s, dict) and isinstance(s.get("name"), str)}


def _write(path: Path, stubs: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Recorded by `emulate record`: stubs (docs/stubs.md); replay with --stubs.\n"
        + yaml.dump(stubs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    )
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
