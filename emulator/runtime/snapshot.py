"""What a server serves, as one value: contracts, behaviours, defaults and the handler per method.

Everything that follows from the contracts changes together, so it lives in one frozen
`Snapshot` that the server replaces in one reference assignment (`EmulatorServer.swap`). A call
looks its method handler up in the snapshot of the moment it starts and keeps that handler's
route (its responders, over that snapshot's registry and defaults) to its end; every call after
the swap sees the new snapshot. What lasts across snapshots stays with the server: the chain
(security, faults, journal, limits; their per-method lookups follow method patterns, never the
contracts), the clock, shared state, calls in flight, and journal records, which keep their
own method spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.discovery import BehaviorSource
from emulator.behavior.registry import Registry
from emulator.changes import Changes
from emulator.config import Config
from emulator.contracts import Contracts, load_contracts
from emulator.contracts.builtin import ADMIN_SERVICE, HEALTH_SERVICE, REFLECTION_SERVICES
from emulator.contracts.patterns import check_patterns
from emulator.faults.setup import check_request_match
from emulator.record.replay import prepare_recordings
from emulator.respond.behavior import BehaviorResponder, OverrideResponder
from emulator.respond.defaults import DefaultResponder
from emulator.respond.stubs import StubResponder
from emulator.respond.unimplemented import UnimplementedResponder
from emulator.runtime.handlers import Dispatcher
from emulator.runtime.reflection import Catalogue
from emulator.runtime.routes import Route, method_handlers
from emulator.security.setup import check_policy
from emulator.stubs.files import load_stubs
from emulator.stubs.store import StubSet

__all__ = ["Runtime", "Served", "Snapshot", "build_snapshot", "check_snapshot"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every snapshot of one server shares: the dispatcher that runs its calls and the
    thread pools its sync behaviours run in."""

    dispatcher: Dispatcher
    executor: Executor
    stream_executor: Executor
    proxy: Any = None  # emulator.record.setup.Proxy, when proxy.upstream is set


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """One consistent set of contracts and everything resolved against them."""

    contracts: Contracts
    registry: Registry  # behaviours (and, until the next swap, a test's overrides)
    defaults: DefaultResponses  # and its cache of computed defaults
    handlers: Mapping[str, grpc.RpcMethodHandler]  # method path → ready grpc method handler
    services: tuple[str, ...]  # every service listed: the contracts' own, health, reflection
    unimplemented: UnimplementedResponder  # methods the config marks unimplemented
    stubs: StubSet  # the config's stubs, and (until the next swap) a test's
    catalogue: Catalogue  # what reflection shows of it
    # Said once it serves (after `emulator listening on`, which stays the first line of stdout).
    warnings: tuple[str, ...] = ()
    runtime: Runtime  # the server it was built for

    @property
    def health_services(self) -> list[str]:
        """The contracts' services health reports on: a hidden one is a service the server
        does not have, so health answers NOT_FOUND (Watch: SERVICE_UNKNOWN) for it."""
        hidden = self.unimplemented.hidden_services
        return [name for name in self.contracts.services if name not in hidden]

    def __repr__(self) -> str:
        return f"Snapshot({len(self.contracts.services)} services, {len(self.handlers)} methods)"


class Served(Protocol):
    """What holds the snapshot being served (the server), for the handlers that read it."""

    @property
    def snapshot(self) -> Snapshot: ...


def build_snapshot(
    config: Config,
    behaviors: Sequence[BehaviorSource] = (),
    *,
    contracts: Contracts | None = None,
    runtime: Runtime,
) -> Snapshot:
    """Contracts (loaded from `config.protos` unless given), the behaviours of the config and of
    `behaviors` (files run afresh), defaults and a handler per method. Refuses behaviours that
    do not fit (BehaviorError); the config's checks are `check_snapshot`'s."""
    contracts = contracts or load_contracts(config.protos, config.import_paths)
    # Moved by a test's overrides and by stubs added or removed: each route then works out
    # again which responders may pick its calls (`Route.asked`).
    changes = Changes()
    registry = Registry(contracts, [*config.behaviors, *behaviors], changes=changes)
    defaults = DefaultResponses.from_config(contracts, config)
    # Their patterns first, so a misspelt one gets the "did you mean" of every method pattern.
    check_patterns(
        [p for p in config.method_patterns() if p[1].startswith("unimplemented")], contracts
    )
    unimplemented = UnimplementedResponder(
        contracts.methods, config.unimplemented, config.unimplemented_hidden
    )
    warnings = tuple(
        f"{impl.spec.name} ({impl.origin}) never runs: the config marks the method unimplemented"
        for impl in registry
        if impl.spec.path in unimplemented.messages
    )
    pools = {"executor": runtime.executor, "stream_executor": runtime.stream_executor}
    behaviours = BehaviorResponder(registry, defaults, contracts.pool, **pools)
    source, lines = config.file_lines("stubs")
    loaded, recorded = prepare_recordings(
        load_stubs(config.stubs, contracts, source=source, lines=lines), config
    )
    stubs = StubSet(
        loaded,
        session_header=config.admin.session_header,
        changes=changes,
    )
    dispatcher = runtime.dispatcher
    # Asked in order: unimplemented methods first (nothing else answers them), a test's
    # overrides, stubs, behaviours; the default responder, last, answers what none picks.
    proxy = (runtime.proxy.responder(),) if runtime.proxy is not None else ()
    rest = (behaviours, *proxy, DefaultResponder(defaults))
    responders = (
        *((unimplemented,) if unimplemented else ()),
        OverrideResponder(registry, defaults, contracts.pool, **pools),
        StubResponder(stubs, defaults, rest, seed=config.seed, clock=dispatcher.clock),
        *rest,
    )
    routes = {
        path: Route(spec, responders, dispatcher, changes)
        for path, spec in contracts.methods.items()
    }
    listed = (
        *(s for s in contracts.services if s not in unimplemented.hidden_services),
        HEALTH_SERVICE,
        *REFLECTION_SERVICES,
        # On the emulator's own port unless it has one of its own (emulator.admin).
        *((ADMIN_SERVICE,) if config.admin.enabled and config.admin.port is None else ()),
    )
    return Snapshot(
        contracts=contracts,
        registry=registry,
        defaults=defaults,
        handlers=method_handlers(routes),
        services=listed,
        unimplemented=unimplemented,
        stubs=stubs,
        catalogue=Catalogue(contracts, listed, unimplemented.hidden),
        warnings=(*warnings, *recorded),
        runtime=runtime,
    )


def check_snapshot(config: Config, snapshot: Snapshot) -> None:
    """What the config says of methods must hold for these contracts: every method pattern
    (auth, tls, faults, limits, max_duration) matches a method served, the authorization
    policy's paths exist, and fault rules match fields the requests have. ConfigError if not."""
    contracts = snapshot.contracts
    # (`unimplemented` patterns: checked by build_snapshot, before its responder needs them)
    patterns = [p for p in config.method_patterns() if not p[1].startswith("unimplemented")]
    check_patterns(patterns, contracts)
    check_policy(config, contracts)
    for index, rule in enumerate(config.faults):
        check_request_match(rule, contracts, f"faults[{index}] ({rule.name}).match.request")
    if config.record.pseudonymize and not config.proxy.record:  # (recording checks them itself)
        from emulator.errors import ConfigError
        from emulator.record.pseudonyms import Pseudonymizer
        from emulator.record.setup import located

        try:
            Pseudonymizer.checked(config.record.pseudonymize, None, contracts, need_key=False)
        except ConfigError as exc:
            raise located(config, exc) from None
