"""Messages of the user's own generated code (`protoc --python_out`) work wherever the emulator
takes or gives a message: assert_called, calls().filter, stubs, overrides, and the journal's
`request_as` / `response_as`, although those classes live in another descriptor pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from emulator import Emulator
from tests.conftest import reset_around

GREETER = "interop.v1.Greeter"
GREET = f"{GREETER}/Greet"
UPLOAD = f"{GREETER}/Upload"

PROTO = """
syntax = "proto3";

package interop.v1;

import "google/protobuf/timestamp.proto";

service Greeter {
  rpc Greet(GreetRequest) returns (GreetReply);
  rpc Upload(stream GreetRequest) returns (GreetReply);
}

message Nested {
  int32 n = 1;
}

message GreetRequest {
  string name = 1;
  map<string, string> tags = 2;
  Nested nested = 3;
}

message GreetReply {
  string message = 1;
  google.protobuf.Timestamp at = 2;
}
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    """The contract, and the Python modules protoc generates from it, as a user would have."""
    root = tmp_path_factory.mktemp("interop")
    protos, out = root / "protos", root / "generated"
    (protos / "interop" / "v1").mkdir(parents=True)
    out.mkdir()
    (protos / "interop" / "v1" / "greeter.proto").write_text(textwrap.dedent(PROTO))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{protos}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "interop/v1/greeter.proto",
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        from interop.v1 import greeter_pb2, greeter_pb2_grpc  # type: ignore[import-not-found]

        yield types.SimpleNamespace(protos=protos, pb2=greeter_pb2, grpc=greeter_pb2_grpc)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "interop" or m.startswith("interop.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def shared(generated: types.SimpleNamespace) -> Iterator[Emulator]:
    with Emulator(protos=generated.protos) as emu:
        yield emu


@pytest.fixture
def emu(shared: Emulator) -> Iterator[Emulator]:
    yield from reset_around(shared)


def greet(emu: Emulator, generated: types.SimpleNamespace, request: object) -> object:
    """A call through the user's own generated stub, as the code under test makes it."""
    return generated.grpc.GreeterStub(emu.channel()).Greet(request, timeout=10)


def test_assert_called_takes_a_message_of_the_users_generated_class(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    request = pb2.GreetRequest(name="ada", tags={"a": "1", "b": "2"}, nested=pb2.Nested(n=3))
    greet(emu, generated, request)

    emu.assert_called(GREET, times=1, request=request)
    emu.assert_called(GREET, request={"name": "ada", "nested": pb2.Nested(n=3)})
    assert emu.calls(GREET).filter(request=request).count == 1
    assert emu.calls(GREET).filter(request=pb2.GreetRequest(name="bob")).count == 0


def test_a_different_message_is_reported_field_by_field(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    greet(emu, generated, pb2.GreetRequest(name="ada"))
    with pytest.raises(AssertionError) as failed:
        emu.assert_called(GREET, request=pb2.GreetRequest(name="bob"))
    message = str(failed.value)
    assert 'with request interop.v1.GreetRequest {"name": "bob"}' in message
    assert 'request: expected {"name": "bob"}, got {"name": "ada"}' in message

    with pytest.raises(AssertionError) as failed:
        emu.assert_called(GREET, request={"nested": pb2.Nested(n=4)})
    assert "nested: expected" in str(failed.value)

    with pytest.raises(AssertionError) as failed:
        emu.assert_called(GREET, request=pb2.GreetReply(message="ada"))
    assert "request: expected a interop.v1.GreetReply, got a interop.v1.GreetRequest" in str(
        failed.value
    )


def test_request_as_and_response_as_give_the_users_classes(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    emu.override(GREET, lambda request, ctx: pb2.GreetReply(message=f"hi {request.name}"))
    reply = greet(emu, generated, pb2.GreetRequest(name="ada"))
    assert reply == pb2.GreetReply(message="hi ada")

    record = emu.calls(GREET).last
    assert record is not None
    # The module is imported: the journal reads with its classes (tests/test_generated_classes).
    assert record.request == pb2.GreetRequest(name="ada")
    request = record.request_as(pb2.GreetRequest)
    assert isinstance(request, pb2.GreetRequest)
    assert request == pb2.GreetRequest(name="ada")
    assert record.response_as(pb2.GreetReply) == pb2.GreetReply(message="hi ada")
    assert record.requests_as(pb2.GreetRequest) == [pb2.GreetRequest(name="ada")]
    assert record.responses_as(pb2.GreetReply) == [pb2.GreetReply(message="hi ada")]


def test_request_as_refuses_a_class_of_another_type(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    greet(emu, generated, pb2.GreetRequest(name="ada"))
    record = emu.calls(GREET).last
    assert record is not None
    with pytest.raises(TypeError) as wrong:
        record.request_as(pb2.GreetReply)
    assert str(wrong.value) == (
        "request_as(GreetReply): interop.v1.Greeter/Greet requests are interop.v1.GreetRequest, "
        "not interop.v1.GreetReply"
    )
    with pytest.raises(TypeError, match=r"response_as\(GreetRequest\): .* responses are"):
        record.response_as(pb2.GreetRequest)
    with pytest.raises(TypeError, match="takes a generated message class, not <class 'dict'>"):
        record.request_as(dict)  # type: ignore[type-var]


def test_the_dynamic_stub_takes_the_users_messages(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    greeter = emu.stub(GREETER)
    greeter.Greet(pb2.GreetRequest(name="ada"))
    greeter.Upload([pb2.GreetRequest(name="a"), pb2.GreetRequest(name="b")])
    emu.assert_called(GREET, request=pb2.GreetRequest(name="ada"))
    upload = emu.calls(UPLOAD).last
    assert upload is not None
    assert upload.requests_as(pb2.GreetRequest) == [
        pb2.GreetRequest(name="a"),
        pb2.GreetRequest(name="b"),
    ]
    with pytest.raises(
        TypeError, match=r"takes a interop\.v1\.GreetRequest, not a interop\.v1\.GreetReply"
    ):
        greeter.Greet(pb2.GreetReply())


def test_dicts_may_hold_messages_of_other_modules(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    """Nested messages from the user's module, or protobuf's own `timestamp_pb2`, in a dict."""
    pb2 = generated.pb2
    at = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    emu.override(GREET, lambda request, ctx: {"message": "hi", "at": at})
    reply = emu.stub(GREETER).Greet({"name": "ada", "nested": pb2.Nested(n=2)})
    assert reply.at.seconds == 1_700_000_000
    emu.assert_called(GREET, request=pb2.GreetRequest(name="ada", nested=pb2.Nested(n=2)))


def test_an_override_may_return_the_users_message(
    emu: Emulator, generated: types.SimpleNamespace
) -> None:
    pb2 = generated.pb2
    emu.override(UPLOAD, lambda requests, ctx: pb2.GreetReply(message=str(len(list(requests)))))
    stub = generated.grpc.GreeterStub(emu.channel())
    assert stub.Upload(iter([pb2.GreetRequest()] * 3), timeout=10).message == "3"
    emu.override(GREET, lambda request, ctx: pb2.GreetRequest(name="wrong type"))
    with pytest.raises(grpc.RpcError) as failed:
        greet(emu, generated, pb2.GreetRequest())
    assert failed.value.code() == grpc.StatusCode.INTERNAL  # the fixture's reset forgets it


def test_generated_modules_stay_out_of_the_way(generated: types.SimpleNamespace) -> None:
    """The generated classes live in the default pool, the emulator's in its own."""
    assert Path(generated.pb2.__file__).name == "greeter_pb2.py"
    with Emulator(protos=generated.protos) as emu:
        spec = emu.server.contracts.method(GREET)
        assert spec is not None
        assert spec.input_class is not generated.pb2.GreetRequest
