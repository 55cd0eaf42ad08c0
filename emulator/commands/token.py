"""`emulate token`: mint valid (or deliberately broken) JWTs for tests.

emulate token --secret-env JWT_SECRET --sub ci --scope payments.write --issuer https://issuer.test
emulate token --key jwt-private.pem --alg RS256 --kid k1 --expired
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from emulator._schema import parse_duration
from emulator.errors import ConfigError
from emulator.security.tokens import _default_alg, mint

__all__ = ["run"]


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="emulate token", description=__doc__.splitlines()[0])
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--secret-env", metavar="NAME", help="environment variable with the HS secret")
    key.add_argument("--key", metavar="FILE", help="PEM private key (RS/PS/ES/EdDSA)")
    parser.add_argument("--alg", help="algorithm (default HS256 for a secret, RS256/ES256 by key)")
    parser.add_argument("--kid", help="key id header")
    parser.add_argument("--sub", default="test-user", help="subject (principal)")
    parser.add_argument("--scope", action="append", default=[], help="granted scope; repeatable")
    parser.add_argument("--issuer", help="iss claim")
    parser.add_argument("--audience", help="aud claim")
    parser.add_argument("--expires-in", default="5m", help="lifetime (default 5m)")
    broken = parser.add_mutually_exclusive_group()
    broken.add_argument("--expired", action="store_true", help="exp one minute ago")
    broken.add_argument("--not-yet-valid", action="store_true", help="nbf one hour ahead")
    broken.add_argument("--alg-none", action="store_true", help="unsigned (alg: none)")
    args = parser.parse_args(list(argv))
    signing_key: object = None
    alg = args.alg
    if args.alg_none:
        alg = "none"
    elif args.secret_env:
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise ConfigError(f"--secret-env: environment variable {args.secret_env} is not set")
        signing_key, alg = secret.encode(), alg or "HS256"
    elif args.key:
        try:
            signing_key = serialization.load_pem_private_key(Path(args.key).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"--key {args.key}: not a readable, unencrypted PEM private key ({exc})"
            ) from None
        public = getattr(signing_key, "public_key", None)
        alg = alg or (_default_alg(public()) if public else "") or "RS256"
    else:
        parser.error("give --secret-env NAME or --key FILE (or --alg-none)")
    try:
        lifetime = parse_duration(args.expires_in)
    except ValueError as exc:
        parser.error(f"--expires-in: {exc}")
    try:
        token = mint(
            signing_key,
            alg,
            subject=args.sub,
            scopes=args.scope,
            issuer=args.issuer,
            audience=args.audience,
            expires_in=-60 if args.expired else lifetime,
            not_before_in=3600 if args.not_yet_valid else 0,
            kid=args.kid,
        )
    except (jwt.PyJWTError, TypeError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"cannot sign {alg} with this key: {exc}") from None
    print(token)
    return 0
