"""curl drives `emulate --admin-http-port 0` over the admin API's JSON over HTTP: the same
session flow as the Node and grpcurl clients (tests/admin_flow.py), the emulated service called
with grpcurl; bad input answers 400 naming the problem and the server keeps serving; an unknown
route answers 404."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin_flow import FAULT, GET, STUB, check_flow, get_product, listed, verified
from tests.conftest import EmulateProcess

BANNER = re.compile(r"^  admin: emulator\.admin\.v1\.Admin on this port, JSON over HTTP at (\S+)$")


class Served:
    """An `emulate` process and its admin HTTP base URL, read from the banner."""

    def __init__(self, proc: EmulateProcess) -> None:
        self.proc, self.target = proc, proc.target
        found = [m[1] for line in proc.header.splitlines() if (m := BANNER.match(line))]
        assert len(found) == 1, proc.header
        self.base = found[0]
        assert self.base.startswith("http://127.0.0.1:") and self.base.endswith("/admin/v1")

    def curl(
        self, verb: str, path: str, body: str | dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """`curl -X VERB BASE/PATH` (a body as JSON): the HTTP status and the JSON answer."""
        args = ["curl", "--silent", "--show-error", "--max-time", "20", "-X", verb]
        args += ["--write-out", "\n%{http_code}"]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data-binary", "@-"]
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        result = subprocess.run(
            [*args, self.base + path],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        answer, _, status = result.stdout.rpartition("\n")
        return int(status), json.loads(answer)

    def ok(self, verb: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, answer = self.curl(verb, path, body)
        assert status == 200, (verb, path, status, answer)
        return answer


@pytest.fixture
def served() -> Iterator[Served]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not on PATH")
    with EmulateProcess("--proto", "protos", "--admin-http-port", "0") as proc:
        yield Served(proc)
        proc.stop()


def test_curl_drives_a_session_end_to_end(served: Served) -> None:
    session, target = "curl-test-1", served.target

    def both(with_session: str | None) -> dict[str, Any]:
        return {p: get_product(target, p, with_session) for p in ("p1", "p2")}

    out: dict[str, Any] = {}
    added = served.ok("POST", "/stubs", {"session": session, "stubs": [STUB]})
    out["stubs"] = [{k: s.get(k) for k in ("name", "methods", "session")} for s in added["stubs"]]
    fault = served.ok("POST", "/faults", {"session": session, "rule": FAULT})
    out["fault"] = {k: fault.get(k) for k in ("name", "session", "active")}
    out["session_calls"], out["other_calls"] = both(session), both(None)
    expect = {"session": session, "method": GET, "times": 1}
    wrong = served.ok("POST", "/verify", {**expect, "request": {"product_id": "p3"}})
    out["verify_wrong"] = verified(wrong)
    right = served.ok("POST", "/verify", {**expect, "request": {"product_id": "p1"}})
    out["verify_right"] = verified(right)
    calls = f"/calls?session={session}&method={GET}"
    out["listed"] = listed(served.ok("GET", calls))
    out["reset"] = served.ok("POST", "/reset", {"session": session})["parts"]
    out["after_reset"] = both(session)
    out["listed_after_reset"] = listed(served.ok("GET", calls))
    stubs, faults = (served.ok("GET", f"/{part}?session={session}") for part in ("stubs", "faults"))
    out["stubs_after_reset"] = [s["name"] for s in stubs["stubs"]]
    out["faults_after_reset"] = [f["name"] for f in faults["faults"]]
    check_flow(out, session)


def _violation(answer: dict[str, Any]) -> tuple[str, str]:
    assert answer["code"] == "INVALID_ARGUMENT", answer
    [violation] = answer["field_violations"]
    return violation["field"], violation["description"]


def test_bad_input_is_400_naming_the_problem_and_the_server_keeps_serving(
    served: Served,
) -> None:
    status, answer = served.curl("POST", "/stubs", '{"stubs": [')
    assert status == 400
    field, description = _violation(answer)
    assert field == "body" and description.startswith("the body is not JSON: "), answer

    misspelt = {**STUB, "respond": {"message": {"nmae": "x"}}}
    status, answer = served.curl("POST", "/stubs", {"session": "s", "stubs": [misspelt]})
    assert status == 400
    field, description = _violation(answer)
    assert field == "stubs[0].respond.message.nmae", answer
    assert "no field 'nmae'" in description and "did you mean 'name'?" in description

    status, answer = served.curl("POST", "/stubs", "[1]")
    assert status == 400
    field, description = _violation(answer)
    assert field == "body" and "JSON object" in description, answer

    # Nothing was added, and both doors still answer.
    assert served.ok("GET", "/stubs?session=s") == {"stubs": []}
    assert served.ok("GET", "/info")["version"]
    assert get_product(served.target, "p1", "s")["code"] == "OK"


def test_an_unknown_route_is_404(served: Served) -> None:
    status, answer = served.curl("GET", "/no-such-thing")
    assert status == 404
    assert answer["code"] == "NOT_FOUND"
    assert answer["message"] == "no admin route GET /admin/v1/no-such-thing"
    assert "POST /admin/v1/stubs" in answer["routes"]
    status, answer = served.curl("PUT", "/stubs", {})
    assert status == 404 and answer["message"] == "no admin route PUT /admin/v1/stubs"
