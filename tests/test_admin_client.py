"""`EmulatorClient`: the in-process test API over the admin service, against real emulators.

Each test runs twice: against an in-process `Emulator` (its `target`) and against `emulate` as
a subprocess. Every test has a session of its own, so the two share nothing but the server.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import ConfigError, Emulator, EmulatorClient, EmulatorError
from emulator.security import CertificateAuthority
from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess

CATALOG = "acme.shop.v1.Catalog"
GET = f"{CATALOG}/GetProduct"
ORDERS = "acme.shop.v1.Orders"


@pytest.fixture(scope="module", params=["in-process", "emulate"])
def target(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "in-process":
        with Emulator(protos=PROTOS, behaviors=BEHAVIORS) as emu:
            yield emu.target
    else:
        with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS)) as served:
            yield served.target


@pytest.fixture
def client(target: str) -> Iterator[EmulatorClient]:
    with EmulatorClient(target, session=f"test-{uuid.uuid4().hex}") as emu:
        emu.wait_until_ready(timeout=30)
        yield emu
        emu.reset()


def stock(client: EmulatorClient, product_id: str = "p1") -> int:
    reply = client.stub(CATALOG).GetProduct({"product_id": product_id})
    return int(reply.stock_count)


# -- the emulator ------------------------------------------------------------------------------


def test_info_and_readiness(client: EmulatorClient) -> None:
    info = client.wait_until_ready(timeout=10)
    assert info.services[CATALOG] == (
        "GetProduct",
        "ListProducts",
        "UpdateProduct",
        "GetCategoryTree",
    )
    assert info.session_header == "x-emulator-session" == client.session_header
    assert info.seed == 0 and len(info.contract_fingerprint) == 64 and info.version
    assert client.info().uptime_seconds >= info.uptime_seconds
    assert client.session_metadata == (("x-emulator-session", client.session),)


def test_wait_until_ready_gives_up_with_a_reason() -> None:
    import socket

    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    with (
        EmulatorClient(f"127.0.0.1:{port}") as nobody,
        pytest.raises(EmulatorError, match=r"not ready within 0\.3s"),
    ):
        nobody.wait_until_ready(timeout=0.3)


# -- stubs -------------------------------------------------------------------------------------


def test_stub_for_answers_in_its_block_and_rolls_back(client: EmulatorClient) -> None:
    default = stock(client)
    with client.stub_for(
        GET, match={"request": {"product_id": "p1"}}, respond={"message": {"stock_count": 4242}}
    ) as stub:
        assert stock(client) == 4242
        assert stock(client) == 4242
        assert stub.answered == 2 and stub.active
    assert not stub.active and stub.answered == 2  # what it had when it went
    assert stock(client) == default
    assert client.stubs.stats(own=True) == []


def test_stubs_add_stats_unused_remove(client: EmulatorClient) -> None:
    handle = client.stubs.add(
        [
            {"name": "used", "method": GET, "respond": {"message": {"stock_count": 1}}},
            {"name": "never", "method": f"{ORDERS}/Ping", "match": {"metadata": {"x": "y"}}},
        ]
    )
    assert handle.names == ("used", "never")
    assert stock(client) == 1
    stats = {s["name"]: s for s in client.stubs.stats(own=True)}
    assert stats["used"]["answered"] == 1 and stats["used"]["methods"] == [GET]
    assert stats["used"]["session"] == client.session
    assert "never" in client.stubs.unused() and "used" not in client.stubs.unused()
    assert len(client.stubs) == len(client.stubs.stats())
    removed = client.stubs.remove(["never"])
    assert [s["name"] for s in removed] == ["never"]
    with pytest.raises(EmulatorError, match=r"no stub added at run time .* named never"):
        client.stubs.remove(["never"])
    handle.undo()  # the one left goes; the one removed already is no error
    assert client.stubs.stats(own=True) == []


def test_a_bad_stub_is_a_config_error_naming_the_problem(client: EmulatorClient) -> None:
    with pytest.raises(ConfigError, match=r"GetProdut.*did you mean.*GetProduct") as bad:
        client.stubs.add({"method": f"{CATALOG}/GetProdut", "respond": {"message": {}}})
    assert bad.value.key == "stubs[0].method"
    with pytest.raises(ConfigError, match="stock_cont"):
        client.stub_for(GET, respond={"message": {"stock_cont": 1}})
    assert client.stubs.stats(own=True) == []  # nothing half added


def test_scenarios_are_per_session(client: EmulatorClient) -> None:
    other = client.with_session(f"other-{uuid.uuid4().hex}")
    assert client.stubs.scenario("checkout") == "started"
    client.stubs.set_scenario("checkout", "paid")
    assert client.stubs.scenario("checkout") == "paid"
    assert other.stubs.scenario("checkout") == "started"
    client.reset()
    assert client.stubs.scenario("checkout") == "started"


# -- faults ------------------------------------------------------------------------------------


def test_fault_in_a_block_counts_and_rolls_back(client: EmulatorClient) -> None:
    other = client.with_session(f"other-{uuid.uuid4().hex}")
    with client.fault(
        name="outage", match={"method": f"{CATALOG}/*"}, abort={"code": "UNAVAILABLE"}
    ) as fault:
        with pytest.raises(grpc.RpcError) as failed:
            stock(client)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        assert stock(other) >= 0  # another session's calls do not see it
        assert fault.stats() == {"matched": 1, "injected": 1}
        assert client.fault_stats()["outage"] == {"matched": 1, "injected": 1}
        assert "outage" not in other.fault_stats()
    assert not fault.active and (fault.matched, fault.injected) == (1, 1)
    assert stock(client) >= 0
    assert "outage" not in client.fault_stats()
    assert client.calls(GET)[0].faults == ("outage",)


def test_add_fault_takes_a_rule_mapping_and_bad_rules_name_the_key(
    client: EmulatorClient,
) -> None:
    fault = client.add_fault(
        {"match": {"method": GET}, "when": {"calls": [2]}, "abort": {"code": "ABORTED"}}
    )
    assert fault.name == "fault-1" and fault.session == client.session
    stock(client)
    with pytest.raises(grpc.RpcError):
        stock(client)
    assert fault.injected == 1 and fault.matched == 2
    fault.undo()
    fault.undo()  # once is enough
    with pytest.raises(ConfigError, match="NOT_A_CODE"):
        client.fault(abort={"code": "NOT_A_CODE"})
    with pytest.raises(ConfigError, match="did you mean"):
        client.fault(match={"method": f"{CATALOG}/GetProdut"}, abort={"code": "ABORTED"})


# -- the journal -------------------------------------------------------------------------------


def test_calls_are_records_like_the_in_process_journal(client: EmulatorClient) -> None:
    catalog = client.stub(CATALOG)
    catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")])
    with pytest.raises(grpc.RpcError):
        catalog.GetProduct({"product_id": "missing-1"})
    list(catalog.ListProducts({"category_id": "tools"}))
    calls = client.calls()
    assert [c.method for c in calls] == [GET, GET, f"{CATALOG}/ListProducts"]
    first, missing, listed = calls
    assert first.request.product_id == "p1"  # a message of the served contract
    assert first.raw_requests == (b"\x0a\x02p1",)
    assert first.metadata["x-tenant"] == "acme"
    assert first.metadata[client.session_header] == client.session  # channel() tagged it
    assert first.code is grpc.StatusCode.OK and first.answered_by.startswith("behaviour ")
    assert missing.code is grpc.StatusCode.NOT_FOUND and missing.details == "no product missing-1"
    assert listed.response_count == 3 and listed.responses[-1].name == "Product 3"
    assert client.calls(CATALOG).count == 3  # a service
    assert client.calls(GET).count == 2
    assert client.calls(GET).filter(request={"product_id": "p1"}).count == 1
    assert f"#{first.index} acme.shop.v1.Catalog/GetProduct OK" in calls.describe()
    with pytest.raises(EmulatorError, match="did you mean"):
        client.calls(f"{CATALOG}/GetProdut")


def test_unmatched_calls_carry_near_misses(client: EmulatorClient) -> None:
    client.stub_for(
        GET, name="p2-only", match={"request": {"product_id": "p2"}}, respond={"message": {}}
    )
    stock(client, "p1")
    [missed] = client.unmatched()
    assert missed.near_misses[0].stub == "p2-only"
    assert "product_id" in str(missed.near_misses[0])
    assert "no stub matched; close: p2-only" in client.calls().describe()


def test_assert_called_counts_and_reports_near_misses(client: EmulatorClient) -> None:
    catalog = client.stub(CATALOG)
    catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")])
    catalog.GetProduct({"product_id": "p2"})
    found = client.assert_called(GET, times=1, request={"product_id": "p1"})
    assert [r.request.product_id for r in found] == ["p1"]
    client.assert_called(GET, metadata={"x-tenant": "acme"}, times=1)
    client.assert_called(GET, at_least=2, at_most=2)
    client.assert_not_called(f"{ORDERS}/CreateOrder")
    with pytest.raises(AssertionError) as failed:
        client.assert_called(GET, request={"product_id": "p3"})
    report = str(failed.value)
    assert report.startswith("expected at least 1 call to acme.shop.v1.Catalog/GetProduct with ")
    assert "product_id: expected 'p3', got 'p1'" in report
    with pytest.raises(AssertionError, match="expected at most 1 call"):
        client.assert_called(GET, at_most=1)
    with pytest.raises(AssertionError, match="expected 0 calls"):
        client.assert_not_called(GET)


def test_the_report_is_the_in_process_one() -> None:
    with Emulator(protos=PROTOS, behaviors=BEHAVIORS) as emu:
        remote = EmulatorClient(emu.target, session="s1")
        remote.stub(CATALOG).GetProduct({"product_id": "p1"})
        with pytest.raises(AssertionError) as here:
            emu.control.verify(GET, request={"product_id": "p2"}, session="s1")
        with pytest.raises(AssertionError) as there:
            remote.assert_called(GET, request={"product_id": "p2"})
        assert str(there.value) == str(here.value)
        remote.close()


def test_reset_with_a_session_clears_only_it(client: EmulatorClient) -> None:
    other = client.with_session(f"other-{uuid.uuid4().hex}")
    client.stub_for(GET, respond={"message": {"stock_count": 1}})
    other.stub_for(GET, respond={"message": {"stock_count": 2}})
    assert (stock(client), stock(other)) == (1, 2)
    assert client.reset() == ["journal", "stubs", "scenarios", "faults"]
    assert client.calls().count == 0 and other.calls().count == 1
    assert stock(other) == 2 and stock(client) != 1
    other.reset()


# -- clock and health --------------------------------------------------------------------------


def test_clock(client: EmulatorClient) -> None:
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    try:
        client.clock.freeze(at)
        assert client.clock.now() == at == client.clock.frozen
        client.clock.advance(60)
        assert client.clock.now() == at + datetime.timedelta(minutes=1)
        client.clock.freeze(datetime.datetime(2031, 1, 1))  # naive: UTC
        assert client.clock.now().year == 2031
        client.clock.reset()
        assert client.clock.frozen is None
        client.clock.freeze()
        assert client.clock.frozen is not None
    finally:
        client.clock.reset()
    assert client.clock.frozen is None


def test_set_health(client: EmulatorClient) -> None:
    health = health_pb2_grpc.HealthStub(client.channel())
    ask = health_pb2.HealthCheckRequest(service=CATALOG)
    try:
        client.set_health(CATALOG, "NOT_SERVING")
        assert health.Check(ask).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        client.set_health(CATALOG, "SERVING")
    assert health.Check(ask).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(EmulatorError, match="health status 'POORLY'"):
        client.set_health(CATALOG, "POORLY")


# -- sessions ----------------------------------------------------------------------------------


def test_sessions_see_their_own_stubs_faults_and_calls(target: str) -> None:
    ids = [f"iso-{uuid.uuid4().hex}" for _ in range(2)]
    with EmulatorClient(target, session=ids[0]) as a, EmulatorClient(target, session=ids[1]) as b:
        a.stub_for(GET, name="same", respond={"message": {"stock_count": 10}})
        b.stub_for(GET, name="same", respond={"message": {"stock_count": 20}})  # same name
        b.fault(name="slow-down", match={"method": f"{ORDERS}/Ping"}, abort={"code": "ABORTED"})
        assert (stock(a), stock(a), stock(b)) == (10, 10, 20)
        a.stub(ORDERS).Ping({})
        with pytest.raises(grpc.RpcError):
            b.stub(ORDERS).Ping({})
        assert (a.calls().count, b.calls().count) == (3, 2)
        assert [s["answered"] for s in a.stubs.stats(own=True)] == [2]
        assert "slow-down" not in a.fault_stats()
        with EmulatorClient(target) as shared:  # no session: the operator's view, everything
            sessions = {s["session"] for s in shared.stubs.stats() if s["name"] == "same"}
            assert sessions == set(ids)
            assert shared.calls().count >= 5
        a.reset()
        b.reset()


# -- security of the admin API -----------------------------------------------------------------


def test_token() -> None:
    with Emulator(protos=PROTOS, admin={"token": "s3cret-admin"}) as emu:
        with (
            EmulatorClient(emu.target) as anonymous,
            pytest.raises(EmulatorError, match=r"UNAUTHENTICATED.*Bearer"),
        ):
            anonymous.info()
        with EmulatorClient(emu.target, token="s3cret-admin") as admin:
            assert CATALOG in admin.info().services


def test_mutual_tls() -> None:
    ca = CertificateAuthority()
    server, ci = ca.issue("emulator"), ca.issue("ci", client=True)
    tls = {"cert": server.cert_pem, "key": server.key_pem, "client_ca": ca.cert_pem}
    tls = {k: v.decode() for k, v in tls.items()}
    with Emulator(protos=PROTOS, tls=tls, admin={"identities": ["ci"]}) as emu:
        client_tls = {"ca": ca.cert_pem, "cert": ci.cert_pem, "key": ci.key_pem}
        with EmulatorClient(emu.target, session="tls", tls=client_tls) as admin:
            admin.wait_until_ready(timeout=10)
            assert stock(admin) >= 0
            assert admin.calls(GET).count == 1
        with pytest.raises(ConfigError, match="unknown key 'certificate'"):
            EmulatorClient(emu.target, tls={"certificate": "x"})


def test_an_emulator_without_the_admin_api() -> None:
    with (
        Emulator(protos=PROTOS, admin={"enabled": False}) as emu,
        EmulatorClient(emu.target) as client,
        pytest.raises(EmulatorError, match="serves no emulator admin API"),
    ):
        client.info()
