"""The proxy of one server, from its config: the upstream channel, and when it records, the
recorder, its pseudonymizer and its files. Every snapshot's proxy responder shares it; the
server closes it once its last call has ended."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from emulator.config import Config
from emulator.contracts.model import Contracts
from emulator.errors import ConfigError
from emulator.record.files import RecordingFiles
from emulator.record.recorder import Recorder
from emulator.respond.proxy import ProxyResponder, Upstream

__all__ = ["Proxy", "build_proxy", "located"]

_OWN_PREFIXES = ("x-emulator-", "x-envoy-fault-")  # the emulator's fault and session headers


class Proxy:
    def __init__(
        self, config: Config, contracts: Contracts, secret_headers: Collection[str]
    ) -> None:
        proxy = config.proxy
        self.upstream = Upstream(proxy)
        self.methods = proxy.methods
        self.session_header = config.admin.session_header.lower()
        self.files: RecordingFiles | None = None
        self.recorder: Recorder | None = None
        self.pseudonymizer: Any = None
        if proxy.record:
            record = config.record
            self.pseudonymizer = _pseudonymizer(config, contracts)
            self.files = RecordingFiles(Path(record.out))
            self.files.prepare(contracts.methods.values())
            self.recorder = Recorder(
                self.files,
                ignore_fields=record.ignore_fields,
                pseudonymizer=self.pseudonymizer,
                secret_headers=secret_headers,
            )

    def own_header(self, key: str) -> bool:
        return key == self.session_header or key.startswith(_OWN_PREFIXES)

    def responder(self) -> ProxyResponder:
        return ProxyResponder(
            self.upstream, self.methods, own_headers=self.own_header, recorder=self.recorder
        )

    async def close(self) -> None:
        await self.upstream.close()
        if self.files is not None:
            self.files.close()


def build_proxy(
    config: Config, contracts: Contracts, secret_headers: Collection[str]
) -> Proxy | None:
    if not config.proxy.upstream:
        if config.proxy.record:
            raise ConfigError(
                "proxy.record: recording needs the service to record: set proxy.upstream "
                "(`emulate record --upstream HOST:PORT`)",
                key="proxy.record",
                problem="needs proxy.upstream",
            )
        return None
    # (proxy.upstream itself is checked with the rest of the config: emulator.config)
    return Proxy(config, contracts, secret_headers)


def _pseudonymizer(config: Config, contracts: Contracts) -> Any:
    rules = config.record.pseudonymize
    if not rules:
        return None
    from emulator.record.pseudonyms import Pseudonymizer

    variable = config.record.key_env
    key = os.environ.get(variable, "").encode() or None
    try:
        return Pseudonymizer.checked(list(rules), key, contracts, variable=variable)
    except ConfigError as exc:
        raise located(config, exc) from None


def located(config: Config, exc: ConfigError) -> ConfigError:
    """The error of a check that needed the contracts, led by the file and line of its key
    when a config file set it (`emulator.yaml:4: record.pseudonymize[0].kind: ...`)."""
    place = config.where(exc.key or "")
    if not re.search(r":\d+$", place):
        return exc  # set on the command line, or by Emulator(...): the key says it all
    return ConfigError(f"{place}: {exc}", key=exc.key, problem=exc.problem)
