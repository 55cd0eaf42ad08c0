"""Security: certificates, bearer tokens and JWTs, and per-method authorization.

Names load on first use: cryptography and PyJWT cost start-up time an emulator without TLS or
tokens should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.security.authz import Policy, ScopeRules
    from emulator.security.certs import CertificateAuthority, IssuedCert, write_certs
    from emulator.security.tokens import Identity, TokenError, TokenVerifier, mint

__all__ = [
    "CertificateAuthority",
    "Identity",
    "IssuedCert",
    "Policy",
    "ScopeRules",
    "TokenError",
    "TokenVerifier",
    "mint",
    "write_certs",
]

# Full module names, so that a reader (and tests/test_imports.py) sees what each name imports.
_HOME = {
    "Policy": "emulator.security.authz",
    "ScopeRules": "emulator.security.authz",
    "CertificateAuthority": "emulator.security.certs",
    "IssuedCert": "emulator.security.certs",
    "write_certs": "emulator.security.certs",
    "Identity": "emulator.security.tokens",
    "TokenError": "emulator.security.tokens",
    "TokenVerifier": "emulator.security.tokens",
    "mint": "emulator.security.tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'emulator.security' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
