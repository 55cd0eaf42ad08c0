"""Hot reload: contracts, behaviours, stubs and emulator.yaml read again while serving, by
`emu.reload()`, `emulate --reload` (a file watcher), SIGHUP and the admin API's Reload."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from emulator import Emulator
from emulator.admin.descriptor import pb
from tests.conftest import PROTOS, Running, wait_until

GET = "/acme.shop.v1.Catalog/GetProduct"
PING2 = "/acme.shop.v1.Orders/Ping2"
BEHAVIOR = """\
from emulator import Behavior


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        return {{"name": "{version}"}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the bundled contracts and a behaviour file, to change under the emulator."""
    shutil.copytree(PROTOS, tmp_path / "protos")
    (tmp_path / "behaviors").mkdir()
    write_behavior(tmp_path, "v1")
    yield tmp_path


def write_behavior(root: Path, version: str) -> None:
    (root / "behaviors" / "catalog.py").write_text(BEHAVIOR.format(version=version))


def orders(root: Path) -> Path:
    return root / "protos" / "acme" / "shop" / "v1" / "orders.proto"


def catalog(root: Path) -> Path:
    return root / "protos" / "acme" / "shop" / "v1" / "catalog.proto"


def add_ping2(root: Path) -> None:
    path = orders(root)
    text = path.read_text()
    marker = "  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);"
    assert marker in text
    path.write_text(
        text.replace(
            marker, marker + "\n  rpc Ping2(google.protobuf.Empty) returns (google.protobuf.Empty);"
        )
    )


def name_of(channel: grpc.Channel, product: str = "p1") -> str:
    from emulator.contracts import load_contracts

    spec = load_contracts([PROTOS]).method("acme.shop.v1.Catalog/GetProduct")
    call = channel.unary_unary(
        GET,
        request_serializer=spec.input_class.SerializeToString,
        response_deserializer=spec.output_class.FromString,
    )
    answer: str = call(spec.input_class(product_id=product), timeout=10).name
    return answer


def test_a_reload_serves_the_changed_contracts_and_behaviours(project: Path) -> None:
    with Emulator(protos=project / "protos", behaviors=[project / "behaviors"]) as emu:
        channel = emu.channel()
        assert name_of(channel) == "v1"
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(PING2)(b"", timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        add_ping2(project)
        write_behavior(project, "v2")
        done = emu.reload()
        assert done.ok, done.message
        assert done.message.startswith("reloaded (emu.reload()) in ")
        assert name_of(channel) == "v2"  # the behaviour's file ran afresh
        assert channel.unary_unary(PING2)(b"", timeout=10) == b""  # the new method
        assert "/acme.shop.v1.Orders/Ping2" in emu.server.contracts.methods


def test_a_change_that_does_not_load_keeps_the_old_one_serving(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Emulator(protos=project / "protos", behaviors=[project / "behaviors"]) as emu:
        channel = emu.channel()
        path = catalog(project)
        path.write_text(
            path.read_text().replace("message Product {", "message Product {\n  Moneyy x = 99;")
        )
        done = emu.reload()
        assert not done.ok
        assert "still serving what was loaded before" in done.message
        assert f"{path}:" in done.message and '"Moneyy" is not defined' in done.message
        assert name_of(channel) == "v1"
        shutil.copy(PROTOS / "acme" / "shop" / "v1" / "catalog.proto", path)
        (project / "behaviors" / "catalog.py").write_text("def broken(:\n")
        done = emu.reload()
        assert not done.ok and "catalog.py:1: " in done.message
        assert done.message.endswith("then reload (with --reload, saving the file does)")
        assert name_of(channel) == "v1"
        assert any("reload (emu.reload()) failed" in r.message for r in caplog.records)
        write_behavior(project, "v3")
        assert emu.reload().ok and name_of(channel) == "v3"  # fixed: served at once


def test_what_was_added_at_run_time_survives_unless_it_no_longer_fits(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Emulator(protos=project / "protos") as emu:
        channel = emu.channel()
        kept = emu.stubs.add(
            {
                "method": "acme.shop.v1.Catalog/GetProduct",
                "match": {"request": {"product_id": "s1"}},
                "respond": {"message": {"name": "stubbed"}},
            }
        )
        gone = emu.stubs.add(
            {"method": "acme.shop.v1.Catalog/UpdateProduct", "respond": {"message": {}}}
        )
        fault = emu.fault(
            match={"method": "acme.shop.v1.Catalog/GetProduct", "request": {"product_id": "f1"}},
            abort={"code": "UNAVAILABLE"},
        )
        emu.control.stubs.set_scenario("checkout", "paid")
        assert name_of(channel, "s1") == "stubbed"
        calls = len(emu.calls())
        # UpdateProduct leaves the contract.
        path = catalog(project)
        text = path.read_text()
        line = next(x for x in text.splitlines() if "rpc UpdateProduct" in x)
        path.write_text(text.replace(line + "\n", ""))
        done = emu.reload()
        assert done.ok, done.message
        assert [d.split(":")[0] for d in done.dropped] == [
            "stub UpdateProduct-1 (emu.stubs.add())"
        ] or (len(done.dropped) == 1 and "acme.shop.v1.Catalog/UpdateProduct" in done.dropped[0])
        assert any("reload: dropped stub" in r.message for r in caplog.records)
        assert not gone.active and kept.active
        assert name_of(channel, "s1") == "stubbed" and kept.answered == 2  # its count goes on
        with pytest.raises(grpc.RpcError) as caught:
            name_of(channel, "f1")
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert fault.active
        assert emu.control.stubs.scenario("checkout") == "paid"
        assert len(emu.calls()) == calls + 2  # the journal stays
        kept.undo()
        assert name_of(channel, "s1") != "stubbed"  # undo() reaches the stub served now


def test_reload_under_load_answers_every_call_with_the_old_or_the_new_version(
    project: Path,
) -> None:
    """A bounded run of concurrent calls while the contracts and a behaviour change twice:
    no call fails, and each is answered by a version that was being served."""
    answers: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    with Emulator(protos=project / "protos", behaviors=[project / "behaviors"]) as emu:
        channel = emu.channel()

        def caller() -> None:
            for _ in range(2000):  # bounded, and stopped once the reloads are done
                if stop.is_set():
                    return
                try:
                    answers.append(name_of(channel))
                except BaseException as exc:  # every failure counts
                    failures.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(6)]
        for thread in threads:
            thread.start()
        for version in ("v2", "v3"):
            wait_until(lambda: len(answers) > 20)
            write_behavior(project, version)
            path = catalog(project)
            field = f"  string note_{version} = {90 + int(version[1])};\n"
            path.write_text(
                path.read_text().replace("message Product {\n", "message Product {\n" + field)
            )
            done = emu.reload()
            assert done.ok, done.message
            mark = len(answers)
            wait_until(lambda mark=mark: len(answers) > mark + 30)
            # Once the swap is done, only the calls then in flight (one a thread) may still
            # be the old version's (and be counted in any order with the new ones).
            stale = [a for a in answers[mark:] if a != version]
            assert len(stale) <= len(threads), stale
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]
    assert set(answers) <= {"v1", "v2", "v3"}
    assert {"v1", "v2", "v3"} <= set(answers)


class Watched(Running):
    """`emulate` with its stderr read as it comes, to wait for its log lines."""

    def stderr_so_far(self) -> str:
        return self.stderr

    def admin_http_port(self) -> int:
        found = re.search(r"JSON over HTTP at http://127.0.0.1:(\d+)/", self.emulate.header)
        assert found, self.emulate.header
        return int(found.group(1))

    def stop(self) -> tuple[int, str]:
        self.proc.terminate()
        return self.wait(), self.stderr


def admin_reload(channel: grpc.Channel) -> Any:
    call = channel.unary_unary(
        "/emulator.admin.v1.Admin/Reload",
        request_serializer=pb.ReloadRequest.SerializeToString,
        response_deserializer=pb.ReloadResult.FromString,
    )
    return call(pb.ReloadRequest(), timeout=30)


def test_emulate_reload_watches_the_files_and_the_admin_api_reloads(project: Path) -> None:
    stubs = project / "stubs.yaml"
    stubs.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "s",
                    "method": "acme.shop.v1.Catalog/GetProduct",
                    "match": {"request": {"product_id": "s1"}},
                    "respond": {"message": {"name": "from file v1"}},
                }
            ]
        )
    )
    args = ("--proto", str(project / "protos"), "--behaviors", str(project / "behaviors"))
    with Watched(*args, "--stubs", str(stubs), "--reload", "--admin-http-port", "0") as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert name_of(channel) == "v1"
            write_behavior(project, "v2")  # the watcher sees it
            wait_until(lambda: name_of(channel) == "v2", timeout=20)
            stubs.write_text(stubs.read_text().replace("from file v1", "from file v2"))
            wait_until(lambda: name_of(channel, "s1") == "from file v2", timeout=20)
            (project / "behaviors" / "catalog.py").write_text("def broken(:\n")
            wait_until(lambda: "catalog.py" in proc.stderr_so_far(), timeout=20)
            assert name_of(channel) == "v2"  # still serving what loaded
            write_behavior(project, "v3")
            wait_until(lambda: name_of(channel) == "v3", timeout=20)
            done = admin_reload(channel)
            assert done.message.startswith("reloaded (admin API) in ") and done.services == 2
            (project / "behaviors" / "catalog.py").write_text("def broken(:\n")
            with pytest.raises(grpc.RpcError) as caught:
                admin_reload(channel)
            error: Any = caught.value
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "catalog.py" in error.details() and "still serving" in error.details()
            assert name_of(channel) == "v3"
            from emulator import EmulatorClient
            from emulator.errors import EmulatorError

            with EmulatorClient(proc.target) as client, pytest.raises(EmulatorError) as said:
                client.reload()
            assert "catalog.py:1: " in str(said.value)
            http = proc.admin_http_port()
            answer = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-X",
                    "POST",
                    f"http://127.0.0.1:{http}/admin/v1/reload",
                    "-d",
                    "{}",
                    "-w",
                    "\\n%{http_code}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            body, code = answer.stdout.rsplit("\n", 1)
            assert code == "409" and "catalog.py" in json.loads(body)["message"]
        code, err = proc.stop()
    assert code == 0, err


def test_a_changed_config_applies_what_a_reload_can_and_names_the_rest(
    project: Path,
) -> None:
    config = project / "emulator.yaml"

    def write(name: str, grace: str) -> None:
        config.write_text(
            yaml.safe_dump(
                {
                    "protos": [str(project / "protos")],
                    "server": {"grace_period": grace},
                    "stubs": [
                        {
                            "name": "c",
                            "method": "acme.shop.v1.Catalog/GetProduct",
                            "respond": {"message": {"name": name}},
                        }
                    ],
                }
            )
        )

    write("config v1", "5s")
    with Watched("--config", str(config)) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert name_of(channel) == "config v1"
            write("config v2", "7s")
            proc.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: name_of(channel) == "config v2")
            wait_until(lambda: "server changed in" in proc.stderr_so_far())
            assert "applied at the next start" in proc.stderr_so_far()
            config.write_text("stubs: [\n")
            proc.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload (SIGHUP) failed" in proc.stderr_so_far())
            assert f"{config}:" in proc.stderr_so_far()
            assert name_of(channel) == "config v2"
        code, err = proc.stop()
    assert code == 0, err


def test_a_locked_emulator_reloads_new_contracts_only_once_they_are_locked(
    project: Path,
) -> None:
    from tests.conftest import emulate

    lock = project / "emulator.lock"
    made = emulate("lock", "--proto", str(project / "protos"), "--out", str(lock))
    assert made.returncode == 0, made.stderr
    with Emulator(protos=project / "protos", locked=str(lock)) as emu:
        channel = emu.channel()
        add_ping2(project)
        done = emu.reload()
        assert not done.ok and "acme.shop.v1.Orders/Ping2: added" in done.message
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(PING2)(b"", timeout=10)
        made = emulate("lock", "--proto", str(project / "protos"), "--out", str(lock))
        assert made.returncode == 0, made.stderr
        assert emu.reload().ok  # the change, reviewed and locked
        assert channel.unary_unary(PING2)(b"", timeout=10) == b""


def test_reload_true_without_the_watcher_package_says_what_to_do(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container image leaves watchfiles out: `reload: true` there is one clear error
    before anything serves, naming the other ways to reload."""
    import sys

    from emulator.errors import ConfigError

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # as if it were not installed
    with pytest.raises(ConfigError) as said:
        Emulator(protos=project / "protos", reload=True)
    message = str(said.value)
    assert message.startswith("Emulator(...): reload: true watches files with the watchfiles")
    assert "SIGHUP" in message and "Reload" in message
