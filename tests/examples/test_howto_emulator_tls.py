"""docs/testing.md, `Emulator`: channels and stubs over mutual TLS, as another client too.

The certificates come from `emulate certs`, as docs/security.md makes them, in a folder of the
test's own with the repository's `protos/` beside them.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from emulator.cli import main
from tests.conftest import PROTOS


def test_mutual_tls_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "protos").symlink_to(PROTOS, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert main(["certs", "--out", "certs/", "--client", "ci", "--client", "bob"]) == 0
    bob_pem, bob_key_pem = Path("certs/bob.pem").read_bytes(), Path("certs/bob-key.pem").read_text()

    # region tls
    from emulator import Emulator

    tls = {"cert": "certs/server.pem", "key": "certs/server-key.pem", "client_ca": "certs/ca.pem"}
    client_tls = {"ca": "certs/ca.pem", "cert": "certs/ci.pem", "key": "certs/ci-key.pem"}
    with Emulator(protos="protos/", tls=tls, client_tls=client_tls) as emu:
        emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})  # over mutual TLS
        bob = emu.channel(client_cert=bob_pem, client_key=bob_key_pem)  # call as another client
        # endregion

        get = bob.unary_unary("/acme.shop.v1.Catalog/GetProduct")
        assert get(b"\x0a\x02p1", timeout=10)
        assert [r.code for r in emu.calls()] == [grpc.StatusCode.OK] * 2
