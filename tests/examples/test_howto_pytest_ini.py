"""docs/testing.md, pytest: configured once in `pyproject.toml`, paths relative to the ini."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import BEHAVIORS, PROTOS

PYPROJECT = """
# region pyproject
[tool.pytest.ini_options]
emulator_protos = ["protos"]
emulator_behaviors = ["behaviors"]
emulator_seed = "7"
asyncio_default_fixture_loop_scope = "function"   # only with pytest-asyncio
# endregion
"""


def test_pyproject_configuration(pytester: pytest.Pytester) -> None:
    shutil.copytree(PROTOS, pytester.path / "protos")
    shutil.copytree(BEHAVIORS, pytester.path / "behaviors")
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(
        test_checkout="""
        def test_checkout(emulator):
            assert emulator.config.seed == 7
            reply = emulator.stub("acme.shop.v1.Orders").CreateOrder(
                {"line_items": [{"quantity": 1}]}
            )
            assert reply.status == 1  # PENDING: behaviors/ is loaded
            emulator.assert_called("acme.shop.v1.Orders/CreateOrder", times=1)
        """
    )
    pytester.mkdir("sub")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path / "sub")  # the paths do not depend on the working directory
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", str(pytester.path))
    result.assert_outcomes(passed=1)
