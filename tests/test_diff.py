"""`emulate diff`: two versions of a contract written here, judged by the real buf binary.

Each pair changes one thing; the expected rule ids and categories are buf's (they are what
`buf breaking` says of the same pair). Inputs are folders, single files, descriptor sets made by
protoc and by buf, and git revisions of a repository made in tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CATALOG = "acme/shop/v1/catalog.proto"
V1 = """syntax = "proto3";

package acme.shop.v1;

import "google/protobuf/timestamp.proto";

message Product {
  string id = 1;
  string name = 2;
  string sku = 3;
  google.protobuf.Timestamp created_at = 4;
}

message GetProductRequest {
  string id = 1;
}

service Catalog {
  rpc GetProduct(GetProductRequest) returns (Product);
  rpc DeleteProduct(GetProductRequest) returns (Product);
}
"""
PRODUCT_AT = "7:1"  # where message Product starts: buf reports a deleted field there
SKU_DELETED = 'Previously present field "3" with name "sku" on message "Product" was deleted'
BUF = Path(sys.executable).parent / "buf"


def _diff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`emulate diff ARGS` run in `cwd` (so paths read as the user typed them), on this
    checkout's code."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "emulator", "diff", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _contracts(root: Path, text: str) -> Path:
    (root / CATALOG).parent.mkdir(parents=True, exist_ok=True)
    (root / CATALOG).write_text(text, encoding="utf-8")
    return root


def _pair(tmp_path: Path, new: str, old: str = V1) -> None:
    _contracts(tmp_path / "old", old)
    _contracts(tmp_path / "new", new)


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def _error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refused diff (exit 2, nothing on stdout)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---- what breaks, category by category ----


def test_a_renumbered_field_breaks_every_category(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("string sku = 3;", "string sku = 5;"))
    result = _diff("--proto", "new", "--against", "old", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert _lines(result) == [
        f"new/{CATALOG}:{PRODUCT_AT}: FIELD_NO_DELETE: {SKU_DELETED}.",
        "1 breaking change (FILE)",
    ]
    wire = _diff("--proto", "new", "--against", "old", "--category", "WIRE", cwd=tmp_path)
    assert wire.returncode == 1, wire.stderr
    assert _lines(wire) == [
        f"new/{CATALOG}:{PRODUCT_AT}: FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED: {SKU_DELETED} "
        'without reserving the number "3".',
        "1 breaking change (WIRE)",
    ]


@pytest.mark.parametrize(
    ("category", "rule"),
    [
        ("FILE", "FIELD_SAME_TYPE"),
        ("PACKAGE", "FIELD_SAME_TYPE"),
        ("WIRE_JSON", "FIELD_WIRE_JSON_COMPATIBLE_TYPE"),
        ("WIRE", "FIELD_WIRE_COMPATIBLE_TYPE"),
    ],
)
def test_a_field_of_another_type_breaks_every_category(
    tmp_path: Path, category: str, rule: str
) -> None:
    _pair(tmp_path, V1.replace("string name = 2;", "int64 name = 2;"))
    result = _diff("--proto", "new", "--against", "old", "--category", category, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    first, summary = _lines(result)
    assert first.startswith(f"new/{CATALOG}:9:3: {rule}: "), first
    assert 'changed type from "string" to "int64"' in first
    assert summary == f"1 breaking change ({category})"


@pytest.mark.parametrize(
    ("reserved", "breaks"),
    [
        ("", {"FILE", "PACKAGE", "WIRE_JSON", "WIRE"}),
        ("reserved 3;", {"FILE", "PACKAGE", "WIRE_JSON"}),  # JSON still knows the name
        ('reserved 3;\n  reserved "sku";', {"FILE", "PACKAGE"}),  # generated code had sku
    ],
    ids=["not-reserved", "number-reserved", "number-and-name-reserved"],
)
def test_a_removed_field_breaks_less_the_more_of_it_is_reserved(
    tmp_path: Path, reserved: str, breaks: set[str]
) -> None:
    _pair(tmp_path, V1.replace("string sku = 3;", reserved))
    for category in ("FILE", "PACKAGE", "WIRE_JSON", "WIRE"):
        result = _diff("--proto", "new", "--against", "old", "--category", category, cwd=tmp_path)
        lines = _lines(result)
        if category in breaks:
            assert result.returncode == 1, (category, result.stdout, result.stderr)
            assert re.fullmatch(rf"\d+ breaking changes? \({category}\)", lines[-1]), lines
            assert 'with name "sku" on message "Product" was deleted' in lines[0]
        else:
            assert result.returncode == 0, (category, result.stdout, result.stderr)
            assert lines == [f"no breaking changes ({category})"]


def test_a_removed_method_breaks_generated_code_not_the_wire(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("  rpc DeleteProduct(GetProductRequest) returns (Product);\n", ""))
    result = _diff("--proto", "new", "--against", "old", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert _lines(result) == [
        f'new/{CATALOG}:18:1: RPC_NO_DELETE: Previously present RPC "DeleteProduct" on service '
        '"Catalog" was deleted.',
        "1 breaking change (FILE)",
    ]
    for category in ("WIRE_JSON", "WIRE"):
        lenient = _diff("--proto", "new", "--against", "old", "--category", category, cwd=tmp_path)
        assert lenient.returncode == 0, lenient.stdout
        assert _lines(lenient) == [f"no breaking changes ({category})"]


def test_a_new_json_name_breaks_wire_json_not_wire(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("string name = 2;", 'string name = 2 [json_name = "title"];'))
    result = _diff("--proto", "new", "--against", "old", "--category", "wire_json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert _lines(result) == [
        f'new/{CATALOG}:9:20: FIELD_SAME_JSON_NAME: Field "2" with name "name" on message '
        '"Product" changed option "json_name" from "name" to "title".',
        "1 breaking change (WIRE_JSON)",
    ]
    wire = _diff("--proto", "new", "--against", "old", "--category", "WIRE", cwd=tmp_path)
    assert wire.returncode == 0, wire.stdout
    assert _lines(wire) == ["no breaking changes (WIRE)"]


def test_additions_break_nothing(tmp_path: Path) -> None:
    added = V1.replace(
        "  google.protobuf.Timestamp created_at = 4;\n",
        "  google.protobuf.Timestamp created_at = 4;\n  repeated string tags = 5;\n",
    ).replace(
        "service Catalog {\n",
        "message Review {\n  string text = 1;\n}\n\nservice Catalog {\n"
        "  rpc ListReviews(GetProductRequest) returns (stream Review);\n",
    )
    _pair(tmp_path, added)
    (tmp_path / "new" / "acme" / "shop" / "v1" / "reviews.proto").write_text(
        'syntax = "proto3";\npackage acme.shop.v1;\nmessage Rating {\n  int32 stars = 1;\n}\n'
    )
    result = _diff("--proto", "new", "--against", "old", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert _lines(result) == ["no breaking changes (FILE)"]


def test_a_deleted_file_has_no_line(tmp_path: Path) -> None:
    _pair(tmp_path, V1)
    (tmp_path / "old" / "acme" / "shop" / "v1" / "reviews.proto").write_text(
        'syntax = "proto3";\npackage acme.shop.v1;\nmessage Rating {\n  int32 stars = 1;\n}\n'
    )
    result = _diff("--proto", "new", "--against", "old", cwd=tmp_path)
    assert result.returncode == 1
    assert _lines(result) == [
        'FILE_NO_DELETE: Previously present file "acme/shop/v1/reviews.proto" was deleted.',
        "1 breaking change (FILE)",
    ]


def test_json_output(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("string sku = 3;", ""))
    result = _diff("--proto", "new", "--against", "old", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {
        "category": "FILE",
        "breaking": [
            {
                "path": f"new/{CATALOG}",
                "line": 7,
                "column": 1,
                "rule": "FIELD_NO_DELETE",
                "message": f"{SKU_DELETED}.",
            }
        ],
    }


# ---- kinds of input ----


def test_descriptor_sets_from_protoc_and_from_buf(tmp_path: Path) -> None:
    """Old from `buf build`, new from protoc without source info: buf names the file by its
    name in the set."""
    _pair(tmp_path, V1.replace("string sku = 3;", "reserved 3;"))
    built = subprocess.run(
        [str(BUF), "build", "old", "-o", "old.binpb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    import grpc_tools
    from grpc_tools import protoc

    wkt = f"-I{Path(grpc_tools.__file__).parent / '_proto'}"
    out = f"--descriptor_set_out={tmp_path / 'new.pb'}"  # in-process: paths from here
    argv = ["protoc", f"-I{tmp_path / 'new'}", wkt, "--include_imports", out]
    assert protoc.main([*argv, str(tmp_path / "new" / CATALOG)]) == 0
    for new in ("new", "new.pb"):
        wire = _diff("--proto", new, "--against", "old.binpb", "--category", "WIRE", cwd=tmp_path)
        assert wire.returncode == 0, (new, wire.stdout, wire.stderr)
    result = _diff("--proto", "new.pb", "--against", "old.binpb", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    first, summary = _lines(result)
    # No folder on disk: the name in the set; no source info: no line (buf would say 1:1).
    assert first == f"{CATALOG}: FIELD_NO_DELETE: {SKU_DELETED}."
    assert summary == "1 breaking change (FILE)"


def test_a_single_proto_file_against_one(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("string sku = 3;", "string sku = 5;"))
    result = _diff(
        "--proto", f"new/{CATALOG}", "--against", f"old/{CATALOG}", "--category", "WIRE",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert _lines(result)[0].startswith(f"new/{CATALOG}:{PRODUCT_AT}: ")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose protos/ has two commits: V1, then the sku field deleted."""
    root = tmp_path / "repo"
    _contracts(root / "protos", V1)
    (root / "README").write_text("not a contract\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "v1")
    _contracts(root / "protos", V1.replace("string sku = 3;", "reserved 3;"))
    _git(root, "commit", "-q", "-am", "v2: sku is gone")
    return root


def test_a_git_revision(repo: Path) -> None:
    result = _diff("--proto", "protos", "--against", "git:HEAD~1", cwd=repo)
    assert result.returncode == 1, result.stderr
    assert _lines(result) == [
        f"protos/{CATALOG}:{PRODUCT_AT}: FIELD_NO_DELETE: {SKU_DELETED}.",
        "1 breaking change (FILE)",
    ]
    wire = _diff("--proto", "protos", "--against", "git:main~1", "--category", "WIRE", cwd=repo)
    assert wire.returncode == 0, wire.stdout  # the number is reserved
    same = _diff("--proto", "protos", "--against", "git:HEAD", cwd=repo)
    assert same.returncode == 0, same.stdout
    assert _lines(same) == ["no breaking changes (FILE)"]
    # From elsewhere, and one file: the revision is of the repository that holds --proto.
    one = _diff(
        "--proto", str(repo / "protos" / CATALOG), "--against", "git:HEAD~1", cwd=repo.parent
    )
    assert one.returncode == 1, one.stderr
    assert "FIELD_NO_DELETE" in one.stdout


def test_uncommitted_changes_against_head(repo: Path) -> None:
    v2 = V1.replace("string sku = 3;", "reserved 3;")
    _contracts(repo / "protos", v2.replace("string name = 2;", "bytes name = 2;"))
    result = _diff("--proto", "protos", "--against", "git:HEAD", "--category", "WIRE", cwd=repo)
    assert result.returncode == 0, result.stdout  # string and bytes share the wire type
    json_too = _diff(
        "--proto", "protos", "--against", "git:HEAD", "--category", "WIRE_JSON", cwd=repo
    )
    assert json_too.returncode == 1, json_too.stdout
    assert "FIELD_WIRE_JSON_COMPATIBLE_TYPE" in json_too.stdout


# ---- bad input: exit 2, one line ----


def test_a_missing_folder(tmp_path: Path) -> None:
    _contracts(tmp_path / "new", V1)
    line = _error(_diff("--proto", "new", "--against", "old", cwd=tmp_path))
    assert line == "emulate diff: error: --against old: no such file or directory"
    line = _error(_diff("--proto", "newer", "--against", "new", cwd=tmp_path))
    assert line == "emulate diff: error: --proto newer: no such file or directory"


def test_contracts_that_do_not_compile_name_file_and_line(tmp_path: Path) -> None:
    _pair(tmp_path, V1.replace("string name = 2;", "Moneyy name = 2;"))
    line = _error(_diff("--proto", "new", "--against", "old", cwd=tmp_path))
    assert line == (
        "emulate diff: error: --proto new: contracts do not compile: "
        f'new/{CATALOG}:9:3: "Moneyy" is not defined.'
    )


def test_a_revision_that_does_not_compile_names_it(repo: Path) -> None:
    _contracts(
        repo / "protos", V1.replace("string id = 1;\n  string name", "strin id = 1;\n  string name")
    )
    _git(repo, "commit", "-q", "-am", "broken")
    _contracts(repo / "protos", V1)
    line = _error(_diff("--proto", "protos", "--against", "git:HEAD", cwd=repo))
    assert line == (
        "emulate diff: error: --against git:HEAD: contracts do not compile: "
        f'HEAD:protos/{CATALOG}:8:3: "strin" is not defined.'
    )


def test_bad_revisions(repo: Path, tmp_path: Path) -> None:
    line = _error(_diff("--proto", "protos", "--against", "git:v9", cwd=repo))
    assert line == (
        f"emulate diff: error: --against git:v9: no revision 'v9' in the git repository at {repo}"
    )
    line = _error(_diff("--proto", "protos", "--against", "git:", cwd=repo))
    assert line.endswith("--against git:: name a revision, as in git:HEAD~1 or git:main")
    _contracts(repo / "more", V1)  # not committed
    line = _error(_diff("--proto", "more", "--against", "git:HEAD", cwd=repo))
    assert line.startswith("emulate diff: error: --against git:HEAD: --proto more is not in HEAD (")
    _contracts(tmp_path / "loose", V1)  # tmp_path holds the repository, is not one
    line = _error(_diff("--proto", "loose", "--against", "git:HEAD", cwd=tmp_path))
    assert line == (
        "emulate diff: error: --against git:HEAD: --proto loose is not in a git repository; "
        "give --against a folder, a .proto file or a descriptor set instead"
    )


def test_bad_flags(tmp_path: Path) -> None:
    _pair(tmp_path, V1)
    result = _diff("--proto", "new", "--against", "old", "--category", "SOURCE", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "emulate diff: error: argument --category: invalid choice: 'SOURCE' "
        "(choose from 'FILE', 'PACKAGE', 'WIRE_JSON', 'WIRE')"
    )
    line = _error(
        _diff("--proto", "new", "--against", "git:HEAD", "--against", "old", cwd=tmp_path)
    )
    assert line == (
        "emulate diff: error: --against git:HEAD: a git revision stands for all the --proto "
        "paths: give it alone"
    )


def test_import_paths_are_read_at_the_revision_too(repo: Path) -> None:
    """An -I folder of the repository is the one of REV: an import changed since shows."""
    money = repo / "third_party" / "common" / "money.proto"
    money.parent.mkdir(parents=True)
    money.write_text(
        'syntax = "proto3";\npackage common;\nmessage Money {\n  int64 units = 1;\n}\n'
    )
    with_price = V1.replace('import "google/protobuf/timestamp.proto";', (
        'import "google/protobuf/timestamp.proto";\nimport "common/money.proto";'
    )).replace("string sku = 3;", "string sku = 3;\n  common.Money price = 5;")  # fmt: skip
    _contracts(repo / "protos", with_price)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "price")
    money.write_text(
        'syntax = "proto3";\npackage common;\nmessage Money {\n  string units = 1;\n}\n'
    )
    flags = ("--proto", "protos", "-I", "third_party", "--category", "WIRE")
    result = _diff(*flags, "--against", "git:HEAD", cwd=repo)
    assert result.returncode == 1, (result.stdout, result.stderr)
    first, summary = _lines(result)
    assert first.startswith("third_party/common/money.proto:4:3: FIELD_WIRE_COMPATIBLE_TYPE: ")
    assert summary == "1 breaking change (WIRE)"
    line = _error(_diff(*flags, "--against", "git:HEAD~1", cwd=repo))
    assert line.startswith("emulate diff: error: --against git:HEAD~1: -I third_party is not in ")


def test_the_worked_example_of_the_docs(tmp_path: Path) -> None:
    """docs/contracts.md's console block, run on a copy of protos/ committed on main, edited as
    the page says: each command prints what the page shows and exits as its comment says."""
    page = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    block = page.split("```console\n$ emulate diff", 1)[1].split("```", 1)[0]
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", repo / "protos")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1")
    catalog = repo / "protos" / CATALOG
    text = catalog.read_text(encoding="utf-8")
    for old, new in [
        ("  string sku = 2;\n", "  reserved 2;\n"),
        ("  string image_url = 11;\n", '  string image_url = 11 [json_name = "imageUri"];\n'),
    ]:
        assert old in text
        text = text.replace(old, new)
    catalog.write_text(text, encoding="utf-8")
    runs = ("$ emulate diff" + block).split("$ emulate diff ")[1:]
    assert len(runs) == 3
    for run in runs:
        command, *shown = run.splitlines()
        args, _, comment = command.partition("#")
        result = _diff(*shlex.split(args), cwd=repo)
        assert f"exits {result.returncode}" in comment, (command, result.stdout, result.stderr)
        assert _lines(result) == shown, command


def test_without_buf_the_extra_is_named(tmp_path: Path) -> None:
    """A Python with the emulator but no buf next to it nor on PATH: one line naming the extra."""
    import site
    import venv

    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)  # its scripts folder holds no buf
    _pair(tmp_path, V1)
    path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if not (Path(p) / "buf").exists())
    env = {**os.environ, "PATH": path}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    result = subprocess.run(
        [
            str(bare / "bin" / "python"),
            "-m",
            "emulator",
            "diff",
            "--proto",
            "new",
            "--against",
            "old",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert _error(result) == (
        "emulate diff: error: needs buf, which judges the changes: "
        "pip install 'grpc-emulator[diff]' (or put buf on PATH)"
    )
