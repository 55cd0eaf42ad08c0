"""`struct_bytes` writes what `Struct.update(json_format.MessageToDict(m))` would, field for
field: for default responses of every method of the example and test contracts, and for a
message with every kind of field and the values json_format treats specially."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from emulator.admin.structs import StructCache, struct_bytes
from emulator.behavior.defaults import DefaultResponses
from emulator.config import Config
from emulator.contracts import load_contracts
from tests.conftest import ROOT, TEST_PROTOS

KINDS = """
syntax = "proto3";
package kinds.v1;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; }
message Inner { string text = 1; repeated Inner children = 2; }
message All {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint64 s64 = 7; fixed32 fx32 = 8; sfixed64 sfx64 = 9; bool flag = 10; string text = 11;
  bytes data = 12; Color color = 13; Inner inner = 14; repeated string names = 15;
  repeated Inner inners = 16; map<string, int64> counts = 17; map<bool, Inner> by_flag = 18;
  map<int32, Color> colors = 19; google.protobuf.Timestamp at = 20;
  google.protobuf.Duration took = 21; google.protobuf.FieldMask mask = 22;
  google.protobuf.Struct extra = 23; google.protobuf.Value value = 24;
  google.protobuf.ListValue list = 25; google.protobuf.Any any = 26;
  google.protobuf.Int64Value big = 27; google.protobuf.FloatValue ratio = 28;
  google.protobuf.BoolValue yes = 29; google.protobuf.BytesValue blob = 30;
  repeated double ds = 31; optional int32 maybe = 32; repeated Color shades = 33;
  oneof choice { string label = 34; Inner nested = 35; }
  string snake_case_name = 36 [json_name = "custom"];
}
service Kinds { rpc Echo(All) returns (All); }
"""


def the_old_way(message: Message) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(json_format.MessageToDict(message))
    return out


def same(message: Message) -> None:
    got = struct_pb2.Struct.FromString(struct_bytes(message))
    assert got == the_old_way(message), type(message).__name__


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> type[Message]:
    folder = tmp_path_factory.mktemp("kinds")
    (folder / "kinds.proto").write_text(KINDS)
    contracts = load_contracts([folder / "kinds.proto"])
    cls: type[Message] = contracts.methods["/kinds.v1.Kinds/Echo"].input_class
    return cls


@pytest.mark.parametrize(
    "folder", [ROOT / "protos", TEST_PROTOS / "interop", TEST_PROTOS / "payments"]
)
def test_default_responses_of_every_method(folder: Path) -> None:
    contracts = load_contracts([folder])
    defaults = DefaultResponses.from_config(contracts, Config.from_mapping({}))
    checked = 0
    for spec in contracts.methods.values():
        for request in (b"", b"\x0a\x02k1"):
            data = defaults.response_bytes(spec, request)
            same(spec.output_class.FromString(data))
            checked += 1
    assert checked >= 6


def test_every_kind_of_field(kinds: type[Message]) -> None:
    message = kinds()
    same(message)  # nothing set: {}
    message.d, message.f, message.i32, message.i64 = 1.5, 0.1, -7, -(2**62)
    message.u32, message.u64, message.s64, message.fx32 = 2**31, 2**64 - 1, -3, 9
    message.sfx64, message.flag, message.text, message.data = 2**40, True, "héllo", b"\x00\xff"
    message.color = 1
    message.inner.text = "a"
    message.inner.children.add(text="b").children.add()
    message.names.extend(["x", "", "y" * 300])
    message.inners.add(text="c")
    message.inners.add()
    message.counts["k"] = 5
    message.counts[""] = -1
    message.by_flag[True].text = "t"
    message.by_flag[False].SetInParent()
    message.colors[3] = 1
    message.colors[-4] = 99  # an open enum's unknown number: a number in JSON
    message.at.FromSeconds(1_700_000_000)
    message.took.FromMilliseconds(1500)
    message.mask.paths.extend(["a.b", "c"])
    message.extra.update({"n": 1, "l": [1, "two", None, {"x": False}], "s": {}})
    message.value.string_value = "v"
    message.list.extend([1, "z"])
    message.any.Pack(duration_pb2.Duration(seconds=3))  # json_format finds it in its pool
    message.big.value = 2**60
    message.ratio.value = 0.3
    message.yes.value = False
    message.blob.value = b"b"
    message.ds.extend([math.inf, -math.inf, math.nan, 0.0, -0.0])
    message.maybe = 0
    message.shades.extend([0, 1, 42])
    message.label = "chosen"
    message.snake_case_name = "ok"
    same(message)
    message.nested.text = "other branch of the oneof"
    message.f, message.d = math.nan, -math.inf
    message.value.null_value = 0
    same(message)
    message.f = math.inf
    message.value.list_value.extend([{"a": [[]]}])
    same(message)


def test_what_json_format_refuses_it_refuses(kinds: type[Message]) -> None:
    message = kinds()
    message.value.number_value = math.inf  # a Value cannot hold infinity in JSON
    with pytest.raises(ValueError):
        struct_bytes(message)


def test_the_cache_converts_each_message_once_and_stays_bounded(kinds: type[Message]) -> None:
    cache = StructCache(max_bytes=300, max_entry=200)
    decoded: list[int] = []

    def messages(*texts: str) -> tuple[list[bytes], Callable[[], list[Message]]]:
        found = [kinds(text=t) for t in texts]
        return [m.SerializeToString() for m in found], lambda: decoded.append(1) or found

    raws, decode = messages("a", "b")
    first = cache.of(kinds, raws, decode)
    assert [struct_pb2.Struct.FromString(b) for b in first] == [
        the_old_way(kinds(text="a")),
        the_old_way(kinds(text="b")),
    ]
    assert cache.of(kinds, raws, decode) == first and len(decoded) == 1  # no decoding again
    raws, decode = messages("x" * 300)  # too big to keep
    cache.of(kinds, raws, decode)
    cache.of(kinds, raws, decode)
    assert len(decoded) == 3
    for n in range(40):  # the oldest go: never more than max_bytes kept
        cache.of(kinds, *messages(f"m{n}"))
        assert cache._bytes <= 300
    raws, decode = messages("a")
    cache.of(kinds, raws, decode)
    assert len(decoded) == 3 + 40 + 1  # "a" was forgotten


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1714700512, 872_000_000),  # milliseconds
        (1714700512, 872_001_000),  # microseconds
        (1714700512, 1),  # nanoseconds
        (253402300799, 999_999_999),  # the last instant a Timestamp holds
        (-1, 500_000_000),  # before 1970: json_format's own way
        (-62135596800, 0),  # 0001-01-01
    ],
)
def test_timestamps_read_as_json_format_writes_them(seconds: int, nanos: int) -> None:
    from google.protobuf import timestamp_pb2

    from emulator.admin.structs import _timestamp

    value = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert _timestamp(value) == value.ToJsonString()
