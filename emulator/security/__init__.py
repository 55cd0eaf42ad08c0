"""Security: certificates, bearer tokens and JWTs, and per-method authorization."""

from __future__ import annotations

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
