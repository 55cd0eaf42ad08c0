"""Contract loading: proto2/proto3/editions, --proto forms, imports, the compile cache, errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from emulator.contracts import compile_contracts, compiler, load_contracts
from emulator.errors import ContractError
from emulator.testing import Emulator
from tests.conftest import PROTOS, ROOT, TEST_PROTOS, emulate

CONTRACTS = TEST_PROTOS / "contracts"
SYNTAXES = CONTRACTS / "syntaxes"
SAME_NAME = CONTRACTS / "same_name"
WKT = CONTRACTS / "wkt"
GOOGLEAPIS_SVC = CONTRACTS / "googleapis_style"
BROKEN = CONTRACTS / "broken"

SIMPLE = """syntax = "proto3";

package simple.v1;

message Ping {
  string text = 1;
}

service Simple {
  rpc Call(Ping) returns (Ping);
}
"""


def call(emu: Emulator, path: str, request: str, response: str, message: object = None) -> bytes:
    """One unary call with message classes from the emulator's own pool; the raw response bytes."""
    contracts = emu.server.contracts
    request_class = contracts.message_class_by_name(request)
    stub = emu.channel().unary_unary(
        path,
        request_serializer=lambda msg: msg.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    raw: bytes = stub(message if message is not None else request_class(), timeout=10)
    parsed = contracts.message_class_by_name(response).FromString(raw)
    assert parsed.IsInitialized()
    return raw


def protoc_descriptor_set(out: Path, root: Path, *files: Path, imports: bool = True) -> Path:
    """A descriptor set written by grpc_tools' protoc, as a user would write one."""
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--descriptor_set_out={out}"]
    args += ["--include_imports"] if imports else []
    done = subprocess.run(
        [*args, *map(str, files)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def googleapis_style(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding a service and, beside it, googleapis' google/api files (the bundled copy)."""
    root = tmp_path_factory.mktemp("googleapis_style")
    shutil.copytree(GOOGLEAPIS_SVC, root, dirs_exist_ok=True)
    shutil.copytree(PROTOS / "google", root / "google")
    return root


@pytest.fixture(scope="module")
def emu(googleapis_style: Path) -> Iterator[Emulator]:
    """One emulator serving every good fixture contract at once (each directory an import root)."""
    with Emulator(protos=[SYNTAXES, SAME_NAME, WKT, googleapis_style]) as running:
        yield running


@pytest.fixture(scope="module")
def buf_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`buf build -o X.binpb` of the example module, built in a copy so the repo stays clean."""
    work = tmp_path_factory.mktemp("buf")
    shutil.copytree(PROTOS, work / "protos")
    shutil.copy(ROOT / "buf.yaml", work / "buf.yaml")
    buf = Path(sys.executable).parent / "buf"
    out = work / "image.binpb"
    done = subprocess.run(
        [str(buf), "build", "-o", str(out)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "BUF_CACHE_DIR": str(work / "cache"), "HOME": str(work)},
    )
    assert done.returncode == 0, done.stderr
    return out


# -- syntaxes -------------------------------------------------------------------------------------


def test_proto2_required_defaults_closed_enums_and_extensions(emu: Emulator) -> None:
    contracts = emu.server.contracts
    reply_class = contracts.message_class_by_name("contracts.p2.LegacyReply")
    request_class = contracts.message_class_by_name("contracts.p2.LegacyRequest")
    fields = reply_class.DESCRIPTOR.fields_by_name
    assert fields["name"].is_required and fields["inner"].is_required
    assert fields["level"].enum_type.is_closed
    assert request_class().query == "all"  # [default = ...] survives the descriptor round trip
    assert reply_class().maybe_level == 2
    assert not reply_class().IsInitialized()

    request = request_class()
    request.Extensions[contracts.pool.FindExtensionByName("contracts.p2.trace_tag")] = "t-1"
    raw = call(
        emu,
        "/contracts.p2.Legacy/Get",
        request.DESCRIPTOR.full_name,
        "contracts.p2.LegacyReply",
        request,
    )

    reply = reply_class.FromString(raw)
    assert reply.IsInitialized()  # every required field, nested ones too
    for name in ("name", "count", "level", "inner"):
        assert reply.HasField(name)
    assert reply.inner.HasField("id")
    assert reply.level in (1, 2)  # a closed enum gets a declared value
    assert all(item.IsInitialized() for item in reply.items)


def test_proto3_with_optional(emu: Emulator) -> None:
    contracts = emu.server.contracts
    reply_class = contracts.message_class_by_name("contracts.p3.ModernReply")
    fields = reply_class.DESCRIPTOR.fields_by_name
    assert fields["maybe_count"].has_presence and not fields["name"].has_presence
    assert contracts.file_protos["p3/modern.proto"].syntax == "proto3"

    raw = call(
        emu, "/contracts.p3.Modern/Get", "contracts.p3.ModernRequest", "contracts.p3.ModernReply"
    )
    reply = reply_class.FromString(raw)
    assert reply.name
    assert reply.mode in (1, 2)
    assert reply.WhichOneof("choice") in ("text", "number")
    assert reply.SerializeToString(deterministic=True) == raw


def test_editions_2023_with_features(emu: Emulator) -> None:
    contracts = emu.server.contracts
    file = contracts.file_protos["ed/edition.proto"]
    assert file.syntax == "editions" and file.edition == descriptor_pb2.EDITION_2023
    reply_class = contracts.message_class_by_name("contracts.ed.EditionReply")
    fields = reply_class.DESCRIPTOR.fields_by_name
    assert not fields["name"].has_presence  # file-wide IMPLICIT
    assert fields["explicit_count"].has_presence
    assert fields["must"].is_required  # LEGACY_REQUIRED
    assert fields["color"].enum_type.is_closed
    assert not reply_class().IsInitialized()

    raw = call(
        emu, "/contracts.ed.Edition/Get", "contracts.ed.EditionRequest", "contracts.ed.EditionReply"
    )
    reply = reply_class.FromString(raw)
    assert reply.IsInitialized()
    assert reply.must and reply.nested.label
    assert reply.HasField("color") and reply.color in (1, 2)


def test_same_service_name_in_two_packages(emu: Emulator) -> None:
    services = emu.server.contracts.services
    assert services["a.v1.Echo"].file == "a/v1/echo.proto"
    assert services["b.v1.Echo"].file == "b/v1/echo.proto"

    raw_a = call(emu, "/a.v1.Echo/Say", "a.v1.EchoRequest", "a.v1.EchoReply")
    raw_b = call(emu, "/b.v1.Echo/Say", "b.v1.EchoRequest", "b.v1.EchoReply")
    contracts = emu.server.contracts
    assert contracts.message_class_by_name("a.v1.EchoReply").FromString(raw_a).a_only
    assert contracts.message_class_by_name("b.v1.EchoReply").FromString(raw_b).b_count
    # Each answer has its own package's shape: neither reads as the other's.
    assert not contracts.message_class_by_name("b.v1.EchoReply").FromString(raw_a).b_count
    assert not contracts.message_class_by_name("a.v1.EchoReply").FromString(raw_b).a_only


def test_well_known_types_in_and_out(emu: Emulator) -> None:
    assert (
        call(emu, "/contracts.wkt.Clock/Ping", "google.protobuf.Empty", "google.protobuf.Empty")
        == b""
    )
    now = call(
        emu, "/contracts.wkt.Clock/Now", "google.protobuf.Empty", "google.protobuf.Timestamp"
    )
    timestamp = emu.server.contracts.message_class_by_name("google.protobuf.Timestamp").FromString(
        now
    )
    assert timestamp.seconds > 0 and 0 <= timestamp.nanos < 10**9
    text = emu.server.contracts.message_class_by_name("google.protobuf.StringValue")(value="hi")
    raw = call(
        emu,
        "/contracts.wkt.Clock/Echo",
        "google.protobuf.StringValue",
        "google.protobuf.StringValue",
        text,
    )
    assert (
        emu.server.contracts.message_class_by_name("google.protobuf.StringValue")
        .FromString(raw)
        .value
    )


def test_unknown_method_is_unimplemented(emu: Emulator) -> None:
    stub = emu.channel().unary_unary("/c.v1.Echo/Say")
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- googleapis-style imports ---------------------------------------------------------------------


def test_googleapis_import_under_the_root_resolves(emu: Emulator) -> None:
    contracts = emu.server.contracts
    books = contracts.file_protos["svc/v1/books.proto"]
    assert "google/api/annotations.proto" in books.dependency
    assert "google/api/http.proto" in contracts.file_protos
    assert list(contracts.services["svc.v1.Books"].methods) == ["GetBook"]
    raw = call(emu, "/svc.v1.Books/GetBook", "svc.v1.GetBookRequest", "svc.v1.Book")
    assert contracts.message_class_by_name("svc.v1.Book").FromString(raw).title


def test_single_file_under_an_import_path_keeps_its_import_name(googleapis_style: Path) -> None:
    books = googleapis_style / "svc/v1/books.proto"
    with pytest.raises(ContractError, match=r"google/api/annotations\.proto"):
        compile_contracts([books])
    names = [f.name for f in compile_contracts([books], [googleapis_style]).file]
    assert "svc/v1/books.proto" in names  # the name importers use, not "books.proto"
    assert names.index("google/api/annotations.proto") < names.index("svc/v1/books.proto")


# -- --proto forms --------------------------------------------------------------------------------


def test_directory_compiles_every_proto_under_it_as_an_import_root() -> None:
    contracts = load_contracts([SYNTAXES])
    assert set(contracts.services) == {
        "contracts.p2.Legacy",
        "contracts.p3.Modern",
        "contracts.ed.Edition",
    }
    assert {"p2/legacy.proto", "p3/modern.proto", "ed/edition.proto"} <= set(contracts.file_protos)


def test_single_proto_file() -> None:
    contracts = load_contracts([SYNTAXES / "p2" / "legacy.proto"])
    assert list(contracts.services) == ["contracts.p2.Legacy"]
    assert contracts.services["contracts.p2.Legacy"].file == "legacy.proto"


@pytest.mark.parametrize("suffix", [".pb", ".binpb", ".desc"])
def test_protoc_descriptor_set(tmp_path: Path, suffix: str) -> None:
    out = protoc_descriptor_set(tmp_path / f"wkt{suffix}", WKT, WKT / "wkt.proto")
    with Emulator(protos=out) as emu:
        assert list(emu.server.contracts.services) == ["contracts.wkt.Clock"]
        call(emu, "/contracts.wkt.Clock/Now", "google.protobuf.Empty", "google.protobuf.Timestamp")


@pytest.mark.parametrize("suffix", [".pb", ".binpb", ".desc"])
def test_buf_build_image(buf_set: Path, tmp_path: Path, suffix: str) -> None:
    image = shutil.copy(buf_set, tmp_path / f"image{suffix}")
    with Emulator(protos=image) as emu:
        assert set(emu.server.contracts.services) == {"acme.shop.v1.Orders", "acme.shop.v1.Catalog"}
        raw = call(
            emu,
            "/acme.shop.v1.Catalog/GetProduct",
            "acme.shop.v1.GetProductRequest",
            "acme.shop.v1.Product",
        )
        assert raw


def test_buf_image_beside_the_same_sources(buf_set: Path) -> None:
    # buf adds its own metadata to every file and bundles newer well-known types than protoc:
    # the same contracts from both must not count as two different definitions.
    contracts = load_contracts([PROTOS, buf_set])
    assert set(contracts.services) == {"acme.shop.v1.Orders", "acme.shop.v1.Catalog"}


def test_directory_and_descriptor_set_together(tmp_path: Path) -> None:
    files = sorted(PROTOS.glob("acme/**/*.proto"))
    out = protoc_descriptor_set(tmp_path / "shop.binpb", PROTOS, *files)
    # Both hold google/protobuf/empty.proto: compiled here with source info, in the set without.
    with Emulator(protos=[WKT, out]) as emu:
        services = set(emu.server.contracts.services)
        assert services == {"contracts.wkt.Clock", "acme.shop.v1.Orders", "acme.shop.v1.Catalog"}
        call(emu, "/contracts.wkt.Clock/Ping", "google.protobuf.Empty", "google.protobuf.Empty")
        call(emu, "/acme.shop.v1.Orders/Ping", "google.protobuf.Empty", "google.protobuf.Empty")


def test_descriptor_set_files_out_of_dependency_order(tmp_path: Path) -> None:
    out = protoc_descriptor_set(tmp_path / "wkt.binpb", WKT, WKT / "wkt.proto")
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    reversed_set = descriptor_pb2.FileDescriptorSet(file=list(reversed(fds.file)))
    assert reversed_set.file[0].name == "wkt.proto"
    out.write_bytes(reversed_set.SerializeToString())
    assert list(load_contracts([out]).services) == ["contracts.wkt.Clock"]


def test_descriptor_set_without_its_imports(tmp_path: Path) -> None:
    out = protoc_descriptor_set(tmp_path / "wkt.binpb", WKT, WKT / "wkt.proto", imports=False)
    with pytest.raises(ContractError, match=r"google/protobuf/empty\.proto.*--include_imports"):
        load_contracts([out])


# -- the compile cache ----------------------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A contract directory of its own (a cache key no other test shares), empty memory cache."""
    monkeypatch.setattr(compiler, "_memory_cache", {})
    root = tmp_path / "contracts"
    root.mkdir()
    (root / "simple.proto").write_text(SIMPLE)
    return root


def _count_protoc(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    runs: list[int] = []
    real = compiler._run_protoc

    def counting(sources: object) -> bytes:
        runs.append(1)
        return real(sources)  # type: ignore[arg-type]

    monkeypatch.setattr(compiler, "_run_protoc", counting)
    return runs


def _refuse_protoc(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sources: object) -> bytes:
        raise AssertionError("protoc ran again for contracts already compiled")

    monkeypatch.setattr(compiler, "_run_protoc", refuse)


def test_second_compile_reads_the_disk_cache(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = compiler.cache_dir()
    assert cache is not None and cache.name.startswith("contract-cache")  # conftest's, per session
    before = set(cache.glob("*.binpb")) if cache.exists() else set()
    first = compile_contracts([fresh])
    written = set(cache.glob("*.binpb")) - before
    assert len(written) == 1

    _refuse_protoc(monkeypatch)
    monkeypatch.setattr(compiler, "_memory_cache", {})  # as a new process would start
    assert compile_contracts([fresh]) == first
    # And the memory cache alone serves a second in-process start.
    for path in written:
        path.unlink()
    assert compile_contracts([fresh]) == first


def test_contracts_loaded_already_are_not_parsed_again(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_contracts([fresh])
    parsed = []
    parse = compiler._parsed
    monkeypatch.setattr(compiler, "_parsed", lambda data: parsed.append(data) or parse(data))
    assert load_contracts([fresh]) is first  # a warm in-process start: a digest, no parse
    assert parsed == []
    source = fresh / "simple.proto"
    source.write_text(SIMPLE.replace("string text = 1;", "string text = 1;\n  int32 size = 2;"))
    changed = load_contracts([fresh])
    assert changed is not first and len(parsed) == 1
    ping = changed.pool.FindMessageTypeByName("simple.v1.Ping")
    assert [f.name for f in ping.fields] == ["text", "size"]


def test_editing_an_input_invalidates_the_cache(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _count_protoc(monkeypatch)
    compile_contracts([fresh])
    source = fresh / "simple.proto"
    source.write_text(SIMPLE.replace("string text = 1;", "string text = 1;\n  int32 size = 2;"))
    fds = compile_contracts([fresh])
    assert len(runs) == 2
    ping = next(m for f in fds.file for m in f.message_type if m.name == "Ping")
    assert [f.name for f in ping.field] == ["text", "size"]
    source.write_text(SIMPLE)  # back to content compiled before: a hit again
    compile_contracts([fresh])
    assert len(runs) == 2


@pytest.mark.parametrize("keep_memory", [True, False], ids=["memory", "disk"])
def test_editing_an_import_invalidates_the_cache(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, keep_memory: bool
) -> None:
    # A single file as input: its sibling is found as an import, not given, so not in the key.
    (fresh / "simple.proto").unlink()
    (fresh / "dep.proto").write_text(
        'syntax = "proto3";\npackage dep;\nmessage Dep { string a = 1; }\n'
    )
    main = fresh / "main.proto"
    main.write_text(
        'syntax = "proto3";\npackage main;\nimport "dep.proto";\n'
        "service S { rpc M(dep.Dep) returns (dep.Dep); }\n"
    )
    runs = _count_protoc(monkeypatch)
    compile_contracts([main])
    (fresh / "dep.proto").write_text(
        'syntax = "proto3";\npackage dep;\nmessage Dep { string a = 1; int64 b = 2; }\n'
    )
    if not keep_memory:
        monkeypatch.setattr(compiler, "_memory_cache", {})
    fds = compile_contracts([main])
    assert len(runs) == 2
    dep = next(f for f in fds.file if f.name == "dep.proto")
    assert [f.name for f in dep.message_type[0].field] == ["a", "b"]


def test_damaged_cache_entry_is_recompiled(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = compiler.cache_dir()
    assert cache is not None
    before = set(cache.glob("*.binpb")) if cache.exists() else set()
    first = compile_contracts([fresh])
    (entry,) = set(cache.glob("*.binpb")) - before
    entry.write_bytes(b"\xff\xff\xff garbage")
    monkeypatch.setattr(compiler, "_memory_cache", {})
    assert compile_contracts([fresh]) == first


def test_cache_off(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_EMULATOR_CACHE_DIR", "off")
    assert compiler.cache_dir() is None
    runs = _count_protoc(monkeypatch)
    compile_contracts([fresh])
    monkeypatch.setattr(compiler, "_memory_cache", {})
    compile_contracts([fresh])
    assert len(runs) == 2


# -- broken contracts through the real command ----------------------------------------------------

BROKEN_CASES = {
    "syntax": ("syntax/bad_syntax.proto", 7, 'Expected ";"'),
    "missing-import": (
        "missing_import/bad_import.proto",
        5,
        'Import "does/not/exist.proto" was not found',
    ),
    "unknown-type": ("unknown_type/bad_type.proto", 7, '"NoSuchMessage" is not defined'),
}


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


@pytest.mark.parametrize(("mode", "form"), [("check", "dir"), ("check", "file"), ("serve", "dir")])
@pytest.mark.parametrize("case", list(BROKEN_CASES))
def test_broken_contract_is_reported(case: str, mode: str, form: str) -> None:
    relative, line, message = BROKEN_CASES[case]
    target = BROKEN / relative if form == "file" else (BROKEN / relative).parent
    arg = str(target.relative_to(ROOT))  # as the user types it, from the repository root
    done = (
        emulate("check", "--proto", arg)
        if mode == "check"
        else emulate("--proto", arg, "--port", "0")
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    _no_traceback(done)
    assert "emulator listening" not in done.stdout
    shown = (BROKEN / relative).relative_to(ROOT).as_posix()
    # The path as typed, at the start of protoc's own line: file:line:column: message.
    assert re.search(rf"^{re.escape(shown)}:{line}:\d+: ", done.stderr, re.MULTILINE), done.stderr
    assert message in done.stderr


def test_error_in_an_imported_file_names_its_real_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "dep.proto").write_text(
        'syntax = "proto3";\npackage dep;\nmessage Dep { Nope x = 1; }\n'
    )
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.proto").write_text(
        'syntax = "proto3";\npackage main;\nimport "dep.proto";\nmessage M { dep.Dep d = 1; }\n'
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ContractError) as caught:
        compile_contracts(["app/main.proto"], ["lib"])
    text = str(caught.value)
    assert "lib/dep.proto:3:" in text and '"Nope" is not defined' in text
    assert "app/main.proto:3:" in text


# -- a missing import says what to add ------------------------------------------------------------

ADD_IT = "add the directory that holds it with -I DIR (import_paths: in emulator.yaml)"


def test_a_missing_import_says_to_add_its_directory() -> None:
    done = emulate("check", "--proto", "tests/protos/contracts/broken/missing_import")
    assert done.returncode == 2
    _no_traceback(done)
    importer = "tests/protos/contracts/broken/missing_import/bad_import.proto"
    assert done.stderr.rstrip().splitlines()[-1] == (
        f"{importer}:5: imports does/not/exist.proto, which is in no import root "
        f"(tests/protos/contracts/broken/missing_import and the well-known types): {ADD_IT}"
    )
    assert "fix the .proto files above" not in done.stderr  # what to do is said: this one thing


@pytest.fixture
def vendored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """protos/svc/v1/books.proto imports common/money.proto, which is at protos/common/."""
    (tmp_path / "protos" / "common").mkdir(parents=True)
    (tmp_path / "protos" / "common" / "money.proto").write_text(
        'syntax = "proto3";\npackage common;\nmessage Money { int64 units = 1; }\n'
    )
    (tmp_path / "protos" / "svc" / "v1").mkdir(parents=True)
    (tmp_path / "protos" / "svc" / "v1" / "books.proto").write_text(
        'syntax = "proto3";\npackage svc.v1;\n\nimport "common/money.proto";\n'
        "message Book { common.Money price = 1; }\n"
        "service Books { rpc Get(Book) returns (Book); }\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("given", ["protos/svc/v1/books.proto", "protos/svc"])
def test_a_missing_import_found_above_an_import_root_names_the_directory(
    vendored: Path, given: str
) -> None:
    with pytest.raises(ContractError) as caught:
        Emulator(protos=[given])  # `protos:` as emulator.yaml and Emulator take it
    last = str(caught.value).splitlines()[-1]
    assert last == (
        "protos/svc/v1/books.proto:4: imports common/money.proto, which is in no import root "
        "but at protos/common/money.proto: add -I protos (import_paths: in emulator.yaml)"
    )
    with Emulator(protos=[given], import_paths=["protos"]) as emu:  # ...and that is the fix
        assert "svc.v1.Books" in emu.server.contracts.services


def test_an_import_found_with_errors_of_its_own_gets_no_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dep.proto").write_text('syntax = "proto3";\nmessage Dep { Nope x = 1; }\n')
    (tmp_path / "main.proto").write_text('syntax = "proto3";\nimport "dep.proto";\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ContractError) as caught:
        compile_contracts(["main.proto"])
    assert "-I" not in str(caught.value)
    assert str(caught.value).endswith("fix the .proto files above and start again")


def test_emulator_yaml_protos_get_the_same_hint(vendored: Path) -> None:
    (vendored / "emulator.yaml").write_text("protos: [protos/svc]\n")
    done = emulate("check", "--config", str(vendored / "emulator.yaml"), cwd=vendored)
    assert done.returncode == 2
    _no_traceback(done)
    assert "add -I protos (import_paths: in emulator.yaml)" in done.stderr
    (vendored / "emulator.yaml").write_text("protos: [protos/svc]\nimport_paths: [protos]\n")
    done = emulate("check", "--config", str(vendored / "emulator.yaml"), cwd=vendored)
    assert done.returncode == 0, done.stderr


UNUSABLE = ("missing", "empty-dir", "wrong-suffix", "corrupt-set", "empty-set")


def _setup_error_cases(tmp: Path) -> dict[str, tuple[str, str]]:
    (tmp / "empty").mkdir()
    (tmp / "notes.txt").write_text("syntax = 'proto3';\n")
    (tmp / "corrupt.binpb").write_bytes(b"\xff\xfe this is not protobuf \x00\x01")
    (tmp / "nothing.pb").write_bytes(b"")
    return {
        "missing": (str(tmp / "nope"), "no such file or directory"),
        "empty-dir": (str(tmp / "empty"), "holds no .proto files"),
        "wrong-suffix": (
            str(tmp / "notes.txt"),
            "expected a directory, a .proto file or a descriptor set",
        ),
        "corrupt-set": (str(tmp / "corrupt.binpb"), "not a FileDescriptorSet"),
        "empty-set": (str(tmp / "nothing.pb"), "holds no files"),
    }


@pytest.mark.parametrize(
    ("case", "mode"),
    [
        *((case, "check") for case in UNUSABLE),
        ("missing", "serve"),
        ("corrupt-set", "serve"),
    ],
)
def test_unusable_proto_path(tmp_path: Path, case: str, mode: str) -> None:
    path, message = _setup_error_cases(tmp_path)[case]
    done = (
        emulate("check", "--proto", path)
        if mode == "check"
        else emulate("--proto", path, "--port", "0")
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    _no_traceback(done)
    assert done.stderr.startswith("emulate: error: ")
    assert path in done.stderr and message in done.stderr, done.stderr


def test_same_file_twice_with_different_content(tmp_path: Path) -> None:
    root = tmp_path / "contracts"
    root.mkdir()
    source = root / "simple.proto"
    source.write_text(SIMPLE)
    built = protoc_descriptor_set(tmp_path / "simple.binpb", root, source)
    assert list(load_contracts([root, built]).services) == [
        "simple.v1.Simple"
    ]  # same content: fine

    source.write_text(SIMPLE.replace("string text = 1;", "string text = 1;\n  int32 size = 2;"))
    done = emulate("check", "--proto", str(root), "--proto", str(built))
    assert done.returncode == 2, done.stdout
    _no_traceback(done)
    assert "simple.proto is defined twice with different content" in done.stderr
    assert str(built) in done.stderr
