"""Bearer tokens: static tokens and JWTs (PyJWT), verified the way a production service would.

Algorithms are pinned per key and never read from the token to choose how to verify: a token's
`alg` only selects among the configured keys, `none` is refused, and a public key can never
verify an HMAC token. Failures name what failed and never echo the token.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from emulator.errors import ConfigError

__all__ = ["Identity", "JwtKey", "TokenError", "TokenVerifier", "bearer_token", "mint"]

HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


_VERIFIED_CACHE = 1024  # tokens remembered after their signature verified
_JSON_KINDS: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    list: "an array",
    dict: "an object",
}


class TokenError(Exception):
    """Why a call's credentials are refused (becomes UNAUTHENTICATED); never holds the token."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    principal: str
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JwtKey:
    alg: str
    key: Any  # bytes secret for HMAC, a cryptography public key otherwise
    kid: str = ""
    source: str = ""  # where it came from, for messages


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The token of `authorization: Bearer <token>`, or TokenError saying what is wrong."""
    values = [v for k, v in metadata if k == "authorization"]
    if not values:
        raise TokenError("missing `authorization` metadata: send `authorization: Bearer <token>`")
    value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenError("`authorization` metadata must be `Bearer <token>`")
    if not token.strip():
        raise TokenError("empty bearer token")
    return token.strip()


class TokenVerifier:
    """Static tokens and JWT keys from the config; `verify(token)` returns an Identity."""

    def __init__(
        self,
        *,
        static: Mapping[str, Identity] | None = None,
        keys: Sequence[JwtKey] = (),
        issuer: str = "",
        audience: Sequence[str] = (),
        leeway: float = 0.0,
        required_claims: Sequence[str] = ("exp",),
    ) -> None:
        self._static = dict(static or {})
        self._keys = list(keys)
        self._issuer = issuer or None
        self._audience = list(audience) or None
        self._leeway = leeway
        self._required = list(required_claims)
        self._verified: dict[str, Identity] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._static or self._keys)

    def verify(self, token: str) -> Identity:
        for known, identity in self._static.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return identity
        if not self._keys:
            raise TokenError("unknown token")
        # Clients send the same token on every call: a token whose signature verified once is
        # only re-checked for its time window (as gateways do), which saves a public-key
        # operation per call. Keyed by the whole token, so any changed byte verifies afresh.
        cached = self._verified.get(token)
        if cached is not None and self._in_window(cached.claims):
            return cached
        identity = self._verify_jwt(token)
        if len(self._verified) >= _VERIFIED_CACHE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = identity
        return identity

    def _in_window(self, claims: Mapping[str, Any]) -> bool:
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, int | float) and now > exp + self._leeway:
            return False
        return not (isinstance(nbf, int | float) and now < nbf - self._leeway)

    def _verify_jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("malformed token: not a known static token nor a JWT") from None
        except jwt.PyJWTError:  # a JWT whose header PyJWT refuses: non-string kid, unknown crit
            raise TokenError("malformed token: the JWT header is not acceptable") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenError("token algorithm 'none' is not accepted: tokens must be signed")
        kid = header.get("kid")
        candidates = [k for k in self._keys if k.alg == alg]
        unknown_kid = ""
        if kid is not None:
            # The key with that id; failing that, keys configured without one, which verify any
            # token by its signature (as Envoy's jwt_authn does: providers stamp a kid on every
            # token, and a PEM key has none). A kid no key carries is refused only when every
            # key has one; otherwise the signature decides and a refusal names the kid.
            with_kid = [k for k in self._keys if k.kid == kid]
            if not with_kid:
                unknown_kid = f"unknown key id (kid) {str(kid)[:64]!r}"
                with_kid = [k for k in self._keys if not k.kid]
                if not with_kid:
                    raise TokenError(unknown_kid)
            candidates = [k for k in with_kid if k.alg == alg]
        if not candidates and unknown_kid:
            raise TokenError(unknown_kid)
        if not candidates:
            allowed = ", ".join(sorted({k.alg for k in self._keys}))
            raise TokenError(f"token algorithm {alg[:16]!r} is not accepted (accepted: {allowed})")
        failure = "signature does not verify"
        if unknown_kid:
            failure = f"{unknown_kid}, and no key without a kid verifies its signature"
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.alg],  # pinned by the key, not by the token
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": self._required, "verify_aud": self._audience is not None},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                # PyJWT refuses some malformed times itself (DecodeError): say which claim.
                failure = _time_claim_problem(_unverified_claims(token)) or _reason(exc)
                break
            # PyJWT reads `"exp": "1700000000"` as a number; the window re-check of a remembered
            # token would not, so such a token would never expire: refuse it (RFC 7519 2).
            problem = _time_claim_problem(claims)
            if problem:
                failure = problem
                break
            return Identity(str(claims.get("sub", "")), _scopes(claims), claims)
        raise TokenError(f"invalid token: {failure}")


def _time_claim_problem(claims: Mapping[str, Any]) -> str:
    """What is wrong with `exp`, `nbf` or `iat`, which must be NumericDates (JSON numbers)."""
    for name in ("exp", "nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = _JSON_KINDS.get(type(value), type(value).__name__)
        elif not math.isfinite(value):
            kind = "a number that is not finite"
        else:
            continue
        return f"claim {name!r} must be a NumericDate (seconds since the epoch), got {kind}"
    return ""


def _unverified_claims(token: str) -> Mapping[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, Mapping) else {}


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired (exp)"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not yet valid (nbf/iat)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer (iss)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience (aud)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing required claim {exc.claim!r}"
    if isinstance(exc, jwt.InvalidKeyError):
        return "the token does not fit the configured key"
    return f"{type(exc).__name__}"  # PyJWT messages may quote token parts: keep the class only


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", claims.get("scopes", ())))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list | tuple):
        return frozenset(str(s) for s in raw)
    return frozenset()


def load_keys(
    *, file: str = "", secret_env: str = "", alg: str = "", kid: str = "", where: str = "jwt key"
) -> list[JwtKey]:
    """Keys from a PEM public key, a JWKS file, or an HMAC secret in an environment variable."""
    if bool(file) == bool(secret_env):
        raise ConfigError(f"{where}: give exactly one of `file` (PEM or JWKS) and `secret_env`")
    if secret_env:
        alg = alg or "HS256"
        if alg not in HMAC_ALGS:
            raise ConfigError(f"{where}: a secret verifies HS256/384/512 only, not {alg}")
        secret = os.environ.get(secret_env)
        if not secret:
            raise ConfigError(
                f"{where}: environment variable {secret_env} is not set (it holds the HMAC secret)"
            )
        return [JwtKey(alg, secret.encode(), kid, f"${secret_env}")]
    path = Path(file)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: {file}: cannot be read: {exc.strerror}") from None
    if text.lstrip().startswith(b"{"):
        return _jwks(text, alg, file, where)
    try:
        public = serialization.load_pem_public_key(text)
    except ValueError:
        raise ConfigError(
            f"{where}: {file}: not a PEM public key nor a JWKS file "
            "(a private key does not belong in the emulator's config)"
        ) from None
    chosen = alg or _default_alg(public)
    if chosen in HMAC_ALGS:
        raise ConfigError(f"{where}: a public key cannot verify {chosen} (HMAC) tokens")
    if chosen not in ASYMMETRIC_ALGS:
        raise ConfigError(f"{where}: unknown algorithm {chosen!r}")
    return [JwtKey(chosen, public, kid, file)]


def _default_alg(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, "ES256")
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    return ""


def _jwks(text: bytes, alg: str, file: str, where: str) -> list[JwtKey]:
    try:
        keyset = jwt.PyJWKSet.from_json(text.decode())
    except (jwt.PyJWTError, ValueError) as exc:
        raise ConfigError(f"{where}: {file}: not a valid JWKS: {exc}") from None
    keys = []
    for jwk in keyset.keys:
        chosen = alg or jwk.algorithm_name
        if chosen in HMAC_ALGS or chosen not in ASYMMETRIC_ALGS:
            continue  # symmetric keys never come from a published key set
        keys.append(JwtKey(chosen, jwk.key, jwk.key_id or "", file))
    if not keys:
        raise ConfigError(f"{where}: {file}: the JWKS holds no usable public key")
    return keys


def mint(
    key: Any,
    alg: str,
    *,
    subject: str = "test-user",
    scopes: Sequence[str] = (),
    issuer: str | None = None,
    audience: str | None = None,
    expires_in: float = 300,
    not_before_in: float = 0,
    kid: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT for tests. Negative `expires_in` makes an expired one, positive
    `not_before_in` one not yet valid; `alg="none"` makes an unsigned one."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + int(expires_in)}
    if not_before_in:
        claims["nbf"] = now + int(not_before_in)
    if scopes:
        claims["scope"] = " ".join(scopes)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    claims.update(extra or {})
    headers = {"kid": kid} if kid else None
    if alg == "none":
        return _unsigned(claims, headers)
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _unsigned(claims: Mapping[str, Any], headers: Mapping[str, Any] | None) -> str:
    import base64

    def part(data: Mapping[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', **(headers or {})})}.{part(claims)}."
