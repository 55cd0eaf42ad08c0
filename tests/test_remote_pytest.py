"""The pytest plugin's remote mode, and sessions side by side on one emulator.

One test module (`MODULE`) runs unchanged against an in-process emulator and, with
`EMULATOR_TARGET`, against `emulate` as a subprocess, where each test gets a session of its own.
Then 8 threads, each with a client and session of its own, add stubs of the same names with
other answers, and faults, on one emulator: none sees another's.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from emulator import EmulatorClient
from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""

MODULE = """
import datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.emulator(protos="protos/", behaviors="behaviors/")

CATALOG = "acme.shop.v1.Catalog"
GET = CATALOG + "/GetProduct"
PING = "acme.shop.v1.Orders/Ping"


def test_a_stub_for_the_test(emulator):
    with emulator.stub_for(
        GET, match={"request": {"product_id": "p1"}}, respond={"message": {"stock_count": 7}}
    ) as stub:
        reply = emulator.stub(CATALOG).GetProduct({"product_id": "p1"})
    assert reply.stock_count == 7 and stub.answered == 1
    emulator.assert_called(GET, times=1, request={"product_id": "p1"})
    emulator.stubs.add({"name": "left-behind", "method": GET, "respond": {"message": {}}})


def test_each_test_starts_afresh(emulator):
    assert emulator.calls().count == 0
    assert "left-behind" not in [s["name"] for s in emulator.stubs.stats()]
    reply = emulator.stub(CATALOG).GetProduct({"product_id": "p1"})
    assert reply.product_id == "p1"  # the behaviour, not the stub of the test before
    assert emulator.calls(GET).last.request.product_id == "p1"


def test_a_fault_for_the_test(emulator):
    orders = emulator.stub("acme.shop.v1.Orders")
    with emulator.fault(match={"method": PING}, abort={"code": "UNAVAILABLE"}) as fault:
        with pytest.raises(grpc.RpcError) as failed:
            orders.Ping({})
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    assert fault.stats() == {"matched": 1, "injected": 1}
    orders.Ping({})
    assert [c.code for c in emulator.calls(PING)] == [grpc.StatusCode.UNAVAILABLE,
                                                      grpc.StatusCode.OK]
    emulator.assert_called(PING, at_least=2, at_most=2)


def test_near_misses(emulator):
    emulator.stub_for(GET, name="p2", match={"request": {"product_id": "p2"}},
                      respond={"message": {}})
    emulator.stub(CATALOG).GetProduct({"product_id": "p1"})
    [missed] = emulator.unmatched(GET)
    assert missed.near_misses[0].stub == "p2"
    with pytest.raises(AssertionError, match="product_id: expected 'p2', got 'p1'"):
        emulator.assert_called(GET, request={"product_id": "p2"})
    emulator.assert_not_called(PING)


def test_scenarios_clock_and_health(emulator):
    emulator.stubs.set_scenario("checkout", "paid")
    assert emulator.stubs.scenario("checkout") == "paid"
    at = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    emulator.clock.freeze(at)
    emulator.clock.advance(30)
    assert emulator.clock.now() == at + datetime.timedelta(seconds=30)
    emulator.clock.reset()
    health = health_pb2_grpc.HealthStub(emulator.channel())
    emulator.set_health(CATALOG, "NOT_SERVING")
    ask = health_pb2.HealthCheckRequest(service=CATALOG)
    assert health.Check(ask).status == health_pb2.HealthCheckResponse.NOT_SERVING
    emulator.set_health(CATALOG, "SERVING")
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(PROTOS, pytester.path / "protos")
    shutil.copytree(BEHAVIORS, pytester.path / "behaviors")
    pytester.makeini(INI)
    return pytester


@pytest.fixture(scope="module")
def served() -> Iterator[EmulateProcess]:
    with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS)) as process:
        yield process


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def runtime_stubs(target: str) -> list[dict[str, Any]]:
    with EmulatorClient(target) as operator:
        return [s for s in operator.stubs.stats() if s["source"].startswith("admin")]


# Beside the module, not in it: what each test's fixture was, and how many calls it saw.
SPY = """
import pytest

@pytest.fixture(autouse=True)
def spy(emulator):
    yield  # (torn down before the emulator fixture: its calls are still there)
    with open("seen.txt", "a") as out:
        session = getattr(emulator, "session", None)
        out.write(f"{type(emulator).__name__} {session} {emulator.calls().count}\\n")
"""


def test_one_module_in_process_and_remote(
    project: pytest.Pytester, served: EmulateProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_shop=MODULE)
    project.makeconftest(SPY)
    seen = project.path / "seen.txt"
    monkeypatch.delenv("EMULATOR_TARGET", raising=False)
    run(project).assert_outcomes(passed=5)
    local = [line.split() for line in seen.read_text().splitlines()]
    assert [kind for kind, _, _ in local] == ["Emulator"] * 5

    seen.unlink()
    monkeypatch.setenv("EMULATOR_TARGET", served.target)
    run(project).assert_outcomes(passed=5)
    remote = [line.split() for line in seen.read_text().splitlines()]
    assert [kind for kind, _, _ in remote] == ["EmulatorClient"] * 5
    sessions = [session for _, session, _ in remote]
    assert len(set(sessions)) == 5 and all(s.startswith("pytest-") for s in sessions)
    # The same calls, counted in the test's session of the remote journal as in-process.
    assert [count for _, _, count in remote] == [count for _, _, count in local] == [
        "1", "1", "2", "1", "0",
    ]  # fmt: skip
    with EmulatorClient(served.target) as operator:
        tagged = [c.metadata.get(operator.session_header) for c in operator.calls()]
    assert not [s for s in tagged if s in sessions]  # each session's reset dropped its calls
    assert runtime_stubs(served.target) == []  # and its stubs


def test_the_ini_option_and_the_marker_name_the_target(
    project: pytest.Pytester, served: EmulateProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMULATOR_TARGET", raising=False)
    project.makeini(INI + f"emulator_target = {served.target}\n")
    project.makepyfile(
        test_where=f"""
        import pytest

        def test_ini(emulator):
            assert emulator.target == {served.target!r} and emulator.session.startswith("pytest-")

        @pytest.mark.emulator(target={served.target!r})
        def test_marker(emulator):
            assert emulator.target == {served.target!r}
            assert emulator.session.startswith("pytest-")
        """
    )
    run(project).assert_outcomes(passed=2)


def test_a_failed_remote_test_reports_its_session_calls(
    project: pytest.Pytester, served: EmulateProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMULATOR_TARGET", served.target)
    project.makepyfile(
        test_fails="""
        def test_fails(emulator):
            emulator.stub_for("acme.shop.v1.Catalog/GetProduct", name="wants-p2",
                              match={"request": {"product_id": "p2"}}, respond={"message": {}})
            emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
            assert False, "the test's own failure"
        """
    )
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- emulator calls -*",
            '#* acme.shop.v1.Catalog/GetProduct OK *{"productId": "p1"}',
            "*no stub matched; close: wants-p2: *product_id*",
        ]
    )
    assert runtime_stubs(served.target) == []


def test_an_unreachable_target_is_an_error_saying_so(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    project.makepyfile(
        test_nowhere=f"""
        import pytest

        @pytest.mark.emulator(target="127.0.0.1:{port}")
        def test_nowhere(emulator):
            pass
        """
    )
    monkeypatch.setattr("emulator.admin.client._POLL", 0.01)
    from emulator import pytest_plugin

    monkeypatch.setattr(pytest_plugin, "_READY_TIMEOUT", 0.5)
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*was not ready within 0.5s*"])


# -- 8 sessions at once ------------------------------------------------------------------------

GET = "acme.shop.v1.Catalog/GetProduct"
PING = "acme.shop.v1.Orders/Ping"
WORKERS = 8


def test_parallel_sessions_never_see_each_other(served: EmulateProcess) -> None:
    start = threading.Barrier(WORKERS)
    results: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with EmulatorClient(served.target, session=f"worker-{n}-{uuid.uuid4().hex}") as emu:
                # Same names in every session, different answers; a fault in the odd ones.
                emu.stubs.add(
                    {"name": "stock", "method": GET, "respond": {"message": {"stock_count": n}}},
                    {
                        "name": "named",
                        "method": GET,
                        "match": {"request": {"product_id": "named"}},
                        "respond": {"message": {"name": f"worker {n}"}},
                    },
                )
                if n % 2:
                    emu.fault(name="outage", match={"method": PING}, abort={"code": "ABORTED"})
                start.wait(timeout=30)  # every session's stubs and faults are in before any call
                catalog, orders = emu.stub("acme.shop.v1.Catalog"), emu.stub("acme.shop.v1.Orders")
                stocks = [
                    catalog.GetProduct({"product_id": "p1"}).stock_count for _ in range(n + 1)
                ]
                name = catalog.GetProduct({"product_id": "named"}).name
                try:
                    orders.Ping({})
                    ping = "OK"
                except grpc.RpcError as exc:
                    ping = exc.code().name
                start.wait(timeout=30)  # every session's calls are made before any looks
                results[n] = {
                    "stocks": stocks,
                    "name": name,
                    "ping": ping,
                    "calls": emu.calls().count,
                    "gets": emu.calls(GET).count,
                    "sessions": {c.metadata[emu.session_header] for c in emu.calls()},
                    "stubs": sorted((s["name"], s["answered"]) for s in emu.stubs.stats(own=True)),
                    "faults": emu.fault_stats(),
                    "session": emu.session,
                }
                emu.assert_called(GET, times=n + 2)
                emu.assert_called(PING, times=1)
                start.wait(timeout=30)
                emu.reset()
        except BaseException as exc:  # reported by the test, with the worker's traceback
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    assert sorted(results) == list(range(WORKERS))
    for n, got in results.items():
        assert got["stocks"] == [n] * (n + 1)
        assert got["name"] == f"worker {n}"
        assert got["ping"] == ("ABORTED" if n % 2 else "OK")
        assert (got["calls"], got["gets"]) == (n + 3, n + 2)
        assert got["sessions"] == {got["session"]}
        assert got["stubs"] == [("named", 1), ("stock", n + 1)]
        expected = {"outage": {"matched": 1, "injected": 1}} if n % 2 else {}
        assert got["faults"] == expected
    assert runtime_stubs(served.target) == []
