"""One test's life over the admin API, as a non-Python client lives it, and what it must see.

The Node script (tests/node/admin_flow.js), grpcurl (tests/test_admin_node.py) and curl
(tests/test_admin_curl.py) each drive a fresh `emulate` the same way, against one session:

  1. add a stub (GetProduct p1 -> STUB_ANSWER) and a fault (GetProduct p2 -> UNAVAILABLE);
  2. call GetProduct p1 and p2 with the session header, then both without it;
  3. verify a wrong expectation (p3, once) and the right one (p1, once);
  4. list the session's GetProduct calls;
  5. reset the session, call p1 and p2 with the header again, and list again.

Each gathers what it saw into one dict (the shape the Node script prints) and `check_flow`
asserts on it, so the three clients are held to the same exact answers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

GET = "acme.shop.v1.Catalog/GetProduct"
SESSION_HEADER = "x-emulator-session"
# The same in tests/node/admin_flow.js.
STUB_NAME, STUB_ANSWER = "p1-session-stub", "Stubbed for the session"
FAULT_NAME, FAULT_MESSAGE = "p2-session-fault", "p2 is down for the session"
STUB = {
    "name": STUB_NAME,
    "method": GET,
    "match": {"request": {"product_id": "p1"}},
    "respond": {"message": {"name": STUB_ANSWER}},
}
FAULT = {
    "name": FAULT_NAME,
    "match": {"method": GET, "request": {"product_id": "p2"}},
    "abort": {"code": "UNAVAILABLE", "message": FAULT_MESSAGE},
}
GRPCURL = Path(sys.executable).parent / "grpcurl"
_STATUS_NAMES = {  # grpcurl -format-error prints the status number
    0: "OK",
    3: "INVALID_ARGUMENT",
    5: "NOT_FOUND",
    14: "UNAVAILABLE",
}


def grpcurl(
    target: str, method: str, data: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """`grpcurl -plaintext -format-error`: its exit status and the answer as JSON (or the
    status, which it prints to stderr)."""
    flags = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    flags += ["-d", json.dumps(data)]
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", "-format-error", *flags, target, method],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    text = (result.stdout if result.returncode == 0 else result.stderr).strip()
    assert text.startswith("{"), f"grpcurl {method}: {result.stdout}\n{result.stderr}"
    return result.returncode, json.loads(text)


def get_product(target: str, product_id: str, session: str | None) -> dict[str, Any]:
    """GetProduct through grpcurl, with the session header or without: what came back."""
    headers = {SESSION_HEADER: session} if session else {}
    status, answer = grpcurl(target, GET, {"product_id": product_id}, headers)
    if status == 0:
        return {"code": "OK", "product_id": answer["productId"], "name": answer["name"]}
    return {"code": _STATUS_NAMES[answer["code"]], "details": answer["message"]}


def listed(answer: dict[str, Any]) -> dict[str, Any]:
    """A ListCalls answer in proto3 JSON, as the Node script reports it."""
    return {
        "total": int(answer.get("total", 0)),
        "calls": [
            {
                "index": int(record["index"]),
                "method": record["method"],
                "code": record["code"],
                "request": record["requests"][0],
                "session": record.get("session", ""),
                "answered_by": record.get("answeredBy", ""),
                "faults": record.get("faults", []),
            }
            for record in answer.get("calls", [])
        ],
    }


def verified(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": answer.get("ok", False),
        "count": int(answer.get("count", 0)),
        "report": answer.get("report", ""),
    }


def _call(index: int, product: str, code: str, answered_by: str, *faults: str) -> dict[str, Any]:
    return {
        "index": index,
        "method": GET,
        "code": code,
        "request": {"productId": product},
        "answered_by": answered_by,
        "faults": list(faults),
    }


def check_flow(out: dict[str, Any], session: str) -> None:
    """What the flow must have seen, exactly, on an emulator that served no other calls."""
    assert out["stubs"] == [{"name": STUB_NAME, "methods": [GET], "session": session}]
    assert out["fault"] == {"name": FAULT_NAME, "session": session, "active": True}

    # The session's calls: the stub's answer and the fault's status.
    assert out["session_calls"] == {
        "p1": {"code": "OK", "product_id": "p1", "name": STUB_ANSWER},
        "p2": {"code": "UNAVAILABLE", "details": FAULT_MESSAGE},
    }
    # Calls without the session see neither: the default answers.
    other = out["other_calls"]
    assert other["p1"]["code"] == other["p2"]["code"] == "OK", other
    assert other["p1"]["product_id"] == "p1" and other["p2"]["product_id"] == "p2"
    assert STUB_ANSWER not in (other["p1"]["name"], other["p2"]["name"])

    # Verify: the near-miss report names only the session's two calls and how they differ.
    wrong = out["verify_wrong"]
    assert (wrong["ok"], wrong["count"]) == (False, 0)
    report = re.sub(r" \d+(\.\d+)?(ms|s|us|µs) ", " <duration> ", wrong["report"])
    assert report.splitlines() == [
        f'expected 1 call to {GET} with request {{"product_id": "p3"}}, got 0',
        f"2 call(s) to {GET}; closest:",
        f'  #1 {GET} OK <duration> {{"productId": "p1"}}',
        "      product_id: expected 'p3', got 'p1'",
        f'  #2 {GET} UNAVAILABLE ({FAULT_MESSAGE}) <duration> {{"productId": "p2"}}',
        "      product_id: expected 'p3', got 'p2'",
    ], wrong["report"]
    assert out["verify_right"] == {"ok": True, "count": 1, "report": ""}

    # ListCalls with the session: exactly its two calls (not the two without it, #3 and #4).
    assert out["listed"] == {
        "total": 2,
        "calls": [
            {**_call(1, "p1", "OK", f"stub {STUB_NAME}"), "session": session},
            {**_call(2, "p2", "UNAVAILABLE", "", FAULT_NAME), "session": session},
        ],
    }

    # Reset(session): its stub, fault and calls are gone; the next calls get the default.
    assert sorted(out["reset"]) == ["faults", "journal", "scenarios", "stubs"]
    assert out["after_reset"] == other
    assert out["listed_after_reset"] == {
        "total": 2,
        "calls": [
            {**_call(5, "p1", "OK", "default"), "session": session},
            {**_call(6, "p2", "OK", "default"), "session": session},
        ],
    }
    assert out["stubs_after_reset"] == []
    assert out["faults_after_reset"] == []
