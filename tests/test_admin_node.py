"""Non-Python clients drive `emulate` end to end over the gRPC admin API: a Node script with
@grpc/grpc-js and @grpc/proto-loader (tests/node/), and grpcurl through reflection. Each adds a
stub and a fault for its session, calls the emulated service, verifies with near misses, lists
its calls and resets its session: no restart, no Python client (tests/admin_flow.py).

The Node dependencies install from tests/node/package-lock.json into tests/node/node_modules
(gitignored) with `npm ci` the first time this runs, or when the lock file changes: a fresh clone
needs only node and npm on PATH and the npm registry. Without node or npm the Node test skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin_flow import FAULT, GET, STUB, check_flow, get_product, grpcurl, listed, verified
from tests.conftest import ROOT, EmulateProcess

NODE_DIR = ROOT / "tests" / "node"
NPM_CI_TIMEOUT = 600  # a cold npm cache on a slow link


@pytest.fixture
def served() -> Iterator[EmulateProcess]:
    """A fresh `emulate --port 0` for each flow: its journal indices start at 1."""
    with EmulateProcess("--proto", "protos") as proc:
        yield proc
        proc.stop()


@pytest.fixture(scope="session")
def node() -> str:
    """node, with tests/node/'s locked dependencies installed (npm ci, once per lock file)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not on PATH: the Node admin client test needs both")
    lock = NODE_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes() + (NODE_DIR / "package.json").read_bytes())
    stamp = NODE_DIR / "node_modules" / f".installed-{digest.hexdigest()[:16]}"
    with open(NODE_DIR / ".npm-ci.lock", "w") as held:  # two suites in one checkout
        fcntl.flock(held, fcntl.LOCK_EX)
        if not stamp.exists():
            # --ignore-scripts: nothing locked needs an install script (protobufjs' postinstall
            # only checks its CLI's versions).
            result = subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed:\n{result.stdout}\n{result.stderr}")
            stamp.touch()
    return node


def test_a_node_grpc_js_client_drives_a_session_end_to_end(
    node: str, served: EmulateProcess
) -> None:
    session = "node-test-1"
    result = subprocess.run(
        [node, str(NODE_DIR / "admin_flow.js"), served.target, session],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_flow(json.loads(result.stdout), session)


def test_grpcurl_drives_a_session_end_to_end(served: EmulateProcess) -> None:
    session, target = "grpcurl-test-1", served.target

    def admin(operation: str, /, **fields: Any) -> dict[str, Any]:
        status, answer = grpcurl(target, f"emulator.admin.v1.Admin/{operation}", fields)
        assert status == 0, (operation, answer)
        return answer

    def both(with_session: str | None) -> dict[str, Any]:
        return {p: get_product(target, p, with_session) for p in ("p1", "p2")}

    out: dict[str, Any] = {}
    added = admin("AddStubs", session=session, stubs=[STUB])
    out["stubs"] = [{k: s.get(k) for k in ("name", "methods", "session")} for s in added["stubs"]]
    fault = admin("AddFault", session=session, rule=FAULT)
    out["fault"] = {k: fault.get(k) for k in ("name", "session", "active")}
    out["session_calls"], out["other_calls"] = both(session), both(None)
    wrong = {"product_id": "p3"}
    out["verify_wrong"] = verified(
        admin("Verify", session=session, method=GET, request=wrong, times=1)
    )
    right = {"product_id": "p1"}
    out["verify_right"] = verified(
        admin("Verify", session=session, method=GET, request=right, times=1)
    )
    out["listed"] = listed(admin("ListCalls", session=session, method=GET))
    out["reset"] = admin("Reset", session=session)["parts"]
    out["after_reset"] = both(session)
    out["listed_after_reset"] = listed(admin("ListCalls", session=session, method=GET))
    stubs, faults = admin("ListStubs", session=session), admin("ListFaults", session=session)
    out["stubs_after_reset"] = [s["name"] for s in stubs.get("stubs", [])]
    out["faults_after_reset"] = [f["name"] for f in faults.get("faults", [])]
    check_flow(out, session)
