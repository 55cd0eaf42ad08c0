"""The pytest plugin, run for real in inner pytest sessions (pytester, in-process).

The plugin is active in the inner runs through its `pytest11` entry point; the inner runs inherit
the outer session's contract cache through GRPC_EMULATOR_CACHE_DIR.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import BEHAVIORS, PROTOS

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# Raw GetProduct bytes, so that inner tests need neither generated code nor the dynamic stub.
GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"
P1 = b"\x0a\x02p1"  # GetProductRequest{product_id: "p1"}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An inner project with protos/ and behaviors/ beside its ini file."""
    shutil.copytree(PROTOS, pytester.path / "protos")
    shutil.copytree(BEHAVIORS, pytester.path / "behaviors")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def write(pytester: pytest.Pytester, source: str, ini: str = INI, name: str = "test_it") -> None:
    pytester.makeini(ini)
    pytester.makepyfile(**{name: textwrap.dedent(source)})


# -- configuration ----------------------------------------------------------------------------


def test_marker_paths_are_relative_to_the_rootdir(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos/", behaviors="behaviors/", seed=7)
        def test_marker(emulator):
            assert emulator.config.seed == 7
            reply = emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
            assert reply.product_id == "p1"
            orders = emulator.stub("acme.shop.v1.Orders")
            assert orders.CreateOrder({"line_items": [{"quantity": 1}]}).status == 1  # behaviour
            emulator.assert_called("acme.shop.v1.Catalog/GetProduct", times=1)
        """,
    )
    elsewhere = project.mkdir("elsewhere")
    project.chdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)  # "protos/" does not exist relative to the working directory
        result = run(project, str(project.path / "test_it.py"))
    result.assert_outcomes(passed=1)


def test_absolute_marker_paths(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        f"""
        import pytest

        @pytest.mark.emulator(protos={str(PROTOS)!r}, behaviors=[{str(BEHAVIORS)!r}])
        def test_absolute(emulator):
            reply = emulator.stub("acme.shop.v1.Catalog").GetProduct({{"product_id": "p1"}})
            assert reply.product_id == "p1"
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_ini_options_are_relative_to_the_ini_file(project: pytest.Pytester) -> None:
    """The ini file is in cfg/ and the rootdir above it: `../protos` only works ini-relative."""
    cfg = project.mkdir("cfg")
    (cfg / "pytest.ini").write_text(
        INI + "emulator_protos = ../protos\nemulator_behaviors = ../behaviors\nemulator_seed = 5\n"
    )
    project.makepyfile(
        test_ini="""
        def test_ini(emulator):
            assert emulator.config.seed == 5
            orders = emulator.stub("acme.shop.v1.Orders")
            assert orders.CreateOrder({"line_items": [{"quantity": 1}]}).status == 1  # behaviour
        """
    )
    result = run(project, "-c", "cfg/pytest.ini", "--rootdir", str(project.path))
    result.stdout.fnmatch_lines([f"rootdir: {project.path}*"])
    result.assert_outcomes(passed=1)


def test_ini_options_in_pyproject_toml(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        emulator_protos = ["protos"]
        emulator_behaviors = ["behaviors"]
        emulator_seed = "7"
        asyncio_default_fixture_loop_scope = "function"
        """
    )
    project.makepyfile(
        test_toml="""
        def test_toml(emulator):
            assert emulator.config.seed == 7
            reply = emulator.stub("acme.shop.v1.Orders").CreateOrder({"line_items": [{}]})
            assert reply.status == 1
        """
    )
    run(project).assert_outcomes(passed=1)


def test_the_marker_overrides_the_ini_options(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        def test_from_ini(emulator):
            assert emulator.config.seed == 5
            emulator.stub("acme.shop.v1.Catalog").GetProduct({})  # no behaviours: a default

        @pytest.mark.emulator(protos="protos", behaviors="behaviors", seed=9)
        def test_from_marker(emulator):
            assert emulator.config.seed == 9
            import grpc
            with pytest.raises(grpc.RpcError) as info:  # the behaviour wants a product_id
                emulator.stub("acme.shop.v1.Catalog").GetProduct({})
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        """,
        ini=INI + "emulator_protos = protos\nemulator_seed = 5\n",
    )
    run(project).assert_outcomes(passed=2)


def test_a_marker_can_override_the_ini_contracts(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos")
        def test_marker_contracts(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetProduct({})
        """,
        ini=INI + "emulator_protos = does-not-exist\n",
    )
    run(project).assert_outcomes(passed=1)


def test_a_seed_that_is_not_a_number_is_a_usage_error(project: pytest.Pytester) -> None:
    write(
        project,
        """
        def test_seed(emulator):
            pass
        """,
        ini=INI + "emulator_protos = protos\nemulator_seed = seven\n",
    )
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UsageError: emulator_seed must be an integer, not 'seven'"])


def test_missing_contracts_is_a_clear_usage_error(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        def test_nothing_configured(emulator):
            pass
        """,
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*UsageError: the emulator fixture needs contracts: @pytest.mark.emulator(protos=*"]
    )


def test_positional_marker_arguments_are_a_usage_error(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator("protos/")
        def test_positional(emulator):
            pass
        """,
    )
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UsageError: @pytest.mark.emulator takes keyword arguments only"])


def test_the_marker_is_registered(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos")
        def test_marked(emulator):
            pass
        """,
    )
    run(project, "--strict-markers").assert_outcomes(passed=1)
    result = run(project, "--markers")
    marker = "@pytest.mark.emulator(protos=..., behaviors=..., stubs=..., seed=*fresh=*"
    result.stdout.fnmatch_lines([marker])


# -- sharing and reset -------------------------------------------------------------------------


def test_one_server_per_configuration_reset_between_tests(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import datetime

        import pytest

        pytestmark = pytest.mark.emulator(protos="protos", behaviors="behaviors", seed=7)
        seen = {}

        def test_first(emulator):
            assert len(emulator.calls()) == 0
            seen["first"] = emulator.target
            emulator.override("acme.shop.v1.Catalog/GetProduct", lambda req, ctx: {"name": "x"})
            emulator.state["orders"] = {"stale": None}
            emulator.clock.freeze(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
            catalog = emulator.stub("acme.shop.v1.Catalog")
            assert catalog.GetProduct({"product_id": "p1"}).name == "x"

        def test_second(emulator):
            assert emulator.target == seen["first"]  # the same server
            assert len(emulator.calls()) == 0  # the journal starts empty
            assert emulator.state == {}
            assert emulator.clock.frozen is None
            catalog = emulator.stub("acme.shop.v1.Catalog")
            assert catalog.GetProduct({"product_id": "p1"}).name != "x"  # override undone
            assert emulator.calls().count == 1

        @pytest.mark.emulator(protos="protos", behaviors="behaviors", seed=8)
        def test_other_configuration(emulator):
            assert emulator.target != seen["first"]
            seen["other"] = emulator.target

        def test_same_configuration_again(emulator):
            assert emulator.target == seen["first"]
        """,
    )
    run(project).assert_outcomes(passed=4)


def test_equivalent_configurations_share_a_server(project: pytest.Pytester) -> None:
    """The ini options and markers naming the same paths, spelt differently, are one config."""
    write(
        project,
        """
        import pathlib

        import pytest

        seen = set()

        def test_ini(emulator):
            seen.add(emulator.target)

        @pytest.mark.emulator(protos="protos/")
        def test_string(emulator):
            seen.add(emulator.target)

        @pytest.mark.emulator(protos=["protos"], behaviors=[], seed=0)
        def test_list(emulator):
            seen.add(emulator.target)

        @pytest.mark.emulator(protos=pathlib.Path(__file__).parent / "protos")
        def test_absolute_path(emulator):
            seen.add(emulator.target)
            assert len(seen) == 1
        """,
        ini=INI + "emulator_protos = protos\n",
    )
    run(project).assert_outcomes(passed=4)


def test_fresh_gives_a_server_of_its_own(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        from emulator.errors import EmulatorError

        pytestmark = pytest.mark.emulator(protos="protos")
        seen = {}

        def test_shared(emulator):
            seen["shared"] = emulator
            emulator.state["shared"] = True

        @pytest.mark.emulator(protos="protos", fresh=True)
        def test_fresh(emulator):
            assert emulator is not seen["shared"]
            assert emulator.target != seen["shared"].target
            assert emulator.state == {}
            emulator.stub("acme.shop.v1.Catalog").GetProduct({})
            seen["fresh"] = emulator

        def test_after(emulator):
            assert emulator is seen["shared"]
            assert emulator.calls().count == 0
            with pytest.raises(EmulatorError, match="has stopped"):
                seen["fresh"].target  # stopped when its test ended
            assert seen["fresh"].calls().count == 1  # its journal stays readable
        """,
    )
    run(project).assert_outcomes(passed=3)


def test_servers_are_stopped_at_the_end_of_the_session(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos")
        def test_keep(emulator):
            pytest.kept = emulator
        """,
    )
    run(project).assert_outcomes(passed=1)
    kept = pytest.kept  # type: ignore[attr-defined]
    del pytest.kept  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="has stopped"):
        kept.target  # noqa: B018


# -- asyncio -----------------------------------------------------------------------------------


def test_async_test_with_an_aio_channel(project: pytest.Pytester) -> None:
    write(
        project,
        f"""
        import asyncio

        import pytest

        @pytest.mark.emulator(protos="protos", behaviors="behaviors")
        async def test_async(emulator):
            loop = asyncio.get_running_loop()
            async with emulator.aio_channel() as channel:
                reply = await channel.unary_unary({GET_PRODUCT!r})({P1!r}, timeout=10)
            assert reply  # a serialized Product
            assert asyncio.get_running_loop() is loop
            emulator.assert_called({GET_PRODUCT[1:]!r}, request={{"product_id": "p1"}})

        @pytest.mark.emulator(protos="protos", behaviors="behaviors")
        async def test_async_again(emulator):
            assert emulator.calls().count == 0
            async with emulator.aio_channel() as channel:
                await channel.unary_unary({GET_PRODUCT!r})({P1!r}, timeout=10)
            assert emulator.calls().count == 1
        """,
    )
    run(project).assert_outcomes(passed=2)


# -- failure reports ---------------------------------------------------------------------------


def test_a_failing_test_reports_its_calls(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        pytestmark = pytest.mark.emulator(protos="protos", behaviors="behaviors")

        def test_passes(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetCategoryTree({})

        def test_fails(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p7"})
            emulator.stub("acme.shop.v1.Orders").CreateOrder({"line_items": [{"quantity": 2}]})
            assert False, "boom"
        """,
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails _*",
            "*AssertionError: boom*",
            "*- emulator calls -*",
            "*acme.shop.v1.Catalog/GetProduct*p7*",
            "*acme.shop.v1.Orders/CreateOrder*",
        ]
    )
    assert "GetCategoryTree" not in result.stdout.str()  # only the failing test's calls
    (report,) = (r for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed)  # type: ignore[attr-defined]
    sections = dict(report.sections)
    assert sections["emulator calls"].count("\n") == 1  # two calls, one line each
    assert "acme.shop.v1.Catalog/GetProduct" in sections["emulator calls"]


def test_a_failing_test_without_calls_says_so(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos")
        def test_fails(emulator):
            assert False
        """,
    )
    result = run(project, "-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- emulator calls -*", "(no calls)"])


def test_passing_tests_get_no_calls_section(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        @pytest.mark.emulator(protos="protos")
        def test_passes(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetProduct({})
        """,
    )
    result = run(project, "-rA")
    result.assert_outcomes(passed=1)
    assert "emulator calls" not in result.stdout.str()


def test_a_request_json_cannot_show_still_gets_its_report(project: pytest.Pytester) -> None:
    """A Timestamp past year 9999 made json_format raise inside the report hook: INTERNALERROR,
    and the rest of the session never ran."""
    write(
        project,
        """
        import pytest

        pytestmark = pytest.mark.emulator(protos="protos")

        def test_fails(emulator):
            emulator.stub("acme.shop.v1.Catalog").UpdateProduct(
                {"product": {"product_id": "p1", "created_at": {"seconds": 10**13}}}
            )
            assert False, "boom"

        def test_after(emulator):
            assert emulator.calls().count == 0
        """,
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*- emulator calls -*",
            "#1 acme.shop.v1.Catalog/UpdateProduct OK *{product { product_id: *p1* seconds: 1000*",
        ]
    )


def test_a_report_that_cannot_be_made_is_one_line(project: pytest.Pytester) -> None:
    write(
        project,
        """
        import pytest

        from emulator.journal import CallList

        pytestmark = pytest.mark.emulator(protos="protos")

        def test_fails(emulator, monkeypatch):
            def broken(self):
                raise RuntimeError("cannot describe")

            monkeypatch.setattr(CallList, "describe", broken)
            assert False, "boom"

        def test_after(emulator):
            pass
        """,
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*- emulator calls -*", "(the calls could not be listed: RuntimeError: cannot describe)"]
    )


# -- behaviours that raise ---------------------------------------------------------------------

BUGGY = """
import grpc
import pytest

from emulator import Behavior


class Buggy(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        raise KeyError(request.product_id)


def fail_call(emulator):
    with pytest.raises(grpc.RpcError) as failed:
        emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p9"})
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
"""


def test_a_behaviour_that_raises_fails_its_test_at_teardown(project: pytest.Pytester) -> None:
    write(
        project,
        BUGGY
        + """
pytestmark = pytest.mark.emulator(protos="protos", behaviors=[Buggy])
seen = {}


def test_hits_the_bug(emulator):
    seen["target"] = emulator.target
    fail_call(emulator)


def test_next_on_the_same_server(emulator):
    assert emulator.target == seen["target"]  # shared, and the failure did not leak here


@pytest.mark.emulator(protos="protos", behaviors=[Buggy], fresh=True)
def test_fresh_server(emulator):
    fail_call(emulator)


@pytest.mark.emulator(protos="protos", behaviors=[Buggy], raise_behavior_errors=False)
def test_means_it(emulator):
    fail_call(emulator)
    assert [m for m, _ in emulator.behavior_errors] == ["acme.shop.v1.Catalog/GetProduct"]
""",
    )
    result = run(project)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_hits_the_bug*",
            "*KeyError: 'p9'*",
            "*The above exception was the direct cause of the following exception*",
            "*BehaviorFailedError: 1 call(s) failed because a behaviour raised*",
            "*acme.shop.v1.Catalog/GetProduct: KeyError: 'p9'",
        ]
    )
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_fresh_server*"])
    errored = {
        r.nodeid.rsplit("::", 1)[1]
        for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if r.failed
    }
    assert errored == {"test_hits_the_bug", "test_fresh_server"}


# -- cost of the plugin --------------------------------------------------------------------------


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every run of a project that installs grpc-emulator: grpc,
    protobuf and the server load only when a test takes the fixture."""
    code = (
        "import sys, emulator.pytest_plugin as p\n"
        "assert hasattr(p, 'EmulatorPool')\n"
        "heavy = ('grpc', 'google.protobuf', 'emulator.testing', 'emulator.runtime')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_a_session_without_the_fixture_never_imports_the_emulator(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("emulator")
            assert "emulator.testing" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
