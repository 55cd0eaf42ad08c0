"""Recording files: one stub file per method under `record.out`, kept whole at every moment.

A file is rewritten (to a temporary name, then renamed over the old one) rather than appended
to, so that a request seen again can join its stub's `sequence`, and so that a reader — replay,
`emulate check`, a person — never meets half a file, even if the recorder is killed. Writes
happen on a thread of their own, and so does turning calls into stubs (JSON forms and
pseudonyms cost a few hundred microseconds a call, which the serving loop would add to every
answer, and to the waits it records). A file is rewritten at most every FLUSH_EVERY seconds,
and less often as it grows: never more than a fifth of the time goes to rewriting. Stubs
already in a file when recording starts are kept (those without a name too; its comments are
lost), and new calls are added to them. A file that cannot be read as a
list of stubs stops the recorder before it serves: rewriting it would lose what it holds.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from emulator._files import replace_file
from emulator.contracts.model import MethodSpec
from emulator.errors import ConfigError

__all__ = ["RecordingFiles", "recording_path"]

log = logging.getLogger("emulator")

FLUSH_EVERY = 0.2  # seconds between rewrites of a file that changed, at least
PACE = 4  # and at least this many times as long as the last rewrite took
MAX_SEQUENCE = 100  # responses kept for one request (a load test would pile up thousands)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: 3x as fast
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def recording_path(out: Path, spec: MethodSpec) -> Path:
    return out / f"{spec.service}.{spec.method}.yaml"


class RecordingFiles:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._stubs: dict[Path, dict[str, Any]] = {}  # file → stub name → stub
        self._dirty: set[Path] = set()
        self._lock = threading.Lock()
        self._working = threading.Lock()  # one thread at a time turns calls into stubs
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.recorded = 0  # calls kept since the start
        self.dropped = 0  # identical requests past MAX_SEQUENCE
        self.unwritten: list[Path] = []  # files the last flush could not write
        self._said = ""  # the write error last logged (said once, not at every retry)

    def prepare(self, specs: Iterable[MethodSpec]) -> None:
        """Before serving: the folder made (or there) and writable, and every recording already
        in it read, so that a problem stops the recorder with a message instead of losing calls
        (or the user's file) once it serves. ConfigError naming the file and line."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(
                f"record.out: {out} is a file, not a folder: give --out a folder (it is made "
                "if missing); recordings are written there one file per method",
                key="record.out",
                problem=f"{out} is a file, not a folder",
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=out, prefix=".emulate-record.", suffix=".tmp")
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(
                f"record.out: {out} cannot be written: {exc.strerror}: give --out a folder this "
                "user may write",
                key="record.out",
                problem=f"{out} cannot be written: {exc.strerror}",
            ) from None
        for spec in specs:
            path = recording_path(out, spec)
            if path.exists():
                self._stubs[path] = _read(path)

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
                stubs = self._stubs[path] = _read(path) if path.exists() else {}
            old = stubs.get(name)
            if old is not None and "match" not in stub and old.get("respond") == stub["respond"]:
                return  # the method's UNIMPLEMENTED again: the one stub says it all
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
        failed: list[tuple[Path, OSError]] = []
        for path, stubs in sorted(contents.items()):
            try:
                _write(path, stubs)
            except OSError as exc:
                failed.append((path, exc))
        self.unwritten = [path for path, _ in failed]
        if failed:
            with self._lock:  # written at the next change, or at exit
                self._dirty.update(self.unwritten)
            raise failed[0][1]
        return sorted(contents)

    def close(self) -> None:
        """The last calls written; a file that still cannot be written is logged, and left
        in `unwritten` for the exit status."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.flush()
        except OSError as exc:
            log.error("recordings could not be written under %s: %s", self.out, exc)

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
                self._said = ""
            except OSError as exc:  # said once, not at every retry; retried until exit
                if str(exc) != self._said:
                    self._said = str(exc)
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


def _read(path: Path) -> dict[str, Any]:
    """The stubs of a file recording is to add to, by name. Entries without a name are kept
    under keys of their own, to be written back as they were. ConfigError if the file is not
    a list of stubs: rewriting it would lose it."""
    what_to_do = (
        f"recording writes this method's calls to this file and would lose what it holds: "
        f"fix it, or move it out of {path.parent}"
    )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and opened is not None:  # (an unclosed bracket: where it was opened)
            problem = f"{context} at line {opened.line + 1}: {problem}"
        raise ConfigError(f"{where}: not valid YAML ({problem}): {what_to_do}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot be read ({reason}): {what_to_do}") from None
    if data is None:
        return {}
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}:1: holds a {type(data).__name__}, not a list of stubs: {what_to_do}"
        )
    return {
        item["name"]
        if isinstance(item, dict) and isinstance(item.get("name"), str)
        else f"\0{index}": item
        for index, item in enumerate(data)
    }


def _write(path: Path, stubs: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Recorded by `emulate record`: stubs (docs/stubs.md); replay with --stubs.\n"
        + yaml.dump(stubs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    )
    replace_file(path, text)
