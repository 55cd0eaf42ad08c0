"""The `emulate` command: serving, signals, `check`, the config file and every setup error."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
from pathlib import Path

import grpc
import pytest

from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess, emulate, wait_until

GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_serve_prints_the_real_port_then_the_services() -> None:
    with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS)) as proc:
        assert proc.target.startswith("127.0.0.1:") and proc.port > 0
        with grpc.insecure_channel(proc.target) as channel:
            assert channel.unary_unary(GET_PRODUCT)(b"\n\x02p1")
        code, out, err = proc.stop()
    assert code == 0, err
    assert "acme.shop.v1.Catalog (4 methods, behaviours: GetProduct, ListProducts)" in out
    assert "acme.shop.v1.Orders (5 methods" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_drain_in_flight_calls_then_exit_zero(tmp_path: Path, sig: signal.Signals) -> None:
    started = tmp_path / "started"
    (tmp_path / "slow.py").write_text(
        textwrap.dedent(f"""
        import asyncio, pathlib
        from emulator import Behavior

        class Slow(Behavior):
            service = "acme.shop.v1.Catalog"

            async def GetProduct(self, request, ctx):
                pathlib.Path({str(started)!r}).touch()
                await asyncio.sleep(0.5)
                return {{"name": "finished"}}
    """)
    )
    with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(tmp_path / "slow.py")) as proc:
        result: dict[str, object] = {}

        def call() -> None:
            with grpc.insecure_channel(proc.target) as channel:
                try:
                    result["reply"] = channel.unary_unary(GET_PRODUCT)(b"", timeout=20)
                except grpc.RpcError as exc:
                    result["error"] = exc

        thread = threading.Thread(target=call)
        thread.start()
        wait_until(started.exists)
        proc.proc.send_signal(sig)
        thread.join(timeout=20)
        code, _, err = proc.stop(signal=False)
    assert code == 0, err
    assert "error" not in result
    assert b"finished" in result["reply"]  # type: ignore[operator]


def test_check_validates_and_serves_nothing() -> None:
    result = emulate("check", "--proto", str(PROTOS), "--behaviors", str(BEHAVIORS))
    assert result.returncode == 0, result.stderr
    assert "ok: 2 services, 9 methods, 5 with behaviours" in result.stdout


def _behavior(tmp_path: Path, body: str, name: str = "b.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Katalog"
            """,
            [
                "b.py:3",
                "class Shop",
                "'acme.shop.v1.Katalog' is not in the contracts",
                "did you mean 'acme.shop.v1.Catalog'",
            ],
        ),
        (
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"
                def GetProdukt(self, request, ctx):
                    return None
            """,
            [
                "b.py:3",
                "Shop.GetProdukt",
                "has no method 'GetProdukt'",
                "did you mean 'GetProduct'",
            ],
        ),
        (
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"
                def get_product(self, request, ctx):
                    return None
            """,
            ["Shop.get_product", "did you mean 'GetProduct'"],
        ),
        (
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"
                def GetProduct(self, request, ctx):
                    yield {}
            """,
            ["Shop.GetProduct", "is a generator", "`return` it instead of `yield`"],
        ),
        (
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"
                def GetProduct(self, request, ctx)
                    return None
            """,
            ["b.py:5", "does not import", "SyntaxError"],
        ),
        (
            """
            import json
            from emulator import Behavior
            raise RuntimeError("no database configured")
            """,
            ["b.py:4", "does not import", "RuntimeError: no database configured"],
        ),
    ],
    ids=[
        "unknown-service",
        "unknown-method",
        "snake-case",
        "generator-for-unary",
        "syntax",
        "raises",
    ],
)
def test_bad_behaviours_stop_start_up_naming_file_and_class(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    path = _behavior(tmp_path, body)
    for args in (["check"], ["--port", "0"]):
        result = emulate(*args, "--proto", str(PROTOS), "--behaviors", str(path))
        assert result.returncode == 2, result.stdout
        _no_traceback(result.stderr)
        for text in expected:
            assert text in result.stderr, result.stderr
        assert result.stdout == ""


def test_two_behaviours_for_one_method_are_refused(tmp_path: Path) -> None:
    for name in ("one.py", "two.py"):
        _behavior(
            tmp_path,
            """
            from emulator import Behavior
            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"
                def GetProduct(self, request, ctx):
                    return None
            """,
            name,
        )
    result = emulate("check", "--proto", str(PROTOS), "--behaviors", str(tmp_path))
    assert result.returncode == 2
    assert "two behaviours for acme.shop.v1.Catalog/GetProduct" in result.stderr
    assert "one.py:5" in result.stderr and "two.py:5" in result.stderr  # the methods


def test_config_file_holds_the_same_settings(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(
        textwrap.dedent(f"""
        protos: [{PROTOS}]
        behaviors: [{BEHAVIORS}]
        seed: 7
        server: {{host: 127.0.0.1, port: 0}}
        defaults: {{stream_messages: 4}}
    """)
    )
    result = emulate("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    with EmulateProcess("--config", str(config)) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            replies = list(channel.unary_stream("/acme.shop.v1.Orders/WatchOrder")(b""))
        assert len(replies) == 4
        proc.stop()
    # Flags override the file.
    with EmulateProcess("--config", str(config), "--stream-messages", "2") as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert len(list(channel.unary_stream("/acme.shop.v1.Orders/WatchOrder")(b""))) == 2
        proc.stop()


def test_config_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    config = tmp_path / "env" / "emulator.yaml"
    config.write_text(f"protos: {os.path.relpath(PROTOS, config.parent)}\n")
    result = emulate("check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "protos: [p]\nservr: {port: 1}\n",
            ["emulator.yaml:2", "unknown key 'servr'", "did you mean 'server'"],
        ),
        (
            "protos: [p]\nserver:\n  port: lots\n",
            ["emulator.yaml:3", "server.port", "expected an integer"],
        ),
        ("protos: [p]\nserver:\n  port: 70000\n", ["emulator.yaml:3", "server.port", "65535"]),
        ("protos: [p]\nseed: [1]\n", ["emulator.yaml:2", "seed", "expected an integer"]),
        ("protos: [p]\nserver:\n  grace_period: soon\n", ["server.grace_period", "duration"]),
        ("protos: [p\n", ["emulator.yaml", "not valid YAML"]),
        ("- protos\n", ["emulator.yaml:1", "must be a mapping"]),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "out-of-range",
        "list-for-int",
        "bad-duration",
        "yaml",
        "list",
    ],
)
def test_bad_config_names_the_key_and_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(text)
    result = emulate("check", "--config", str(config))
    assert result.returncode == 2
    _no_traceback(result.stderr)
    for part in expected:
        assert part in result.stderr, result.stderr


def test_missing_config_file_and_missing_protos(tmp_path: Path) -> None:
    result = emulate("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot be read" in result.stderr
    result = emulate("check")
    assert result.returncode == 2 and "--proto" in result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = emulate("--proto", str(PROTOS), "--port", str(port))
    assert result.returncode == 2
    _no_traceback(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_settings_come_from_emulator_environment_variables() -> None:
    env = {
        "EMULATOR_PROTOS": str(PROTOS),
        "EMULATOR_SEED": "9",
        "EMULATOR_DEFAULTS_STREAM_MESSAGES": "2",
    }
    with EmulateProcess(env=env) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert len(list(channel.unary_stream("/acme.shop.v1.Orders/WatchOrder")(b""))) == 2
        proc.stop()
    # Flags win over the environment.
    with EmulateProcess("--stream-messages", "4", env=env) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert len(list(channel.unary_stream("/acme.shop.v1.Orders/WatchOrder")(b""))) == 4
        proc.stop()


def test_bad_environment_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATOR_PROTOS", str(PROTOS))
    monkeypatch.setenv("EMULATOR_SERVER_PORT", "lots")
    result = emulate("check")
    assert result.returncode == 2
    assert "environment variable EMULATOR_SERVER_PORT (server.port)" in result.stderr
    assert "expected an integer" in result.stderr
    monkeypatch.delenv("EMULATOR_SERVER_PORT")
    monkeypatch.setenv("EMULATOR_SEDE", "3")
    result = emulate("check")
    assert result.returncode == 0
    assert "ignoring environment variable EMULATOR_SEDE" in result.stderr
    assert "did you mean EMULATOR_SEED?" in result.stderr


def test_health_command_exits_zero_when_serving() -> None:
    with EmulateProcess("--proto", str(PROTOS)) as proc:
        ok = emulate("health", "--target", proc.target)
        assert ok.returncode == 0 and "SERVING" in ok.stdout
        service = emulate("health", "--target", proc.target, "--service", "acme.shop.v1.Catalog")
        assert service.returncode == 0
        unknown = emulate("health", "--target", proc.target, "--service", "no.Such")
        assert unknown.returncode == 1
        assert "does not know the service 'no.Such'" in unknown.stdout
        proc.stop()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = emulate("health", "--target", f"127.0.0.1:{port}", "--timeout", "500ms")
    assert down.returncode == 1
    assert down.stdout.startswith("unhealthy:") and "UNAVAILABLE" in down.stdout
    _no_traceback(down.stderr)


def test_sigterm_exits_within_the_grace_period_despite_a_busy_sync_behaviour(
    tmp_path: Path,
) -> None:
    from tests.test_lifecycle import _busy_behavior

    behaviors, started = _busy_behavior(tmp_path)
    with EmulateProcess(
        "--proto", str(PROTOS), "--behaviors", behaviors, "--grace-period", "200ms"
    ) as proc:
        channel = grpc.insecure_channel(proc.target)
        future = channel.unary_unary(GET_PRODUCT).future(b"", timeout=30)
        wait_until(started.exists)
        proc.proc.send_signal(signal.SIGTERM)
        code, _, err = proc.stop(timeout=8, signal=False)  # well before the 20 s sleep ends
        future.cancel()
        channel.close()
    assert code == 0, err
    assert "still running after the grace period" in err


@pytest.mark.parametrize(
    "name", ["EMULATOR_AUTH_TOKENS", "EMULATOR_AUTH_JWT_KEYS", "EMULATOR_TLS_CLIENTCA"]
)
def test_an_unknown_variable_of_a_config_section_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("EMULATOR_PROTOS", str(PROTOS))
    monkeypatch.setenv(name, "x")
    result = emulate("check")
    assert result.returncode == 2
    assert f"emulate: error: environment variable {name}: not a setting" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_takes_the_serving_flags_and_sizes_with_units() -> None:
    result = emulate("check", "--proto", str(PROTOS), "--port", "5", "--max-metadata-size", "64KiB")
    assert result.returncode == 0, result.stderr
    result = emulate("check", "--proto", str(PROTOS), "--max-metadata-size", "lots")
    assert result.returncode == 2
    assert "argument --max-metadata-size: expected a size" in result.stderr
