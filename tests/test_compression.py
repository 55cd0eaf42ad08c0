"""Response compression: `ctx.set_compression`, `ctx.disable_next_message_compression` and
`server.compression`, with gRPC's interop `server_compressed_unary` and
`server_compressed_streaming` run by real grpcio clients. grpcio clients cannot see whether a
message came compressed, so a bare HTTP/2 client (`tests/raw_grpc.py`) reads the
`grpc-encoding` header and each message's compressed flag."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from emulator import Behavior, Emulator
from tests.conftest import PROTOS, TEST_PROTOS, emulate, reset_around
from tests.raw_grpc import raw_call

INTEROP = TEST_PROTOS / "interop"
UNARY = "/grpc.testing.TestService/UnaryCall"
STREAMING = "/grpc.testing.TestService/StreamingOutputCall"
GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"
LIST_PRODUCTS = "/acme.shop.v1.Catalog/ListProducts"


class InteropTestService(Behavior):
    """The interop server's CompressedResponse feature, as a user would write it."""

    service = "grpc.testing.TestService"

    def UnaryCall(self, request, ctx):
        if request.HasField("response_compressed"):
            ctx.set_compression("gzip" if request.response_compressed.value else "none")
        return {"payload": {"body": bytes(request.response_size)}}

    def StreamingOutputCall(self, request, ctx):
        # The headers name one algorithm for the whole call; single messages opt out.
        ctx.set_compression("gzip")
        for params in request.response_parameters:
            if params.HasField("compressed") and not params.compressed.value:
                ctx.disable_next_message_compression()
            yield {"payload": {"body": bytes(params.size)}}


@pytest.fixture(scope="module")
def interop() -> Iterator[Emulator]:
    with Emulator(protos=INTEROP, behaviors=[InteropTestService]) as emu:
        yield emu


@pytest.fixture
def emu(interop: Emulator) -> Iterator[Emulator]:
    yield from reset_around(interop)


def _classes(emu: Emulator, path: str) -> tuple[Any, Any]:
    spec = emu._server.contracts.methods[path]
    return spec.input_class, spec.output_class


def _unary_request(emu: Emulator, compressed: bool) -> Any:
    request_class, _ = _classes(emu, UNARY)
    return request_class(
        response_compressed={"value": compressed},
        response_size=314159,
        payload={"body": bytes(271828)},
    )


def _streaming_request(emu: Emulator) -> Any:
    request_class, _ = _classes(emu, STREAMING)
    return request_class(
        response_parameters=[
            {"compressed": {"value": True}, "size": 31415},
            {"compressed": {"value": False}, "size": 92653},
        ]
    )


# -- gRPC interop ----------------------------------------------------------------------------


def test_interop_server_compressed_unary(emu: Emulator) -> None:
    request_class, response_class = _classes(emu, UNARY)
    with grpc.insecure_channel(emu.target) as channel:
        call = channel.unary_unary(
            UNARY,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        for compressed in (True, False):
            reply = call(_unary_request(emu, compressed), timeout=10)
            assert len(reply.payload.body) == 314159
            assert reply.payload.body == bytes(314159)
    # What the grpcio client cannot see: the compressed flag of the response message.
    for compressed in (True, False):
        raw = raw_call(emu.target, UNARY, [_unary_request(emu, compressed).SerializeToString()])
        assert raw.status == 0
        assert raw.flags == [int(compressed)]
        assert response_class.FromString(raw.messages[0]).payload.body == bytes(314159)
        if compressed:
            assert raw.headers["grpc-encoding"] == "gzip"


def test_interop_server_compressed_streaming(emu: Emulator) -> None:
    request_class, response_class = _classes(emu, STREAMING)
    with grpc.insecure_channel(emu.target) as channel:
        call = channel.unary_stream(
            STREAMING,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        replies = list(call(_streaming_request(emu), timeout=10))
    assert [len(r.payload.body) for r in replies] == [31415, 92653]
    raw = raw_call(emu.target, STREAMING, [_streaming_request(emu).SerializeToString()])
    assert raw.status == 0
    assert raw.headers["grpc-encoding"] == "gzip"
    assert raw.flags == [1, 0]  # first compressed, second not
    assert [len(response_class.FromString(m).payload.body) for m in raw.messages] == [
        31415,
        92653,
    ]


def test_without_a_choice_nothing_is_compressed(emu: Emulator) -> None:
    request_class, _ = _classes(emu, UNARY)
    raw = raw_call(emu.target, UNARY, [request_class(response_size=1000).SerializeToString()])
    assert raw.flags == [0]
    assert "grpc-encoding" not in raw.headers


# -- the choices a behaviour has --------------------------------------------------------------


class Compressing(Behavior):
    """Compresses as the request's product_id says: an algorithm, or `late:` one."""

    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        choice = request.product_id
        if choice == "enum":
            ctx.set_compression(grpc.Compression.Deflate)
        elif choice == "plain":
            ctx.set_compression("gzip")
            ctx.disable_next_message_compression()
        elif choice == "with-headers":
            ctx.set_compression("gzip")
            ctx.set_initial_metadata({"x-answer": "42"})
        elif choice:
            ctx.set_compression(choice)
        return {"product_id": choice, "description": "x" * 500}

    async def ListProducts(self, request, ctx):
        ctx.set_compression("deflate")
        yield {"name": "first", "description": "x" * 500}
        ctx.disable_next_message_compression()
        yield {"name": "second", "description": "x" * 500}
        ctx.set_compression(request.category_id or "deflate")  # same algorithm: accepted
        yield {"name": "third", "description": "x" * 500}


@pytest.fixture(scope="module")
def shop() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, behaviors=[Compressing], raise_behavior_errors=False) as emu:
        yield emu


def _get(emu: Emulator, product_id: str) -> Any:
    request_class, _ = _classes(emu, GET_PRODUCT)
    return raw_call(
        emu.target, GET_PRODUCT, [request_class(product_id=product_id).SerializeToString()]
    )


@pytest.mark.parametrize(
    ("choice", "encoding", "flag"),
    [
        ("gzip", "gzip", 1),
        ("deflate", "deflate", 1),
        ("GZIP", "gzip", 1),
        ("enum", "deflate", 1),
        ("none", None, 0),
        ("identity", None, 0),
        ("plain", "gzip", 0),
        ("with-headers", "gzip", 1),
    ],
)
def test_a_behaviour_chooses_the_compression_of_its_call(
    shop: Emulator, choice: str, encoding: str | None, flag: int
) -> None:
    raw = _get(shop, choice)
    assert raw.status == 0
    assert raw.headers.get("grpc-encoding") == encoding
    assert raw.flags == [flag]
    _, response_class = _classes(shop, GET_PRODUCT)
    assert response_class.FromString(raw.messages[0]).product_id == choice
    if choice == "with-headers":
        assert raw.headers["x-answer"] == "42"


def test_a_grpcio_client_reads_compressed_answers(shop: Emulator) -> None:
    catalog = shop.stub("acme.shop.v1.Catalog")
    assert catalog.GetProduct({"product_id": "gzip"}).description == "x" * 500
    assert catalog.GetProduct({"product_id": "deflate"}).description == "x" * 500
    assert [p.name for p in catalog.ListProducts({})] == ["first", "second", "third"]


def test_a_stream_sends_one_message_uncompressed(shop: Emulator) -> None:
    raw = raw_call(shop.target, LIST_PRODUCTS, [b""])
    assert raw.status == 0
    assert raw.headers["grpc-encoding"] == "deflate"
    assert raw.flags == [1, 0, 1]


def test_changing_the_algorithm_after_the_first_message_fails_the_call(shop: Emulator) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(shop.stub("acme.shop.v1.Catalog").ListProducts({"category_id": "gzip"}))
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    details = caught.value.details()
    assert "ctx.set_compression('gzip') after the first response message" in details
    assert "'deflate'" in details
    assert "disable_next_message_compression" in details


def test_an_unknown_algorithm_fails_the_call_naming_the_choices(shop: Emulator) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shop.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "brotli"})
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    assert "ctx.set_compression(): unknown compression 'brotli'" in caught.value.details()
    assert "'gzip'" in caught.value.details()


# -- server.compression ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gzip", "deflate"])
def test_server_compression_compresses_every_answer(name: str) -> None:
    with Emulator(protos=PROTOS, server={"compression": name}) as emu:
        request_class, response_class = _classes(emu, GET_PRODUCT)
        raw = raw_call(
            emu.target, GET_PRODUCT, [request_class(product_id="p1").SerializeToString()]
        )
        assert raw.headers["grpc-encoding"] == name
        assert raw.flags == [1]
        assert response_class.FromString(raw.messages[0]).product_id == "p1"
        raw = raw_call(emu.target, LIST_PRODUCTS, [b""])
        assert raw.flags == [1, 1, 1]
        assert emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"}).product_id == "p1"
        # Health and reflection stay uncompressed, for probes and grpcurl (which reads no
        # deflate).
        health = raw_call(emu.target, "/grpc.health.v1.Health/Check", [b""])
        assert health.status == 0
        assert "grpc-encoding" not in health.headers
        listed = subprocess.run(
            [str(Path(sys.executable).parent / "grpcurl"), "-plaintext", emu.target, "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "acme.shop.v1.Catalog" in listed.stdout.split()


def test_a_behaviour_overrides_server_compression() -> None:
    with Emulator(protos=PROTOS, behaviors=[Compressing], server={"compression": "gzip"}) as emu:
        assert _get(emu, "").flags == [1]  # the server's choice
        none = _get(emu, "none")
        assert none.flags == [0]
        assert "grpc-encoding" not in none.headers
        assert _get(emu, "deflate").headers["grpc-encoding"] == "deflate"
        raw = raw_call(emu.target, LIST_PRODUCTS, [b""])
        assert raw.flags == [1, 0, 1]


def test_server_compression_must_be_a_known_name(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text("server:\n  compression: brotli\n")
    result = emulate("check", "--proto", str(PROTOS), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    expected = "server.compression: expected one of 'none', 'identity', 'gzip', 'deflate'"
    assert f"{config}:2: {expected}" in result.stderr


def test_server_compression_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.cli import _config, _parser

    monkeypatch.setenv("EMULATOR_SERVER_COMPRESSION", "deflate")
    config = _config(_parser().parse_args(["--proto", str(PROTOS)]))
    assert config.server.compression == "deflate"


# -- compressed requests ----------------------------------------------------------------------


class Echo(Behavior):
    """Echoes what a behaviour can see of the request and its metadata."""

    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        keys = sorted(k for k, _ in ctx.invocation_metadata)
        return {"product_id": request.product_id, "description": ",".join(keys)}


def test_compressed_requests_arrive_decompressed_and_unmarked() -> None:
    """grpcio decompresses requests before the emulator sees them and keeps `grpc-encoding` out
    of the invocation metadata: neither behaviours nor the journal can tell a compressed request
    from a plain one (docs/compression.md says so; this fails when grpcio starts to show it)."""
    with Emulator(protos=PROTOS, behaviors=[Echo]) as emu:
        request_class, response_class = _classes(emu, GET_PRODUCT)
        request = request_class(product_id="p" * 1000)
        with grpc.insecure_channel(emu.target, compression=grpc.Compression.Gzip) as channel:
            call = channel.unary_unary(
                GET_PRODUCT,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            reply = call(request, timeout=10)
        raw = raw_call(emu.target, GET_PRODUCT, [request.SerializeToString()], gzip_requests=True)
        assert raw.status == 0
        assert response_class.FromString(raw.messages[0]).product_id == "p" * 1000
        assert reply.product_id == "p" * 1000
        assert "grpc-encoding" not in reply.description.split(",")
        assert "grpc-accept-encoding" not in reply.description.split(",")
        for record in emu.calls("acme.shop.v1.Catalog/GetProduct"):
            assert record.request == request
            assert "grpc-encoding" not in dict(record.metadata)


# -- the names, and the context alone ---------------------------------------------------------


def test_compression_names() -> None:
    from emulator.runtime.compression import algorithm, compression_name

    assert compression_name("GZip", "here") == "gzip"
    assert compression_name("none", "here") == "identity"
    assert compression_name(grpc.Compression.NoCompression, "here") == "identity"
    assert compression_name(grpc.Compression.Deflate, "here") == "deflate"
    assert algorithm("gzip") is grpc.Compression.Gzip
    assert algorithm("identity") is grpc.Compression.NoCompression
    with pytest.raises(ValueError, match=r"^here: unknown compression 'br'; use one of 'identity'"):
        compression_name("br", "here")
    with pytest.raises(ValueError, match="unknown compression 3"):
        compression_name(3, "here")


def test_the_context_keeps_the_choice_until_the_headers_go() -> None:
    from emulator.runtime.context import CallContext

    ctx = CallContext(
        method=None,  # type: ignore[arg-type]
        invocation_metadata=(),
        peer="ipv4:127.0.0.1:1",
        deadline=None,
        rng=lambda: None,  # type: ignore[arg-type,return-value]
        state={},
        clock=lambda: None,  # type: ignore[arg-type,return-value]
        default_response=lambda: None,  # type: ignore[arg-type,return-value]
    )
    ctx.set_compression("deflate")
    ctx.set_compression(grpc.Compression.Gzip)  # the last choice before the headers counts
    assert ctx._compression == "gzip"
    ctx.disable_next_message_compression()
    assert ctx._uncompressed_next
    ctx._compression, ctx._compression_sent = None, "gzip"  # as the dispatcher does
    ctx.set_compression("GZIP")  # the algorithm in force: nothing to do
    assert ctx._compression is None
    with pytest.raises(RuntimeError, match="after the first response message"):
        ctx.set_compression("none")
