"""`--journal-out FILE`: every call of a real `emulate` process, of all four kinds, as one JSON
line each (the admin API's CallRecord JSON), redacted, and still there after a SIGKILL."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from emulator import Emulator
from emulator.contracts import load_contracts
from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess, emulate, wait_until

ORDERS = "acme.shop.v1.Orders"
TOKEN = "s3cret-token-value"
API_SECRET = "api-secret-value"
METADATA = (
    ("authorization", f"Bearer {TOKEN}"),
    ("x-api-secret", API_SECRET),
    ("x-test-name", "journal-out"),
)


def written(path: Path) -> int:
    """Whole lines written so far, for polling: the writer may be in the middle of the next
    (a poll that asserted a whole file would fail on a line being written)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    assert text == "" or text.endswith("\n"), "the last line is cut short"
    return [json.loads(line) for line in text.splitlines()]


class Orders:
    """Real grpcio client calls of every kind to acme.shop.v1.Orders."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.methods = load_contracts([PROTOS]).methods
        self.channel = channel

    def message(self, method: str, **fields: Any) -> Any:
        return self.methods[f"/{ORDERS}/{method}"].input_class(**fields)

    def _call(self, kind: str, method: str) -> Any:
        spec = self.methods[f"/{ORDERS}/{method}"]
        return getattr(self.channel, kind)(
            f"/{ORDERS}/{method}",
            request_serializer=spec.input_class.SerializeToString,
            response_deserializer=spec.output_class.FromString,
        )

    def all_four_kinds(self) -> None:
        item = {"product_id": "p1", "quantity": 2}
        order = self.message("CreateOrder", customer_id="c1", line_items=[item])
        self._call("unary_unary", "CreateOrder")(order, metadata=METADATA, timeout=10)
        items = [self.message("UploadLineItems", product_id=f"p{i}", quantity=i) for i in (1, 2)]
        upload = self._call("stream_unary", "UploadLineItems")
        upload(iter(items), metadata=METADATA, timeout=10)
        watch = self._call("unary_stream", "WatchOrder")
        list(watch(self.message("WatchOrder", order_id="o1"), metadata=METADATA, timeout=10))
        chat = self._call("stream_stream", "Chat")
        said = [self.message("Chat", order_id="o1", text=t) for t in ("hi", "where is it?")]
        list(chat(iter(said), metadata=METADATA, timeout=10))
        with pytest.raises(grpc.RpcError) as refused:  # a behaviour's INVALID_ARGUMENT
            self._call("unary_unary", "CreateOrder")(
                self.message("CreateOrder"), metadata=METADATA, timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def unary(self, n: int) -> None:
        create = self._call("unary_unary", "CreateOrder")
        item = {"product_id": "p1", "quantity": 1}
        for i in range(n):
            create(self.message("CreateOrder", customer_id=f"c{i}", line_items=[item]), timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[EmulateProcess, Path]]:
    out = tmp_path / "calls.jsonl"
    args = ["--proto", str(PROTOS), "--behaviors", str(BEHAVIORS), "--journal-out", str(out)]
    args += ["--auth-token", f"{TOKEN}=ci", "--journal-redact-headers", "x-api-secret"]
    with EmulateProcess(*args, "--admin-http-port", "0") as proc:
        yield proc, out


def test_every_call_of_every_kind_is_one_redacted_json_line(
    served: tuple[EmulateProcess, Path],
) -> None:
    proc, out = served
    with grpc.insecure_channel(proc.target) as channel:
        Orders(channel).all_four_kinds()
    calls = wait_until(lambda: len(found := lines(out)) == 5 and found)
    assert [(c["index"], c["method"], c["code"]) for c in calls] == [
        (1, f"{ORDERS}/CreateOrder", "OK"),
        (2, f"{ORDERS}/UploadLineItems", "OK"),
        (3, f"{ORDERS}/WatchOrder", "OK"),
        (4, f"{ORDERS}/Chat", "OK"),
        (5, f"{ORDERS}/CreateOrder", "INVALID_ARGUMENT"),
    ]
    create, upload, watch, chat, refused = calls
    assert create["requests"] == [
        {"customerId": "c1", "lineItems": [{"productId": "p1", "quantity": 2}]}
    ]
    [order] = create["responses"]
    assert order["customer"]["customerId"] == "c1" and order["status"] == "PENDING"
    assert create["answeredBy"].startswith("behaviour Orders.CreateOrder at ")
    assert upload["requests"] == [
        {"productId": "p1", "quantity": 1},
        {"productId": "p2", "quantity": 2},
    ]
    assert upload["responses"] == [{"itemCount": 2, "totalQuantity": "3"}]  # int64: a string
    assert (watch["requestCount"], watch["responseCount"], len(watch["responses"])) == (1, 3, 3)
    assert watch["answeredBy"] == "default"
    assert [m["text"] for m in chat["responses"]] == [
        "Support: we got 'hi'",
        "Support: we got 'where is it?'",
    ]
    assert refused["details"] == "an order needs at least one line item"
    assert refused["responses"] == []
    for call in calls:
        assert call["metadata"]["authorization"] == "[redacted]"
        assert call["metadata"]["x-api-secret"] == "[redacted]"
        assert call["metadata"]["x-test-name"] == "journal-out"
        assert call["durationSeconds"] > 0 and call["startedAt"].endswith("Z")
    text = out.read_text()
    assert TOKEN not in text and API_SECRET not in text


def test_the_lines_are_the_admin_apis_call_records(served: tuple[EmulateProcess, Path]) -> None:
    proc, out = served
    with grpc.insecure_channel(proc.target) as channel:
        Orders(channel).all_four_kinds()
    wait_until(lambda: written(out) == 5)
    kept = lines(out)
    [admin] = [x for x in proc.header.splitlines() if "JSON over HTTP at " in x]
    url = admin.split("JSON over HTTP at ")[1].strip() + "/calls"
    with urllib.request.urlopen(url, timeout=10) as reply:
        listed = json.load(reply)["calls"]
    with urllib.request.urlopen(url.removesuffix("/calls") + "/info", timeout=10) as reply:
        fingerprint = json.load(reply)["contractFingerprint"]
    # Each line is the call record plus the fingerprint of the contracts that served it.
    assert {line.pop("contractFingerprint") for line in kept} == {fingerprint}
    assert kept == listed


def test_a_killed_emulator_leaves_every_call_it_finished(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    args = ["--proto", str(PROTOS), "--behaviors", str(BEHAVIORS), "--journal-out", str(out)]
    with EmulateProcess(*args) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            Orders(channel).unary(50)
        # Flushed without any shutdown: another process reads them while the emulator runs.
        wait_until(lambda: written(out) == 50)
        proc.proc.send_signal(signal.SIGKILL)
        code, _, _ = proc.stop(signal=False)
    assert code == -signal.SIGKILL
    calls = lines(out)
    assert [c["index"] for c in calls] == list(range(1, 51))
    assert [c["requests"][0]["customerId"] for c in calls] == [f"c{i}" for i in range(50)]


def test_a_stopped_emulator_writes_every_call_before_it_exits(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    out.write_text('{"earlier": "run"}\n')  # appended to, never truncated
    args = ["--proto", str(PROTOS), "--behaviors", str(BEHAVIORS), "--journal-out", str(out)]
    with EmulateProcess(*args) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            Orders(channel).unary(200)
        code, _, err = proc.stop()  # SIGTERM at once: queued lines are written in the drain
    assert code == 0, err
    calls = lines(out)
    assert calls[0] == {"earlier": "run"}
    assert [c["index"] for c in calls[1:]] == list(range(1, 201))


def test_a_file_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "calls.jsonl"
    done = emulate("--proto", str(PROTOS), "--port", "0", "--journal-out", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"emulate: error: journal.out {missing}: cannot be opened for writing: "
        "No such file or directory"
    ]
    assert done.stdout == ""


def test_check_writes_no_file(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    done = emulate("check", "--proto", str(PROTOS), "--journal-out", str(out))
    assert done.returncode == 0, done.stderr
    assert not out.exists()


def test_the_config_file_and_the_environment_set_it_too(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(f"protos: [{PROTOS}]\njournal:\n  out: calls.jsonl\n")
    elsewhere = tmp_path / "elsewhere"  # the working directory: the path is the file's
    elsewhere.mkdir()
    with EmulateProcess("--config", str(config), cwd=elsewhere) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            Orders(channel).unary(1)
        wait_until(lambda: written(tmp_path / "calls.jsonl") == 1)  # beside the file
    env_out = tmp_path / "from-env.jsonl"
    with EmulateProcess("--proto", str(PROTOS), env={"EMULATOR_JOURNAL_OUT": str(env_out)}) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            Orders(channel).unary(2)
        wait_until(lambda: written(env_out) == 2)


def test_an_in_process_emulator_writes_it_too(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    with Emulator(protos=PROTOS, behaviors=BEHAVIORS, journal={"out": str(out)}) as emu:
        Orders(emu.channel()).unary(3)
        emu.reset()  # a reset empties the journal, not the file
        Orders(emu.channel()).unary(1)
    assert [c["index"] for c in lines(out)] == [1, 2, 3, 1]
