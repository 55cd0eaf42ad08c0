"""Contracts: .proto directories, files or descriptor sets → services and methods."""

from __future__ import annotations

import os
from collections.abc import Sequence

from emulator._bounded import BoundedCache
from emulator.contracts.compiler import cache_dir, compile_contracts, compile_contracts_lazily
from emulator.contracts.model import Contracts, MethodSpec, RpcKind, ServiceSpec

__all__ = [
    "Contracts",
    "MethodSpec",
    "RpcKind",
    "ServiceSpec",
    "cache_dir",
    "compile_contracts",
    "load_contracts",
]


def load_contracts(
    inputs: Sequence[str | os.PathLike[str]],
    import_paths: Sequence[str | os.PathLike[str]] = (),
) -> Contracts:
    """Compile or read every input and load it, with the services the emulator adds itself."""
    from emulator.contracts.builtin import builtin_files

    # Loaded contracts are immutable: emulators of one test session share them by content,
    # and one whose contracts are loaded already does not even parse the compiled set.
    key, files = compile_contracts_lazily(inputs, import_paths)
    contracts = _loaded.get(key)
    if contracts is None:
        contracts = _loaded[key] = Contracts(files(), extra_files=builtin_files())
    return contracts


# Loaded contracts (descriptor pools, message classes) by the digest of their files; the
# emulators of a session mostly share a few sets, and one that uses hundreds keeps the latest.
LOADED_CONTRACTS = 16
_loaded: BoundedCache[str, Contracts] = BoundedCache(LOADED_CONTRACTS)
