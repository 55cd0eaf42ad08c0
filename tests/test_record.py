"""Record a real service (tests/upstream.py: a grpc.aio server of its own, not the emulator),
replay the recordings, and proxy what no stub answers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_status import rpc_status

from emulator import Emulator
from emulator.contracts import load_contracts
from tests.conftest import PROTOS, EmulateProcess, emulate, wait_until
from tests.upstream import Upstream, running_upstream

GET = "/acme.shop.v1.Catalog/GetProduct"
LIST = "/acme.shop.v1.Catalog/ListProducts"
UPLOAD = "/acme.shop.v1.Orders/UploadLineItems"
CHAT = "/acme.shop.v1.Orders/Chat"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with running_upstream() as real:
        yield real


class Client:
    """Raw calls (bytes in, bytes out), so replayed answers compare byte for byte."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)

    def unary(self, path: str, data: bytes, **kw: Any) -> tuple[bytes, Any, Any]:
        answer, call = self.channel.unary_unary(path).with_call(data, timeout=10, **kw)
        return answer, dict(call.initial_metadata()), dict(call.trailing_metadata())

    def error(self, path: str, data: bytes, **kw: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            self.channel.unary_unary(path)(data, **{"timeout": 10, **kw})
        return caught.value

    def server_stream(self, path: str, data: bytes) -> list[bytes]:
        return list(self.channel.unary_stream(path)(data, timeout=10))

    def client_stream(self, path: str, items: list[bytes]) -> bytes:
        answer: bytes = self.channel.stream_unary(path)(iter(items), timeout=10)
        return answer

    def bidi(self, path: str, items: list[bytes]) -> list[bytes]:
        return list(self.channel.stream_stream(path)(iter(items), timeout=10))

    def close(self) -> None:
        self.channel.close()


def messages(upstream: Upstream) -> dict[str, Any]:
    return {
        "get": upstream.cls("acme.shop.v1.Catalog/GetProduct").input_class,
        "list": upstream.cls("acme.shop.v1.Catalog/ListProducts").input_class,
        "item": upstream.cls("acme.shop.v1.Orders/UploadLineItems").input_class,
        "chat": upstream.cls("acme.shop.v1.Orders/Chat").input_class,
    }


def session_of_calls(client: Client, m: dict[str, Any]) -> dict[str, Any]:
    """The same calls, against whatever `client` talks to: what each answered."""
    out: dict[str, Any] = {}
    out["p1"] = client.unary(GET, m["get"](product_id="p1").SerializeToString())
    out["p1 again"] = client.unary(GET, m["get"](product_id="p1").SerializeToString())
    out["p2"] = client.unary(GET, m["get"](product_id="p2").SerializeToString())
    error = client.error(GET, m["get"](product_id="missing").SerializeToString())
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    out["missing"] = (
        error.code(),  # type: ignore[attr-defined]
        error.details(),  # type: ignore[attr-defined]
        [d.SerializeToString() for d in status.details] if status else None,
    )
    out["list"] = client.server_stream(LIST, m["list"](category_id="c").SerializeToString())
    items = [m["item"](product_id=f"p{n}", quantity=n).SerializeToString() for n in range(1, 4)]
    out["upload"] = client.client_stream(UPLOAD, items)
    out["upload other"] = client.client_stream(UPLOAD, items[:2])
    chats = [m["chat"](order_id="o1", text=t).SerializeToString() for t in ("hi", "bye")]
    out["chat"] = client.bidi(CHAT, chats)
    return out


def test_recordings_replay_byte_for_byte(upstream: Upstream, tmp_path: Path) -> None:
    m = messages(upstream)
    out = tmp_path / "recordings"
    target = f"127.0.0.1:{upstream.port}"
    direct = Client(target)
    real = session_of_calls(direct, m)
    direct.close()
    with Emulator(
        protos=PROTOS,
        proxy={"upstream": target, "record": True},
        record={"out": str(out)},
    ) as emu:
        client = Client(emu.target)
        proxied = session_of_calls(client, m)
        client.close()
        answered = {r.answered_by for r in emu.calls()}
    assert answered == {f"proxy {target}"}
    # Through the proxy, every answer is the upstream's own (the counts in tags go on: the
    # upstream numbers the GetProduct calls it has served).
    assert proxied["missing"] == real["missing"]
    assert proxied["list"] == real["list"] and proxied["chat"] == real["chat"]
    assert proxied["upload"] == real["upload"]
    assert proxied["p1"][1]["x-upstream"] == "real"
    assert proxied["p1"][2]["x-served-by"] == "upstream-1"
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "acme.shop.v1.Catalog.GetProduct.yaml",
        "acme.shop.v1.Catalog.ListProducts.yaml",
        "acme.shop.v1.Orders.Chat.yaml",
        "acme.shop.v1.Orders.UploadLineItems.yaml",
    ]
    stubs = yaml.safe_load((out / "acme.shop.v1.Catalog.GetProduct.yaml").read_text())
    assert len(stubs) == 3  # p1 (twice: a sequence), p2, missing
    assert all(s["recorded"]["upstream"] == target for s in stubs)
    # Replayed, with no upstream at all: the same bytes, headers, trailers and statuses.
    with Emulator(protos=PROTOS, stubs=[str(out)]) as emu:
        client = Client(emu.target)
        replayed = session_of_calls(client, m)
        client.close()
        assert all(r.answered_by.startswith("stub ") for r in emu.calls())
    assert replayed == proxied


def test_the_proxy_answers_only_what_nothing_else_does(upstream: Upstream) -> None:
    """Stubs first, then the proxy for the methods it names; other methods get the default.
    Faults run before any of them: a call they fail never reaches the upstream."""
    m = messages(upstream)
    target = f"127.0.0.1:{upstream.port}"
    stub = {
        "method": "acme.shop.v1.Catalog/GetProduct",
        "match": {"request": {"product_id": "p1"}},
        "respond": {"message": {"name": "from a stub"}},
    }
    fault = {
        "name": "down",
        "match": {"method": "acme.shop.v1.Catalog/GetProduct", "request": {"product_id": "f"}},
        "abort": {"code": "UNAVAILABLE"},
    }
    before = len(upstream.seen.get("GetProduct", []))
    with Emulator(
        protos=PROTOS,
        stubs=[stub],
        faults=[fault],
        proxy={"upstream": target, "methods": ["acme.shop.v1.Catalog/*"]},
    ) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        assert catalog.GetProduct({"product_id": "p1"}).name == "from a stub"
        assert catalog.GetProduct({"product_id": "p2"}).name == "Real p2"
        with pytest.raises(grpc.RpcError) as caught:
            catalog.GetProduct({"product_id": "f"})
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        order = emu.stub("acme.shop.v1.Orders").CreateOrder({"customer_id": "c1"})
        assert not order.customer.email.endswith("@real-mail.com")  # the default: not proxied
        by = [r.answered_by for r in emu.calls()]
    assert by[0].startswith("stub ") and by[1] == f"proxy {target}" and by[3] == "default"
    assert [r.product_id for r in upstream.seen["GetProduct"][before:]] == ["p2"]
    del m


def test_headers_deadlines_and_cancels_go_upstream(upstream: Upstream, tmp_path: Path) -> None:
    """The call goes on as it came: its headers (not the emulator's own), the time left of its
    deadline, and a cancel when the client leaves; such a call is not recorded."""
    m = messages(upstream)
    target = f"127.0.0.1:{upstream.port}"
    with Emulator(
        protos=PROTOS, proxy={"upstream": target, "record": True}, record={"out": str(tmp_path)}
    ) as emu:
        client = Client(emu.target)
        headers = (("x-tenant", "acme"), ("x-emulator-session", "s1"))
        client.unary(GET, m["get"](product_id="h").SerializeToString(), metadata=headers)
        sent = dict(upstream.metadata["GetProduct"][-1])
        assert sent["x-tenant"] == "acme" and "x-emulator-session" not in sent
        upstream.cancelled.clear()
        error = client.error(GET, m["get"](product_id="slow").SerializeToString(), timeout=0.3)
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert upstream.cancelled.wait(10), "the upstream call outlived the client's deadline"
        upstream.cancelled.clear()
        future = client.channel.unary_unary(GET).future(
            m["get"](product_id="slow").SerializeToString(), timeout=20
        )
        slow = lambda: [r for r in upstream.seen["GetProduct"] if r.product_id == "slow"]  # noqa: E731
        wait_until(lambda: len(slow()) == 2)
        future.cancel()
        assert upstream.cancelled.wait(10), "the upstream call outlived the client's cancel"
        client.close()
        files = emu.server.proxy.files
        files.flush()
        recorded = yaml.safe_load(next(files.out.glob("*GetProduct.yaml")).read_text())
    assert [s["match"]["request"]["product_id"] for s in recorded] == ["h"]


def test_an_upstream_behind_mutual_tls(tmp_path: Path) -> None:
    from emulator.security import CertificateAuthority

    ca = CertificateAuthority()
    server, client = ca.issue("upstream"), ca.issue("emulator", client=True)
    credentials = grpc.ssl_server_credentials(
        [(server.key_pem, server.cert_pem)],
        root_certificates=ca.cert_pem,
        require_client_auth=True,
    )
    for name, data in {"ca": ca.cert_pem, "cert": client.cert_pem, "key": client.key_pem}.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    with running_upstream(credentials) as real:
        proxy = {
            "upstream": f"127.0.0.1:{real.port}",
            **{k: str(tmp_path / f"{k}.pem") for k in ("ca", "cert", "key")},
        }
        with Emulator(protos=PROTOS, proxy=proxy) as emu:
            product = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "t"})
        assert product.name == "Real t"
        without = {"upstream": proxy["upstream"], "ca": proxy["ca"]}
        with (
            Emulator(protos=PROTOS, proxy=without) as emu,
            pytest.raises(grpc.RpcError) as caught,
        ):
            emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "t"})
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_emulate_record_pseudonymizes_and_checks(upstream: Upstream, tmp_path: Path) -> None:
    """`emulate record` as a user runs it: the recordings keep the joins (the customer id of
    the request and of the order answered map to the same pseudonym), no original value of a
    pseudonymized field is in them (`--check`), and they serve at once with --stubs."""
    out = tmp_path / "recordings"
    config = tmp_path / "emulator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "record": {
                    "pseudonymize": [
                        {"field": "*.customer_id", "kind": "id"},
                        {"field": "*.email", "kind": "email"},
                        {"field": "*.phone_number", "kind": "phone"},
                        {"field": "acme.shop.v1.Customer.first_name", "kind": "name"},
                        {"field": "acme.shop.v1.ChatMessage.text", "kind": "email"},
                    ]
                }
            }
        )
    )
    args = ("--proto", str(PROTOS), "--upstream", f"127.0.0.1:{upstream.port}")
    args += ("--out", str(out), "--config", str(config), "--check")
    env = {"GRPC_EMULATOR_RECORD_KEY": "a key for this test only"}
    with EmulateProcess(*args, subcommand="record", env=env) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            spec = upstream.cls("acme.shop.v1.Orders/CreateOrder")
            create = channel.unary_unary(
                spec.path,
                request_serializer=spec.input_class.SerializeToString,
                response_deserializer=spec.output_class.FromString,
            )
            for customer in ("cust-00042", "cust-00043", "cust-00042"):
                order = create(spec.input_class(customer_id=customer), timeout=10)
                assert order.customer.email == f"{customer}@real-mail.com"  # the real answer
            chat = upstream.cls("acme.shop.v1.Orders/Chat")
            talk = channel.stream_stream(
                chat.path,
                request_serializer=chat.input_class.SerializeToString,
                response_deserializer=chat.output_class.FromString,
            )
            said = chat.input_class(order_id="o1", text="cust-00042@real-mail.com")
            texts = [m.text for m in talk(iter([said]), timeout=10)]
            assert texts[0] == said.text.upper()
        code, banner, err = proc.stop()
    assert code == 0, err
    proxied = f"  proxy: what nothing else answers of * goes to 127.0.0.1:{upstream.port}"
    assert f"{proxied}, recording to {out}\n" in banner
    assert "recorded 4 calls in 2 files" in err
    assert "no original value of a pseudonymized field in 2 files" in err
    text = (out / "acme.shop.v1.Orders.CreateOrder.yaml").read_text()
    chat_text = (out / "acme.shop.v1.Orders.Chat.yaml").read_text()
    assert "real-mail" not in chat_text.lower() and "00042" not in chat_text
    for original in ("cust-00042", "cust-00043", "real-mail.com", "7946", "Ada"):
        assert original not in text
    stubs = yaml.safe_load(text)
    assert len(stubs) == 2  # two customers; the first one twice (a sequence)
    for stub in stubs:
        asked = stub["match"]["request"]["customer_id"]
        answers = stub.get("sequence") or [stub["respond"]]
        for answer in answers:
            assert answer["message"]["customer"]["customer_id"] == asked  # the join holds
    emails = {
        s["match"]["request"]["customer_id"]: s["respond" if "respond" in s else "sequence"]
        for s in stubs
    }
    emails = {
        k: (v[0] if isinstance(v, list) else v)["message"]["customer"]["email"]
        for k, v in emails.items()
    }
    assert len(set(emails.values())) == 2  # different emails, different pseudonyms
    for email in emails.values():
        assert re.fullmatch(r"[a-z0-9.-]+@[a-z0-9-]+(\.[a-z0-9-]+)+", email), email
    phone = stubs[0]["sequence"][0]["message"]["customer"]["phone_number"]
    assert re.fullmatch(r"\+\d\d \d\d \d{4} \d{4}", phone), phone  # the layout kept
    # The same email, in another method (said in the chat): the same pseudonym.
    [chat_stub] = yaml.safe_load(chat_text)
    first = next(s for s in stubs if "sequence" in s)  # cust-00042: called twice
    assert (
        chat_stub["on_message"][0]["match"]["text"]
        == emails[first["match"]["request"]["customer_id"]]
    )
    checked = emulate("check", "--proto", str(PROTOS), "--stubs", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "3 stubs on 2 methods" in checked.stdout


def recorded_stub(**extra: Any) -> dict[str, Any]:
    stub: dict[str, Any] = {
        "name": "slow-p1",
        "method": "acme.shop.v1.Catalog/GetProduct",
        "recorded": {"at": "2026-12-01T10:00:00Z", "upstream": "real:443"},
        "match": {"request": {"product_id": "p1"}},
        "respond": {"message": {"name": "recorded"}, "replace": True, "delay": "30s"},
    }
    stub.update(extra)
    return stub


@pytest.mark.parametrize(
    ("timings", "answers"), [("none", True), ("scaled", True), ("recorded", False)]
)
def test_replay_timings(timings: str, answers: bool) -> None:
    """A recording's waits as recorded, none, or scaled (here by 0.001: 30 s is 30 ms)."""
    replay = {"timings": timings, "scale": 0.001}
    with Emulator(protos=PROTOS, stubs=[recorded_stub()], replay=replay) as emu:
        unused = [w for w in emu.server.snapshot.warnings if "replay.scale 0.001 is not used" in w]
        assert len(unused) == (timings != "scaled")  # a scale with no effect is said
        get = emu.stub("acme.shop.v1.Catalog").GetProduct
        if answers:
            assert get({"product_id": "p1"}, timeout=10).name == "recorded"
        else:
            with pytest.raises(grpc.RpcError) as caught:
                get({"product_id": "p1"}, timeout=0.3)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]


def test_ignored_fields_match_any_value(upstream: Upstream, tmp_path: Path) -> None:
    spec = upstream.cls("acme.shop.v1.Orders/CreateOrder")
    target = f"127.0.0.1:{upstream.port}"
    record = {"out": str(tmp_path), "ignore_fields": ["*.idempotency_key"]}
    with Emulator(protos=PROTOS, proxy={"upstream": target, "record": True}, record=record) as emu:
        emu.stub("acme.shop.v1.Orders").CreateOrder({"customer_id": "c9", "idempotency_key": "k1"})
    [stub] = yaml.safe_load(next(tmp_path.glob("*CreateOrder.yaml")).read_text())
    assert stub["match"] == {"request": {"customer_id": "c9"}}
    with Emulator(protos=PROTOS, stubs=[str(tmp_path)]) as emu:
        order = emu.stub("acme.shop.v1.Orders").CreateOrder(
            {"customer_id": "c9", "idempotency_key": "another"}
        )
        assert order.customer.email == "c9@real-mail.com"
    del spec


def test_old_and_stale_recordings_are_said(tmp_path: Path) -> None:
    """`record.max_age` leaves out recordings older than it; a recording made against other
    messages than the contracts served is named by `emulate check`."""
    old = recorded_stub(name="old", recorded={"at": "2020-01-01T00:00:00Z"})
    other = recorded_stub(
        name="other", recorded={"at": "2026-12-01T10:00:00Z", "messages": "0123456789abcdef"}
    )
    (tmp_path / "recorded.yaml").write_text(yaml.safe_dump([old, other]))
    config = tmp_path / "emulator.yaml"
    config.write_text(yaml.safe_dump({"record": {"max_age": "365d"}}))
    checked = emulate(
        "check",
        "--proto",
        str(PROTOS),
        "--stubs",
        str(tmp_path / "recorded.yaml"),
        "--config",
        str(config),
    )
    assert checked.returncode == 0, checked.stderr
    assert "1 recorded stub older than record.max_age (365d) left out" in checked.stderr
    assert "acme.shop.v1.Catalog/GetProduct: 1 recording (first: " in checked.stderr
    assert ") was made against other messages" in checked.stderr
    assert "1 stub on 1 method" in checked.stdout


def test_a_whole_client_stream_is_matched_or_refused_with_its_key(tmp_path: Path) -> None:
    stub = {
        "method": "acme.shop.v1.Orders/UploadLineItems",
        "match": {"requests": [{"product_id": "a"}, {"product_id": "b"}]},
        "respond": {"message": {"item_count": 99}},
    }
    with Emulator(protos=PROTOS, stubs=[stub]) as emu:
        upload = emu.stub("acme.shop.v1.Orders").UploadLineItems
        assert upload(iter([{"product_id": "a"}, {"product_id": "b"}])).item_count == 99
        assert upload(iter([{"product_id": "a"}])).item_count != 99
        assert upload(iter([{"product_id": "a"}, {"product_id": "c"}])).item_count != 99
        [_, short, other] = emu.calls()
        assert "the stream had 1 messages, not 2" in short.near_misses[0].reasons[0]
        assert "message 2 of 2: product_id" in other.near_misses[0].reasons[0]
    bad = {**stub, "method": "acme.shop.v1.Catalog/GetProduct"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([bad]))
    checked = emulate("check", "--proto", str(PROTOS), "--stubs", str(tmp_path / "bad.yaml"))
    assert checked.returncode == 2
    assert "match.requests: matches a whole client stream" in checked.stderr
    typo = {**stub, "match": {"requests": [{"product_idd": "a"}]}}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump([typo]))
    checked = emulate("check", "--proto", str(PROTOS), "--stubs", str(tmp_path / "typo.yaml"))
    assert checked.returncode == 2
    assert "match.requests[0].product_idd" in checked.stderr, checked.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--upstream", "no-port"), "proxy.upstream: expected HOST:PORT (as catalog."),
        (("--upstream", "http://127.0.0.1:50051"), "leave out http://, gRPC names the host"),
        (("--upstream", "127.0.0.1:99999"), "the port must be 1 to 65535"),
        (("--upstream", "::1"), "got '::1'"),
        (("--upstream", "::1:50051"), "write an IPv6 address in brackets, as [::1]:50051"),
        (
            ("--replay-timings", "scaled", "--replay-scale", "-1"),
            "replay.scale: must be 0 or more",
        ),
        (
            ("--upstream", "127.0.0.1:1", "--upstream-ca", "missing.pem"),
            "proxy.ca: missing.pem: cannot be read",
        ),
        (
            ("--upstream", "127.0.0.1:1", "--upstream-cert", "c.pem"),
            "a client certificate needs both proxy.cert and proxy.key",
        ),
        (("--upstream", "127.0.0.1:1", "--proxy-methods", "acme.shop.v1.Catalog/Nope"), "Nope"),
        (("--proxy-record",), "proxy.record: recording needs the service to record"),
    ],
)
def test_a_bad_proxy_is_refused_with_its_key(args: tuple[str, ...], message: str) -> None:
    checked = emulate("check", "--proto", str(PROTOS), *args)
    assert checked.returncode == 2
    assert message in checked.stderr and "Traceback" not in checked.stderr, checked.stderr


def test_emulate_record_needs_an_upstream() -> None:
    ran = emulate("record", "--proto", str(PROTOS), "--out", "x")
    assert ran.returncode == 2
    assert "emulate record: name the service to record: --upstream HOST:PORT" in ran.stderr


def test_security_runs_before_the_proxy(upstream: Upstream) -> None:
    before = len(upstream.seen.get("GetProduct", []))
    proxy = {"upstream": f"127.0.0.1:{upstream.port}"}
    auth = {"tokens": {"t0ken": {"principal": "ci"}}}
    with Emulator(protos=PROTOS, proxy=proxy, auth=auth) as emu:
        get = emu.stub("acme.shop.v1.Catalog").GetProduct
        with pytest.raises(grpc.RpcError) as caught:
            get({"product_id": "x"})
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        answer = get({"product_id": "y"}, metadata=[("authorization", "Bearer t0ken")])
        assert answer.name == "Real y"
    assert [r.product_id for r in upstream.seen["GetProduct"][before:]] == ["y"]


def test_a_request_recorded_again_and_again_keeps_its_first_answers(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load test through the recorder would pile thousands of answers onto one request."""
    from emulator.record import files

    monkeypatch.setattr(files, "MAX_SEQUENCE", 3)
    target = f"127.0.0.1:{upstream.port}"
    with Emulator(
        protos=PROTOS, proxy={"upstream": target, "record": True}, record={"out": str(tmp_path)}
    ) as emu:
        for _ in range(5):
            emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "again"})
        kept = emu.server.proxy.files
    [stub] = yaml.safe_load(next(tmp_path.glob("*GetProduct.yaml")).read_text())
    assert len(stub["sequence"]) == 3 and (kept.recorded, kept.dropped) == (3, 2)


def test_an_upstream_that_cannot_be_reached_is_named_and_not_recorded(tmp_path: Path) -> None:
    """The upstream gone mid-session, or never there: the client gets UNAVAILABLE naming it,
    the emulator keeps serving, and grpc's own word that it could not connect is not written as
    the service's answer (it would replay an outage). The service's own UNAVAILABLE still is."""
    out = tmp_path / "recordings"
    request = load_contracts([PROTOS]).method("acme.shop.v1.Catalog/GetProduct").input_class
    with contextlib.ExitStack() as upstream_up:
        real = upstream_up.enter_context(running_upstream())
        target = f"127.0.0.1:{real.port}"
        with Emulator(
            protos=PROTOS, proxy={"upstream": target, "record": True}, record={"out": str(out)}
        ) as emu:
            client = Client(emu.target)
            client.unary(GET, request(product_id="p1").SerializeToString())
            own = client.error(GET, request(product_id="unavailable").SerializeToString())
            assert own.details() == "try again later"  # type: ignore[attr-defined]
            upstream_up.close()  # the upstream goes away; the emulator stays
            for product in ("p2", "p3"):
                error = client.error(GET, request(product_id=product).SerializeToString())
                assert error.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                details = error.details()  # type: ignore[attr-defined]
                assert details.startswith(f"proxy: the upstream {target} cannot be reached: ")
            health = client.channel.unary_unary("/grpc.health.v1.Health/Check")
            assert health(b"", timeout=10) == b"\x08\x01"  # SERVING: still serving
            client.close()
    stubs = yaml.safe_load((out / "acme.shop.v1.Catalog.GetProduct.yaml").read_text())
    assert sorted(s["match"]["request"]["product_id"] for s in stubs) == ["p1", "unavailable"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "- name: mine\n  method: acme.shop.v1.Catalog/GetProduct\n  respond: {message: {}\n",
            ":4: not valid YAML (while parsing a flow mapping at line 3: ",
        ),
        ("hello: world\n", ":1: holds a dict, not a list of stubs: "),
    ],
)
def test_a_file_recording_cannot_add_to_stops_it_and_is_kept(
    tmp_path: Path, text: str, said: str
) -> None:
    """Rewriting a file recording cannot read as stubs would lose the user's file."""
    mine = tmp_path / "acme.shop.v1.Catalog.GetProduct.yaml"
    mine.write_text(text)
    ran = emulate(
        "record", "--proto", str(PROTOS), "--upstream", "127.0.0.1:1", "--out", str(tmp_path)
    )
    assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran.stderr
    assert f"emulate: error: {mine}{said}" in ran.stderr, ran.stderr
    assert f"would lose what it holds: fix it, or move it out of {tmp_path}" in ran.stderr
    assert mine.read_text() == text


def test_stubs_without_a_name_are_kept_when_recording_adds_to_their_file(
    upstream: Upstream, tmp_path: Path
) -> None:
    mine = tmp_path / "acme.shop.v1.Catalog.GetProduct.yaml"
    mine.write_text(
        "- method: acme.shop.v1.Catalog/GetProduct\n"
        "  match: {request: {product_id: special}}\n"
        "  respond: {message: {name: Special}}\n"
    )
    target = f"127.0.0.1:{upstream.port}"
    with Emulator(
        protos=PROTOS, proxy={"upstream": target, "record": True}, record={"out": str(tmp_path)}
    ) as emu:
        emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
    stubs = yaml.safe_load(mine.read_text())
    assert stubs[0] == {
        "method": "acme.shop.v1.Catalog/GetProduct",
        "match": {"request": {"product_id": "special"}},
        "respond": {"message": {"name": "Special"}},
    }
    assert stubs[1]["match"] == {"request": {"product_id": "p1"}}


def test_an_out_folder_that_cannot_be_written_stops_recording(tmp_path: Path) -> None:
    """(A chmod 555 folder does not stop root: a path under a file fails for every user.)"""
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    for out, said in [
        (a_file, f"record.out: {a_file} is a file, not a folder: give --out a folder"),
        (a_file / "sub", f"record.out: {a_file / 'sub'} cannot be written: Not a directory"),
    ]:
        ran = emulate(
            "record", "--proto", str(PROTOS), "--upstream", "127.0.0.1:1", "--out", str(out)
        )
        assert ran.returncode == 2 and said in ran.stderr, ran.stderr
    assert a_file.read_text() == "mine\n"


def test_recordings_that_cannot_be_written_are_retried_and_said(tmp_path: Path) -> None:
    """A folder gone while recording: the file is written again at the next flush, and at exit
    the files still not written are kept in `unwritten`, for `emulate record` to exit 1."""
    from emulator.record.files import RecordingFiles

    spec = load_contracts([PROTOS]).method("acme.shop.v1.Catalog/GetProduct")
    assert spec is not None
    out = tmp_path / "recordings"
    files = RecordingFiles(out)
    files.prepare([spec])
    out.rmdir()
    out.write_text("in the way\n")
    files.keep(spec, "one", {"name": "one", "method": spec.name})
    with pytest.raises(OSError):
        files.flush()
    assert files.unwritten == [out / "acme.shop.v1.Catalog.GetProduct.yaml"]
    out.unlink()
    assert files.flush() == [out / "acme.shop.v1.Catalog.GetProduct.yaml"]  # tried again
    assert files.unwritten == []
    [written] = yaml.safe_load((out / "acme.shop.v1.Catalog.GetProduct.yaml").read_text())
    assert written["name"] == "one"


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (
            "proxy: {upstream: '127.0.0.1:1'}\n"
            "record:\n  pseudonymize:\n    - {field: '*.emial', kind: email}\n",
            ":4: record.pseudonymize[0].field: '*.emial' matches no field",
        ),
        ("proxy:\n  upstream: 'http://x:1'\n", ":2: proxy.upstream: expected HOST:PORT"),
    ],
)
def test_record_and_proxy_settings_are_refused_with_their_file_and_line(
    tmp_path: Path, config: str, said: str
) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(config)
    out = str(tmp_path / "out")
    for command in ("check", "record"):
        ran = emulate(command, "--proto", str(PROTOS), "--config", str(path), "--record-out", out)
        assert ran.returncode == 2 and f"{path}{said}" in ran.stderr, ran.stderr


def test_a_redacted_request_field_is_left_out_of_the_match(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request carries `[redacted]`: matching on it, a recording would never answer."""
    monkeypatch.setenv("GRPC_EMULATOR_RECORD_KEY", "a key for this test only")
    chat = upstream.cls("acme.shop.v1.Orders/Chat").input_class
    rules = [{"field": "acme.shop.v1.ChatMessage.text", "kind": "redact"}]
    proxy = {"upstream": f"127.0.0.1:{upstream.port}", "record": True}
    with Emulator(
        protos=PROTOS, proxy=proxy, record={"out": str(tmp_path), "pseudonymize": rules}
    ) as emu:
        Client(emu.target).bidi(CHAT, [chat(order_id="o1", text="hi").SerializeToString()])
    [stub] = yaml.safe_load((tmp_path / "acme.shop.v1.Orders.Chat.yaml").read_text())
    assert stub["on_message"][0]["match"] == {"order_id": "o1"}
    assert stub["on_message"][0]["reply"][0]["message"]["text"] == "[redacted]"
    with Emulator(protos=PROTOS, stubs=[str(tmp_path)]) as emu:
        answers = Client(emu.target).bidi(
            CHAT, [chat(order_id="o1", text="other").SerializeToString()]
        )
    assert len(answers) == 2  # the recording answered a message it was not made from


def test_a_method_the_upstream_lacks_is_one_stub_for_every_request(
    upstream: Upstream, tmp_path: Path
) -> None:
    """UNIMPLEMENTED is the method's answer, not the request's: recorded once, with no
    conditions, so replay refuses every request of the method as the upstream did (a stub of
    the first request's fields answered other requests with made-up data)."""
    update = "/acme.shop.v1.Catalog/UpdateProduct"
    request = upstream.cls(update.lstrip("/")).input_class
    out = tmp_path / "recordings"
    with Emulator(
        protos=PROTOS,
        proxy={"upstream": f"127.0.0.1:{upstream.port}", "record": True},
        record={"out": str(out)},
    ) as emu:
        client = Client(emu.target)
        for product in ("p1", "p2", "p1"):
            error = client.error(
                update, request(product={"product_id": product}).SerializeToString()
            )
            assert error.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        client.close()
    path = out / "acme.shop.v1.Catalog.UpdateProduct.yaml"
    [stub] = yaml.safe_load(path.read_text())
    assert "match" not in stub and "sequence" not in stub
    assert stub["respond"]["status"]["code"] == "UNIMPLEMENTED"
    with Emulator(protos=PROTOS, stubs=[str(out)]) as emu:
        client = Client(emu.target)
        error = client.error(update, request(product={"product_id": "p9"}).SerializeToString())
        assert error.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        client.close()


def test_recordings_are_readable_as_any_file_written(upstream: Upstream, tmp_path: Path) -> None:
    """A replay container running as another user reads them: the umask's mode, not
    mkstemp's 0600; a file rewritten keeps the mode it had."""
    import os
    import stat

    out = tmp_path / "recordings"
    old = os.umask(0o022)
    try:
        with Emulator(
            protos=PROTOS,
            proxy={"upstream": f"127.0.0.1:{upstream.port}", "record": True},
            record={"out": str(out)},
        ) as emu:
            client = Client(emu.target)
            request = upstream.cls(GET.lstrip("/")).input_class
            client.unary(GET, request(product_id="p1").SerializeToString())
            client.close()
        path = out / "acme.shop.v1.Catalog.GetProduct.yaml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        with Emulator(
            protos=PROTOS,
            proxy={"upstream": f"127.0.0.1:{upstream.port}", "record": True},
            record={"out": str(out)},
        ) as emu:
            client = Client(emu.target)
            client.unary(GET, request(product_id="p2").SerializeToString())
            client.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert len(yaml.safe_load(path.read_text())) == 2
    finally:
        os.umask(old)
