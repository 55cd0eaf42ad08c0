"""What mTLS plus JWT verification costs, against plaintext without auth, in one run.

    python bench/security.py [--rounds 3] [--duration 5]

Two emulator processes serve the example contracts: one plaintext without auth, one with mutual
TLS (client certificate required) and RS256 JWTs on every call. The Python load client
(bench/load_client.py, its own process, 32 concurrent calls over 4 channels) drives
GetProduct against each, alternating which goes first. Certificates and keys are made for the run
in a temporary folder. Target: the secured emulator keeps >= 0.80x the plaintext throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from run import REQUEST, Child, start  # noqa: E402 - bench/ helpers, after the path is set

from emulator.security import CertificateAuthority, mint  # noqa: E402

METHOD = "/acme.shop.v1.Catalog/GetProduct"
TARGET_RATIO = 0.80


def material(folder: Path) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca = CertificateAuthority()
    server, client = ca.issue("localhost"), ca.issue("bench-client", client=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files = {
        "ca": ca.cert_pem,
        "server": server.cert_pem,
        "server_key": server.key_pem,
        "client": client.cert_pem,
        "client_key": client.key_pem,
        "jwt_public": public,
    }
    paths = {}
    for name, data in files.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data)
        paths[name] = str(path)
    paths["token"] = mint(
        key,
        "RS256",
        subject="bench",
        issuer="https://issuer.test",
        audience="shop",
        expires_in=3600,
    )
    config = folder / "emulator.yaml"
    config.write_text(
        json.dumps(
            {
                "protos": [str(REPO / "protos")],
                "tls": {
                    "cert": paths["server"],
                    "key": paths["server_key"],
                    "client_ca": paths["ca"],
                },
                "auth": {
                    "jwt": {
                        "keys": [{"file": paths["jwt_public"], "alg": "RS256"}],
                        "issuer": "https://issuer.test",
                        "audience": ["shop"],
                    }
                },
            }
        )
    )  # JSON is YAML
    paths["config"] = str(config)
    return paths


def load(port: int, args: argparse.Namespace, tls: dict[str, str] | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE / "load_client.py"),
        "--target",
        f"127.0.0.1:{port}",
        "--method",
        METHOD,
        "--body-hex",
        REQUEST.hex(),
        "--duration",
        str(args.duration),
    ]
    if tls:
        cmd += [
            "--ca",
            tls["ca"],
            "--cert",
            tls["client"],
            "--key",
            tls["client_key"],
            "--token",
            tls["token"],
        ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=args.duration + 60, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"load client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"]:
        raise SystemExit(f"{result['errors']} calls failed under load: the setup is wrong")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        tls = material(Path(tmp))
        base = [sys.executable, "-m", "emulator", "--port", "0"]
        servers: list[Child] = []
        try:
            plain = start("plaintext", [*base, "--proto", str(REPO / "protos")])
            servers.append(plain)
            secure = start("mTLS + JWT", [*base, "--config", tls["config"]])
            servers.append(secure)
            rounds: dict[str, list[dict[str, Any]]] = {"plaintext": [], "mTLS + JWT": []}
            for index in range(args.rounds):
                order = [(plain, None), (secure, tls)]
                for child, creds in order if index % 2 == 0 else reversed(order):
                    cpu = child.cpu_seconds()
                    result = load(child.port, args, creds)
                    # The Python client may saturate before the server does: server CPU per
                    # call shows the cost even then.
                    used = child.cpu_seconds() - cpu
                    result["cpu_us_per_call"] = used / max(result["requests"], 1) * 1e6
                    rounds[child.name].append(result)
        finally:
            for child in servers:
                child.stop()
    rps = {name: statistics.median(r["rps"] for r in runs) for name, runs in rounds.items()}
    ratio = rps["mTLS + JWT"] / rps["plaintext"]
    cpu = {
        name: statistics.median(r["cpu_us_per_call"] for r in runs) for name, runs in rounds.items()
    }
    # Throughput the server could sustain on one core, from its CPU per call.
    cpu_ratio = cpu["plaintext"] / cpu["mTLS + JWT"]
    print(
        f"GetProduct, 32 concurrent calls, {args.rounds} alternating rounds of "
        f"{args.duration:g}s; median round"
    )
    print(f"{'variant':<14}{'RPS':>8}{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/call':>20}")
    for name, runs in rounds.items():
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        print(f"{name:<14}{rps[name]:>8.0f}{p50:>9.2f}{p99:>9.2f}{cpu[name]:>20.0f}")
    # Client and server share two cores here, so throughput also carries the client's own TLS
    # work; server CPU per call is the emulator's cost alone.
    for label, value in (("throughput", ratio), ("server CPU per call", cpu_ratio)):
        verdict = "PASS" if value >= TARGET_RATIO else "FAIL"
        print(
            f"{verdict}  mTLS + JWT keeps {value:.2f}x plaintext ({label}; "
            f"target >= {TARGET_RATIO:.2f}x, i.e. costs <= 20%)"
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "security.json").write_text(
        json.dumps({"rounds": rounds, "ratio": ratio, "cpu_ratio": cpu_ratio}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
