"""The auth interceptor: bearer tokens (static or JWT), then authorization (A43 and scopes).

Missing or invalid credentials give UNAUTHENTICATED; a valid caller the policy refuses gets
PERMISSION_DENIED. Both run before faults, stubs and behaviours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from emulator.call import Call, Metadata
from emulator.chain import Interceptor
from emulator.contracts.patterns import matches, method_pattern
from emulator.errors import RpcAbort
from emulator.security.authz import Policy, ScopeRules, joined_values
from emulator.security.tokens import TokenError, TokenVerifier, bearer_token

__all__ = ["AuthInterceptor"]


class AuthInterceptor(Interceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        policy: Policy | None = None,
        scopes: ScopeRules | None = None,
        exempt: Sequence[str] = (),
    ) -> None:
        self._verifier = verifier
        self._policy = policy
        self._scopes = scopes
        self._exempt = tuple(method_pattern(p) for p in exempt)

    def exempt(self, path: str) -> bool:
        return any(matches(p, path) for p in self._exempt)

    async def before(self, call: Call) -> None:
        if not self.exempt(call.spec.path):
            call.principal, call.claims = self.authorize(
                call.spec.path, call.metadata, call.identities
            )

    def authorize(
        self, path: str, metadata: Metadata, identities: Sequence[str]
    ) -> tuple[str | None, Mapping[str, Any]]:
        """The caller's principal and claims, or RpcAbort: UNAUTHENTICATED without valid
        credentials, PERMISSION_DENIED when the scopes or the policy refuse."""
        granted: frozenset[str] = frozenset()
        principal: str | None = None
        claims: Mapping[str, Any] = {}
        if self._verifier.enabled:
            try:
                identity = self._verifier.verify(bearer_token(metadata))
            except TokenError as exc:
                raise RpcAbort(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
            principal, claims, granted = identity.principal, identity.claims, identity.scopes
        method = path.lstrip("/")
        if self._scopes:
            missing = self._scopes.missing(path, granted)
            if missing:
                raise RpcAbort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} requires scope {', '.join(missing)}",
                )
        if self._policy is not None:
            principals = [p for p in (principal, *identities) if p]
            headers = joined_values(metadata)
            refusal = self._policy.decide(path, principals, headers)
            if refusal is not None:
                raise RpcAbort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        return principal, claims
