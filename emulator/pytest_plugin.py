"""pytest plugin: the `emulator` fixture (registered through the `pytest11` entry point).

    @pytest.mark.emulator(protos="protos/", behaviors="behaviors/", seed=7)
    def test_checkout(emulator):
        client = ShopClient(emulator.target)
        ...
        emulator.assert_called("acme.shop.v1.Orders/CreateOrder", times=1)

Configure with the marker or the ini options `emulator_protos`, `emulator_behaviors`,
`emulator_stubs`, `emulator_import_paths`, `emulator_seed` (the marker wins); `stubs=[...]` takes
stub files, folders and inline stubs, and a test's `emulator.stub_for(...)` goes at its end.
By default one server per configuration is shared across the session and reset before and
after each test; `@pytest.mark.emulator(fresh=True)` gives the test a server of its own. When a
test fails, its report lists the calls it made; when a behaviour raised during a test, the test
errors at teardown (`raise_behavior_errors=False` opts out).

Remote mode: with a target (the marker's `target=`, then `EMULATOR_TARGET`, then the ini option
`emulator_target`), the fixture is an `EmulatorClient` of that running emulator (a container,
`emulate`) with a session of its own for each test, reset at teardown; the contracts and
behaviours are the running emulator's, so the other options are not used. The marker's
`admin_token=` (or `EMULATOR_ADMIN_TOKEN`) and `admin_tls=` are the client's `token` and `tls`.

pytest loads this module in every run of a project that installs grpc-emulator, so it imports
nothing heavy (grpc, protobuf, the server) until a test asks for the fixture.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from emulator.admin.client import EmulatorClient
    from emulator.testing import Emulator

__all__ = ["EmulatorPool"]

_EMULATOR = pytest.StashKey["Emulator | EmulatorClient"]()
_READY_TIMEOUT = 30.0  # for a container still starting when the tests do
_REMOTE_KEYS = ("target", "admin_token", "admin_tls")  # (tls= is the in-process server's)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("emulator_protos", "contracts for the emulator fixture", type="paths")
    parser.addini("emulator_behaviors", "behaviours for the emulator fixture", type="paths")
    parser.addini("emulator_stubs", "stub files and folders for the emulator fixture", type="paths")
    parser.addini(
        "emulator_import_paths", "extra .proto import roots for the emulator fixture", type="paths"
    )
    parser.addini("emulator_seed", "seed for the emulator fixture", default="0")
    parser.addini(
        "emulator_target",
        "host:port of a running emulator: the fixture drives it remotely (EMULATOR_TARGET wins)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "emulator(protos=..., behaviors=..., stubs=..., seed=..., fresh=False, target=None, "
        "**config): configure the `emulator` fixture; fresh=True gives the test a server of its "
        "own; raise_behavior_errors=False lets behaviours raise without failing the test; "
        "target='host:port' drives a running emulator instead, in a session of the test's own",
    )


class EmulatorPool:
    """Running emulators of this session, one per configuration."""

    def __init__(self) -> None:
        self._running: dict[Any, Emulator] = {}
        self._remote: dict[Any, EmulatorClient] = {}

    def get(self, options: dict[str, Any]) -> Emulator:
        from emulator.testing import Emulator

        key = _frozen(options)
        emu = self._running.get(key)
        if emu is None:
            emu = self._running[key] = Emulator(**options).__enter__()
        return emu

    def remote(self, target: str, token: str | None, tls: Any) -> EmulatorClient:
        """A client of the emulator at `target`, ready (its health SERVING); one per target,
        whose connection each test's session shares."""
        from emulator.admin.client import EmulatorClient

        key = _frozen({"target": target, "token": token, "tls": tls})
        client = self._remote.get(key)
        if client is None:
            client = EmulatorClient(target, token=token, tls=tls)
            try:
                client.wait_until_ready(timeout=_READY_TIMEOUT)
            except BaseException:
                client.close()
                raise
            self._remote[key] = client
        return client

    def close(self) -> None:
        for client in self._remote.values():
            client.close()
        self._remote.clear()
        for emu in self._running.values():
            emu.reset()  # a failure after the last test's teardown is no test's to report
            emu.__exit__(None, None, None)
        self._running.clear()


@pytest.fixture(scope="session")
def emulator_pool() -> Iterator[EmulatorPool]:
    """The session's shared emulators; override to share them more widely or not at all."""
    pool = EmulatorPool()
    yield pool
    pool.close()


@pytest.fixture
def emulator(
    request: pytest.FixtureRequest, emulator_pool: EmulatorPool
) -> Iterator[Emulator | EmulatorClient]:
    """A running emulator, configured by `@pytest.mark.emulator(...)` or the ini options; with
    a target, a client of that emulator in a session of this test's own."""
    __tracebackhide__ = True  # a behaviour failure at teardown shows the behaviour's frames
    remote = _remote(request)
    if remote is not None:
        yield from _remote_emulator(request, emulator_pool, remote)
        return
    options = _options(request)
    if options.pop("fresh", False):
        from emulator.testing import Emulator

        with Emulator(**options) as emu:  # raises behaviour failures at exit, if any
            request.node.stash[_EMULATOR] = emu
            yield emu
        return
    emu = emulator_pool.get(options)
    emu.reset()
    request.node.stash[_EMULATOR] = emu
    try:
        yield emu
        if emu.raise_behavior_errors:
            emu.check_behavior_errors()  # fails this test at teardown, naming the behaviour
    finally:
        emu.reset()  # overrides and state never leak into the next test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    emu = item.stash.get(_EMULATOR, None)
    if emu is not None and report.when == "call" and report.failed:
        report.sections.append(("emulator calls", _calls_section(emu)))
    return report


def _remote_emulator(
    request: pytest.FixtureRequest, pool: EmulatorPool, remote: dict[str, Any]
) -> Iterator[EmulatorClient]:
    import uuid

    shared = pool.remote(remote["target"], remote.get("token"), remote.get("tls"))
    client = shared.with_session(f"pytest-{uuid.uuid4().hex}")
    request.node.stash[_EMULATOR] = client
    try:
        yield client
    finally:
        client.reset()  # the session's stubs, faults, scenarios and calls: the emulator stays


def _remote(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """The target, token and tls of remote mode, or None for an in-process emulator."""
    marker = request.node.get_closest_marker("emulator")
    given = {k: v for k, v in (marker.kwargs if marker else {}).items() if k in _REMOTE_KEYS}
    target = (
        given.get("target")
        or os.environ.get("EMULATOR_TARGET")
        or request.config.getini("emulator_target")
    )
    if not target:
        return None
    token = given.get("admin_token") or os.environ.get("EMULATOR_ADMIN_TOKEN") or None
    return {"target": str(target).strip(), "token": token, "tls": given.get("admin_tls")}


def _calls_section(emu: Emulator | EmulatorClient) -> str:
    # An exception here would be an INTERNALERROR that ends the whole session: never let it.
    try:
        return emu.calls().describe()
    except Exception as exc:
        return f"(the calls could not be listed: {type(exc).__name__}: {exc})"


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    config = request.config
    seed = config.getini("emulator_seed") or 0
    try:
        seed = int(seed)
    except ValueError:
        raise pytest.UsageError(f"emulator_seed must be an integer, not {seed!r}") from None
    options: dict[str, Any] = {
        "protos": [str(p) for p in config.getini("emulator_protos")],
        "behaviors": [str(p) for p in config.getini("emulator_behaviors")],
        "stubs": [str(p) for p in config.getini("emulator_stubs")],
        "import_paths": [str(p) for p in config.getini("emulator_import_paths")],
        "seed": seed,
    }
    marker = request.node.get_closest_marker("emulator")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.emulator takes keyword arguments only")
        options.update(marker.kwargs)
        for key in _REMOTE_KEYS:
            options.pop(key, None)  # (target=None, or the remote client's token and tls)
    if not options["protos"]:
        raise pytest.UsageError(
            "the emulator fixture needs contracts: @pytest.mark.emulator(protos='protos/') or "
            "`emulator_protos = protos/` in the pytest ini options"
        )
    for key in ("protos", "behaviors", "stubs", "import_paths"):
        # Always a list, so that "protos/", "protos" and ["protos"] share one server.
        value = options[key]
        values = value if isinstance(value, list | tuple) else [value]
        options[key] = [_resolved(v, config.rootpath) for v in values]
    return options


def _resolved(value: Any, root: Path) -> Any:
    """Marker paths are relative to the rootdir, so a test runs the same from any directory."""
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        return str(path if path.is_absolute() else root / path)
    return value  # a Behavior class, instance or module; a stub written inline


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value
