"""Stubs through the pytest fixture, in inner pytest sessions (pytester, in-process): marker and
ini stubs, a test's own stubs gone at its end, sequences restarted per test on a shared server."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import PROTOS
from tests.test_pytest_plugin import INI, run, write

STUBS = """
- name: retry-then-ok
  method: acme.shop.v1.Catalog/GetProduct
  match: {request: {product_id: retry}}
  sequence:
    - {status: {code: UNAVAILABLE}}
    - {message: {name: Second}}
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(PROTOS, pytester.path / "protos")
    (pytester.path / "stubs").mkdir()
    (pytester.path / "stubs" / "catalog.yaml").write_text(STUBS)
    return pytester


TESTS = """
import grpc
import pytest

GET = "acme.shop.v1.Catalog/GetProduct"
INLINE = {"name": "inline", "method": GET, "match": {"request": {"product_id": "p2"}},
          "respond": {"message": {"name": "Inline"}}}


def name(emulator, product_id):
    return emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": product_id}).name


def retry_sequence(emulator):
    with pytest.raises(grpc.RpcError) as first:
        name(emulator, "retry")
    assert first.value.code() == grpc.StatusCode.UNAVAILABLE
    assert name(emulator, "retry") == "Second"


@pytest.mark.emulator(protos="protos/", stubs=["stubs/", INLINE])
def test_one(emulator):
    assert len(emulator.stubs) == 2
    assert name(emulator, "p2") == "Inline"
    retry_sequence(emulator)
    # Added without `with`: the fixture's reset must take it away after this test.
    emulator.stub_for(GET, match={"request": {"product_id": "p1"}},
                      respond={"message": {"name": "Leaky"}})
    assert name(emulator, "p1") == "Leaky"


@pytest.mark.emulator(protos="protos/", stubs=["stubs/", INLINE])
def test_two_same_server(emulator):
    assert len(emulator.stubs) == 2
    assert name(emulator, "p1") != "Leaky"
    retry_sequence(emulator)  # the sequence from its start again
    assert emulator.stubs.stats()[0]["answered"] == 2
"""


def test_marker_stubs_are_scoped_per_test(project: pytest.Pytester) -> None:
    write(project, TESTS)
    elsewhere = project.mkdir("elsewhere")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)  # "stubs/" is relative to the rootdir, not the working directory
        result = run(project, str(project.path / "test_it.py"))
    result.assert_outcomes(passed=2)


def test_ini_stubs(project: pytest.Pytester) -> None:
    ini = INI + "emulator_protos = protos\nemulator_stubs = stubs/catalog.yaml\n"
    write(
        project,
        """
        def test_ini(emulator):
            assert [s["name"] for s in emulator.stubs.stats()] == ["retry-then-ok"]
        """,
        ini=ini,
    )
    run(project).assert_outcomes(passed=1)


def test_a_bad_marker_stub_fails_the_test_with_the_message(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos/", stubs=[{"method": "acme.shop.v1.Catalog/GetProduct",
                                                         "times": 0}])
        def test_bad(emulator):
            pass
        """,
    )
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Emulator(...): stubs[[]0[]].times: must be at least 1*"])
