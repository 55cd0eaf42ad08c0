"""Issue 16: the user's own generated classes (`protoc --python_out`) in behaviours and the journal.

When the process has imported a generated module for a contract type, a behaviour's requests are
instances of its classes and its messages are sent as they are; journal records read as them
too. A module generated from another version of the contract is left alone, with a warning.

protoc's modules register their types in protobuf's default pool, which is process-wide and
never forgets a type: the scenarios for the bundled `acme.shop.v1` contracts run in a Python of
their own, so no other test sees those types there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor

from emulator.contracts.generated import difference, generated_class
from tests.conftest import PROTOS

ROOT = Path(__file__).resolve().parent.parent
PROTOC = (sys.executable, "-m", "grpc_tools.protoc")
FILES = ("acme/common/v1/money.proto", "acme/shop/v1/catalog.proto", "acme/shop/v1/orders.proto")


def protoc(protos: Path, out: Path) -> None:
    """What a user's build runs: messages and grpc stubs for the contracts."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *PROTOC,
            f"-I{protos}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *FILES,
        ],
        check=True,
        capture_output=True,
    )


def run(script: str, generated: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh Python that imports this worktree's emulator and `generated`."""
    (cwd / "scenario.py").write_text(textwrap.dedent(script))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(generated)])}
    return subprocess.run(
        [sys.executable, "scenario.py"],
        check=False,  # the caller shows stderr when it failed
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


BEHAVIOUR = """
import grpc
from acme.shop.v1 import catalog_pb2, orders_pb2
from emulator import Behavior, RpcAbort


def mine(message, cls):
    if not isinstance(message, cls):
        raise RpcAbort(grpc.StatusCode.FAILED_PRECONDITION, f"got a {type(message)!r}")


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        mine(request, catalog_pb2.GetProductRequest)
        mine(ctx.default_response(), catalog_pb2.Product)
        return catalog_pb2.Product(product_id=request.product_id, name="generated", stock_count=3)

    async def ListProducts(self, request, ctx):
        mine(request, catalog_pb2.ListProductsRequest)
        yield catalog_pb2.Product(name="first")
        yield {"name": "a dict"}
        yield None  # the default


class Orders(Behavior):
    service = "acme.shop.v1.Orders"

    def UploadLineItems(self, requests, ctx):
        items = list(requests)
        for item in items:
            mine(item, orders_pb2.LineItem)
        return orders_pb2.UploadSummary(item_count=len(items))
"""

SCENARIO = """
import grpc
from acme.shop.v1 import catalog_pb2, catalog_pb2_grpc, orders_pb2, orders_pb2_grpc
from emulator import Emulator

with Emulator(protos={protos!r}, behaviors="behaviors/") as emu:
    catalog = catalog_pb2_grpc.CatalogStub(emu.channel())
    product = catalog.GetProduct(catalog_pb2.GetProductRequest(product_id="p1"), timeout=10)
    assert product == catalog_pb2.Product(product_id="p1", name="generated", stock_count=3)
    names = [p.name for p in catalog.ListProducts(catalog_pb2.ListProductsRequest(), timeout=10)]
    assert names[:2] == ["first", "a dict"] and len(names) == 3 and names[2], names
    orders = orders_pb2_grpc.OrdersStub(emu.channel())
    items = [orders_pb2.LineItem(product_id="a"), orders_pb2.LineItem(quantity=2)]
    assert orders.UploadLineItems(iter(items), timeout=10).item_count == 2
    catalog.GetCategoryTree(catalog_pb2.GetCategoryTreeRequest(), timeout=10)  # a default

    record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
    assert isinstance(record.request, catalog_pb2.GetProductRequest), type(record.request)
    assert record.request == catalog_pb2.GetProductRequest(product_id="p1")
    assert record.response == product
    emu.assert_called(
        "acme.shop.v1.Catalog/GetProduct",
        times=1,
        request=catalog_pb2.GetProductRequest(product_id="p1"),
    )
    upload = emu.calls("acme.shop.v1.Orders/UploadLineItems").last
    assert list(upload.requests) == items
    tree = emu.calls("acme.shop.v1.Catalog/GetCategoryTree").last  # answered by no behaviour
    assert isinstance(tree.response, catalog_pb2.Category), type(tree.response)
print("scenario passed")
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    protoc(PROTOS, out)
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "behaviors").mkdir()
    (tmp_path / "behaviors" / "shop.py").write_text(BEHAVIOUR)
    return tmp_path


def test_behaviours_and_the_journal_use_the_users_generated_classes(
    generated: Path, project: Path
) -> None:
    done = run(SCENARIO.format(protos=str(PROTOS)), generated, project)
    assert done.returncode == 0, done.stderr
    assert "scenario passed" in done.stdout
    assert "does not match the contracts" not in done.stderr


STALE = """
import logging
import grpc
from acme.shop.v1 import catalog_pb2
from emulator import Behavior, Emulator

logging.basicConfig(level=logging.WARNING)
got = []


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        got.append(request)
        return catalog_pb2.Product(name="still generated")  # Product did not change


with Emulator(protos={protos!r}, behaviors=[Catalog]) as emu:
    product = emu.stub("acme.shop.v1.Catalog").GetProduct({{"product_id": "p1"}})
    assert product.name == "still generated"
    # The module's GetProductRequest has an int64 field 1: decoded with it, "p1" would be junk.
    assert not isinstance(got[0], catalog_pb2.GetProductRequest)
    assert got[0].product_id == "p1"
    record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
    assert not isinstance(record.request, catalog_pb2.GetProductRequest)
    assert record.request.product_id == "p1"
    assert isinstance(record.response, catalog_pb2.Product)  # a type that matches is used
print("scenario passed")
"""


def test_a_stale_generated_module_is_left_alone_with_a_warning(
    tmp_path: Path, project: Path
) -> None:
    old = tmp_path / "old-protos"
    shutil.copytree(PROTOS, old)
    catalog = old / "acme" / "shop" / "v1" / "catalog.proto"
    text = catalog.read_text()
    before = "message GetProductRequest {\n  string product_id = 1;\n}"
    assert before in text
    catalog.write_text(text.replace(before, before.replace("string", "int64")))
    stale = tmp_path / "stale"
    protoc(old, stale)

    done = run(STALE.format(protos=str(PROTOS)), stale, project)
    assert done.returncode == 0, done.stderr
    assert "scenario passed" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "does not match" in line]
    assert len(warnings) == 1, done.stderr  # said once, though requests are read twice
    assert warnings[0] == (
        f"WARNING:emulator:acme.shop.v1.catalog_pb2 ({stale}/acme/shop/v1/catalog_pb2.py) "
        "does not match the contracts: acme.shop.v1.GetProductRequest field 1 is "
        "`string product_id` in the contracts, `int64 product_id` in the module; behaviours "
        "and the journal use the emulator's own class for acme.shop.v1.GetProductRequest: "
        "generate the module again from the contracts (protoc --python_out)"
    )


# -- in-process: a package of its own, which no other test loads into the default pool ------

UNIQUE = """
syntax = "proto3";
package genclasses.v1;
message Ping { string id = 1; repeated Pong pongs = 2; Mood mood = 3; }
message Pong { Ping back = 1; }
enum Mood { MOOD_UNSPECIFIED = 0; HAPPY = 1; }
service Pinger { rpc Send(Ping) returns (Pong); }
"""


@pytest.fixture
def unique(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    protos, out = tmp_path / "protos", tmp_path / "out"
    (protos / "genclasses" / "v1").mkdir(parents=True)
    (protos / "genclasses" / "v1" / "ping.proto").write_text(UNIQUE)
    out.mkdir()
    subprocess.run(
        [*PROTOC, f"-I{protos}", f"--python_out={out}", "genclasses/v1/ping.proto"],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        from genclasses.v1 import ping_pb2  # type: ignore[import-not-found]

        yield protos, ping_pb2
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "genclasses"]:
            del sys.modules[name]


def test_a_module_no_longer_imported_has_no_say(unique: tuple[Path, object]) -> None:
    from emulator.contracts.compiler import compile_contracts
    from emulator.contracts.model import Contracts

    protos, pb2 = unique
    contracts = Contracts(compile_contracts([protos]))
    ping = contracts.message_class_by_name("genclasses.v1.Ping")
    assert generated_class(ping) is pb2.Ping  # type: ignore[attr-defined]
    del sys.modules["genclasses.v1.ping_pb2"]  # what a test's clean-up does
    assert generated_class(ping) is None  # the default pool still has it


def _ping(folder: Path, text: str) -> Descriptor:
    """`genclasses.v1.Ping` of `text` in a private pool: no default pool involved."""
    from emulator.contracts.compiler import compile_contracts

    (folder / "genclasses" / "v1").mkdir(parents=True)
    (folder / "genclasses" / "v1" / "ping.proto").write_text(text)
    pool = descriptor_pool.DescriptorPool()
    for file in compile_contracts([folder]).file:
        pool.Add(file)
    return pool.FindMessageTypeByName("genclasses.v1.Ping")


@pytest.mark.parametrize(
    ("edit", "into", "said"),
    [
        ("", "", None),
        (
            "string id = 1;",
            "int64 id = 1;",
            "genclasses.v1.Ping field 1 is `string id` in the contracts, `int64 id` in the module",
        ),
        (
            "string id = 1;",
            "string name = 1;",
            "genclasses.v1.Ping field 1 is `string id` in "
            "the contracts, `string name` in the module",
        ),
        (
            "Mood mood = 3; }",
            "Mood mood = 3; int32 extra = 4; }",
            "genclasses.v1.Ping has no field 4 (extra) in the contracts",
        ),
        (
            "repeated Pong",
            "Pong",
            "genclasses.v1.Ping field 2 is `repeated genclasses.v1.Pong "
            "pongs` in the contracts, `genclasses.v1.Pong pongs` in the module",
        ),
        (
            "Ping back = 1;",
            "Ping back = 2;",
            "genclasses.v1.Pong.back (field 1) is not in the module",
        ),  # a reached type counts
        (
            "HAPPY = 1;",
            "HAPPY = 2;",
            "enum genclasses.v1.Mood value HAPPY = 1 is only in the contracts",
        ),
        (
            "string id = 1;",
            "optional string id = 1;",
            "genclasses.v1.Ping field 1 is `string "
            "id` in the contracts, `optional string id` in the module",
        ),
    ],
)
def test_difference_names_the_first_field_that_differs(
    tmp_path: Path, edit: str, into: str, said: str | None
) -> None:
    ours = _ping(tmp_path / "ours", UNIQUE)
    theirs = _ping(tmp_path / "theirs", UNIQUE.replace(edit, into) if edit else UNIQUE)
    assert difference(ours, theirs) == said


RULES = """
syntax = "proto3";
package genrules.v1;
import "buf/validate/validate.proto";
message Req { string id = 1; }
message Reply { string name = 1 [(buf.validate.field).string.min_len = 3]; }
service Rules { rpc Get(Req) returns (Reply); }
"""

RULE_FILES = ("genrules/v1/rules.proto", "buf/validate/validate.proto")

RULES_SCENARIO = """
import grpc
from genrules.v1 import rules_pb2
from emulator import Emulator

def get(request, ctx):
    return rules_pb2.Reply(name=request.id)  # sent as it is: its bytes are checked

rules = {{"responses": "enforce"}}
with Emulator(protos={protos!r}, validation=rules, raise_behavior_errors=False) as emu:
    emu.override("genrules.v1.Rules/Get", get)
    stub = emu.stub("genrules.v1.Rules")
    assert stub.Get({{"id": "long enough"}}).name == "long enough"
    assert isinstance(emu.calls("genrules.v1.Rules/Get").last.response, rules_pb2.Reply)
    try:
        stub.Get({{"id": "x"}})
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INTERNAL, exc
        assert "response.name: must be at least 3 characters" in exc.details(), exc.details()
    else:
        raise AssertionError("a response that breaks a rule was sent")
print("scenario passed")
"""


def test_a_generated_response_keeps_the_contracts_validation_rules(tmp_path: Path) -> None:
    from emulator.contracts.compiler import BUNDLED_INCLUDE

    protos, out = tmp_path / "protos", tmp_path / "out"
    (protos / "genrules" / "v1").mkdir(parents=True)
    (protos / "genrules" / "v1" / "rules.proto").write_text(RULES)
    out.mkdir()
    subprocess.run(
        [*PROTOC, f"-I{protos}", f"-I{BUNDLED_INCLUDE}", f"--python_out={out}", *RULE_FILES],
        check=True,
        capture_output=True,
    )
    done = run(RULES_SCENARIO.format(protos=str(protos)), out, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scenario passed" in done.stdout
