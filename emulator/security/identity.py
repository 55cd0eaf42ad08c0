"""The identity interceptor: who the mTLS peer is, and whether it may call this method."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import grpc
from cryptography import x509

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.contracts.patterns import matches, method_pattern
from emulator.errors import RpcAbort

__all__ = ["IdentityInterceptor", "names_in_certificate"]


@functools.lru_cache(maxsize=256)
def names_in_certificate(pem: bytes) -> tuple[str, ...]:
    """Every name a client certificate proves: URI and DNS SANs (SPIFFE ids included), then CN."""
    cert = x509.load_pem_x509_certificate(pem)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    for attribute in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        names.append(str(attribute.value))
    return tuple(dict.fromkeys(names))


class IdentityInterceptor(Interceptor):
    """Sets `call.identities` from the verified client certificate and enforces the allowlist.

    `allowed` maps method patterns (`pkg.Svc/Method`, `pkg.Svc/*`, `*`) to the identities (SAN or
    CN) that may call them; a method no pattern covers is open to any verified client, and so is
    a method `exempt` covers (`tls.exempt`). Health and reflection are methods like any other
    here: `BuiltinGuard` applies `admit()` to them.
    """

    def __init__(self, allowed: Mapping[str, Sequence[str]], exempt: Sequence[str] = ()) -> None:
        self._allowed = [(method_pattern(k), tuple(v)) for k, v in allowed.items()]
        self._exempt = tuple(method_pattern(p) for p in exempt)

    async def before(self, call: Call) -> None:
        # The verified client certificate (PEM), which grpc has under mTLS.
        grpc_ctx = call.servicer_context
        certs = grpc_ctx.auth_context().get("x509_pem_cert") if grpc_ctx is not None else None
        pem = certs[0] if certs else None
        call.identities = names_in_certificate(pem) if pem else ()
        self.admit(call.spec.path, call.identities)

    def admit(self, path: str, identities: Sequence[str]) -> None:
        """RpcAbort (PERMISSION_DENIED) unless a client with `identities` may call `path`."""
        if any(matches(p, path) for p in self._exempt):
            return
        name = path.lstrip("/")
        for pattern, allowed in self._allowed:
            if not matches(pattern, path):
                continue
            if not identities:
                raise RpcAbort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{name} requires a client certificate of: {', '.join(allowed)}",
                )
            if not any(identity in allowed for identity in identities):
                raise RpcAbort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client {identities[0]!r} is not allowed to call {name}",
                )
