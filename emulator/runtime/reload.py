"""Hot reload: contracts, behaviours, stubs and emulator.yaml read again, built into a new
snapshot off the event loop, and swapped in between two calls.

`Reloader.reload()` is what `--reload` (`reload: true`, a watcher of the files), SIGHUP, the
admin API's `Reload` and `emu.reload()` all run. Calls in flight finish on the snapshot they
started with; the next call sees the new one. A change that does not compile or load leaves the
old snapshot serving and says why, with file and line. What was added at run time (stubs,
faults, scenario states) is carried over unless it no longer fits the new contracts (then it
is dropped, with a line naming it); the journal, sessions, the clock and `ctx.state` belong to
the server and stay. A test's overrides (`emu.override`) lived in the old registry and end.

Of emulator.yaml, only what the snapshot is made of applies at once (the contracts, behaviours,
stubs, defaults, unimplemented methods, replay timings); a change to anything else (the port,
TLS, auth, faults, telemetry, ...) is said and applies at the next start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.config import Config
from emulator.errors import ConfigError, EmulatorError

if TYPE_CHECKING:
    from emulator.control import ControlPlane
    from emulator.runtime.server import EmulatorServer

__all__ = ["RELOADED_KEYS", "ReloadResult", "Reloader", "attach_reload"]

log = logging.getLogger("emulator")

# The keys of emulator.yaml a snapshot is made of: these apply at a reload.
RELOADED_KEYS = frozenset(
    {
        "protos",
        "import_paths",
        "behaviors",
        "stubs",
        "defaults",
        "unimplemented",
        "unimplemented_hidden",
        "replay",
    }
)


@dataclass
class ReloadResult:
    ok: bool
    message: str  # what was reloaded, or why not
    seconds: float = 0.0
    services: int = 0
    methods: int = 0
    dropped: list[str] = field(default_factory=list)  # run-time stubs and faults that went
    restart: list[str] = field(default_factory=list)  # config keys changed that need one


class Reloader:
    """Reloads of one server, one at a time (a reload asked for during one waits for it)."""

    def __init__(
        self,
        control: ControlPlane,
        load_config: Callable[[], Config] | None = None,
        config_file: str | None = None,
    ) -> None:
        self._control = control
        self._server: EmulatorServer = control.server
        self._load_config = load_config  # how the config was made (file, variables, flags)
        self.config_file = config_file
        self._lock: asyncio.Lock | None = None
        self.reloads = 0  # done
        self.last: ReloadResult | None = None

    def paths(self) -> list[Path]:
        """What a watcher watches: the contracts and their import roots, behaviour files and
        folders, stub files and folders, and emulator.yaml."""
        config = self._server.config
        found: list[Path] = []
        stubs = [s for s in config.stubs if isinstance(s, str)]
        for name in (*config.protos, *config.import_paths, *config.behaviors, *stubs):
            found.append(Path(name))
        if self.config_file:
            found.append(Path(self.config_file))
        if config.locked:  # `emulate lock` accepting a change reloads it
            found.append(Path(config.locked))
        return [p for p in dict.fromkeys(p.resolve() for p in found) if p.exists()]

    async def reload(self, reason: str = "asked") -> ReloadResult:
        """Build everything again and serve it; the result says what happened (never raises
        for a change that does not load: the old snapshot keeps serving)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            result = await self._reload(reason)
        self.last = result
        if result.ok:
            self.reloads += 1
        return result

    async def _reload(self, reason: str) -> ReloadResult:
        server = self._server
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            # Compiling contracts and importing behaviours take a while: off the event loop,
            # so calls keep being answered on the old snapshot meanwhile.
            config, restart = await loop.run_in_executor(None, self._next_config)
            snapshot = await loop.run_in_executor(None, self._build, config)
            # From here to the swap nothing awaits: no stub can be added in between.
            old_config = server.config
            server.config = config
            try:
                dropped = self._control.carry(snapshot)
                await server.swap(snapshot)
            except BaseException:
                server.config = old_config
                raise
        except EmulatorError as exc:
            # (the errors are start-up's, which end "... and start again")
            said = str(exc).removesuffix(" and start again").removesuffix(" and start it again")
            if said != str(exc):
                said += ", then reload (with --reload, saving the file does)"
            message = f"reload ({reason}) failed; still serving what was loaded before: {said}"
            log.error("%s", message)
            return ReloadResult(False, message, time.perf_counter() - started)
        except Exception as exc:  # a bug of ours: said, and the old snapshot still serves
            log.error("reload (%s) failed", reason, exc_info=True)
            return ReloadResult(False, f"reload ({reason}) failed: {exc!r}")
        for line in dropped:
            log.warning("reload: dropped %s", line)
        if restart:
            log.warning(
                "reload: %s changed in %s: applied at the next start",
                ", ".join(restart),
                self.config_file or "the configuration",
            )
        services = len(snapshot.contracts.services)
        methods = len(snapshot.contracts.methods)
        seconds = time.perf_counter() - started
        message = (
            f"reloaded ({reason}) in {seconds:.2f}s: {services} services, {methods} methods, "
            f"{len(snapshot.stubs)} stubs"
        )
        log.info("%s", message)
        return ReloadResult(True, message, seconds, services, methods, dropped, restart)

    def _next_config(self) -> tuple[Config, list[str]]:
        """The config read again (the same one when there is nothing to read it from), with
        only the keys a snapshot is made of taken from it; the other keys that changed."""
        old = self._server.config
        if self._load_config is None:
            return old, []
        new = self._load_config()
        keys = [f.name for f in dataclasses.fields(Config)]
        restart = [k for k in keys if k not in RELOADED_KEYS and getattr(new, k) != getattr(old, k)]
        if not restart:
            return new, []
        merged = dataclasses.replace(new, **{k: getattr(old, k) for k in restart})
        # (its keys' lines are the new file's: stub errors name the lines as they are now)
        object.__setattr__(merged, "_origin", new._origin)
        return merged, restart

    def _build(self, config: Config) -> Any:
        from emulator.runtime.snapshot import build_snapshot

        server = self._server
        snapshot = build_snapshot(config, server._behaviors, runtime=server._runtime)
        if config.locked:  # a locked emulator takes new contracts only once they are locked
            from emulator.contracts.lock import check_lock

            check_lock(snapshot.contracts.fingerprints, Path(config.locked))
        return snapshot


class Watcher:
    """`reload: true`: a reload whenever the files `Reloader.paths()` names change (watchfiles:
    inotify where there is one; a burst of saves is one change)."""

    def __init__(self, reloader: Reloader, debounce_ms: int = 300) -> None:
        self.reloader = reloader
        self.debounce_ms = debounce_ms
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    async def start(self, server: EmulatorServer) -> None:
        paths = self.reloader.paths()
        if not paths:
            log.warning("reload: nothing to watch (no contract, behaviour or stub files)")
            return
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._watch(paths))
        log.info("reload: watching %s", ", ".join(str(p) for p in paths))

    async def _watch(self, paths: list[Path]) -> None:
        from watchfiles import awatch

        assert self._stop is not None
        async for changes in awatch(
            *paths, stop_event=self._stop, debounce=self.debounce_ms, watch_filter=_wanted
        ):
            names = sorted({Path(p).name for _, p in changes})
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            await self.reloader.reload(f"{shown} changed")

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # the watcher's own failure: said, the server still stops
                log.error("reload: the file watcher failed", exc_info=True)


def _wanted(change: Any, path: str) -> bool:
    """Edits of the files a reload reads, not an editor's swap files or Python's caches."""
    name = Path(path).name
    if name.startswith(".") or name.endswith(("~", ".swp", ".tmp", ".pyc")):
        return False
    return "__pycache__" not in Path(path).parts


def attach_reload(
    control: ControlPlane,
    load_config: Callable[[], Config] | None = None,
    config_file: str | None = None,
) -> Reloader:
    """A `Reloader` for `control`'s server (`server.reloader`); with `reload: true`, the
    watcher that runs it on file changes too."""
    reloader = Reloader(control, load_config, config_file)
    server = control.server
    server.reloader = reloader
    if server.config.reload:
        if importlib.util.find_spec("watchfiles") is None:
            raise ConfigError(
                f"{server.config.where('reload')}: reload: true watches files with the "
                "watchfiles package, which this installation lacks (the container image leaves "
                "it out): pip install watchfiles, or reload with SIGHUP or the admin API's "
                "Reload instead"
            )
        server.companions.append(Watcher(reloader))
    return reloader
