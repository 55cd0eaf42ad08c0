"""`pytest --emulator-artifacts DIR`: a failed test's calls and access log lines, in files named
after it; a passing test writes nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PROTOS


def test_a_failed_test_leaves_its_calls_and_access_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.emulator(protos={str(PROTOS)!r}, log={{"access": "all"}})

        def test_fails(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetProduct(
                {{"product_id": "p1"}}, metadata=[("authorization", "Bearer hush")]
            )
            assert False, "on purpose"

        def test_passes(emulator):
            emulator.stub("acme.shop.v1.Catalog").GetProduct({{"product_id": "p2"}})
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    out = pytester.path / "artifacts"
    # In a process of its own: an in-process run would drop the OpenTelemetry modules it
    # imported from sys.modules afterwards, leaving later tests two copies of them.
    result = pytester.runpytest_subprocess("--emulator-artifacts", str(out))
    result.assert_outcomes(passed=1, failed=1)
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "test_a_failed_test_leaves_its_calls_and_access_lines.py__test_fails.access.log",
        "test_a_failed_test_leaves_its_calls_and_access_lines.py__test_fails.calls.jsonl",
    ]
    (calls_file,) = out.glob("*.calls.jsonl")
    [line] = calls_file.read_text().splitlines()
    record = json.loads(line)
    assert record["method"] == "acme.shop.v1.Catalog/GetProduct"
    assert record["requests"] == [{"productId": "p1"}]
    assert record["metadata"]["authorization"] == "[redacted]"
    (access,) = out.glob("*.access.log")
    text = access.read_text()
    assert "method=acme.shop.v1.Catalog/GetProduct" in text and "code=OK" in text
    assert "hush" not in text and "hush" not in calls_file.read_text()
    result.stdout.fnmatch_lines(["*emulator artifacts*"])
