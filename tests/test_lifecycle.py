"""Start-up and shutdown: emulators built in many threads at once, signals, and behaviour files
that cannot load."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
from pathlib import Path

import grpc
import pytest

from emulator import Behavior, BehaviorError, Emulator, EmulatorError
from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess, Running, emulate, wait_until

GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"

# -- many emulators at once ----------------------------------------------------------------------

ECHO_PROTO = """
syntax = "proto3";
package lifecycle.v1;
// copy {index}: each copy differs, so each thread compiles its own
message Msg {{ string text = 1; }}
service Echo {{ rpc Say(Msg) returns (Msg); }}
"""

ECHO_BEHAVIOR = """
import time
from emulator import Behavior

# A slow import widens the window in which another thread could see this module half-imported.
time.sleep(0.3)


class Echo(Behavior):
    service = "lifecycle.v1.Echo"

    def Say(self, request, ctx):
        return {"text": "from the behaviour"}
"""


def test_emulators_built_in_eight_threads_at_once_all_get_their_behaviours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRPC_EMULATOR_CACHE_DIR", "off")
    behaviors = tmp_path / "behaviors"
    behaviors.mkdir()
    (behaviors / "echo.py").write_text(ECHO_BEHAVIOR)
    protos = []
    for index in range(8):
        folder = tmp_path / f"protos{index}"
        folder.mkdir()
        text = ECHO_PROTO.format(index=index)
        if index == 3:  # one broken contract: its compile captures protoc's messages on fd 2
            text = text.replace("string text = 1;", "strin text = 1;")
        (folder / "echo.proto").write_text(text)
        protos.append(folder)
    stderr_before = os.fstat(2)
    barrier = threading.Barrier(len(protos))
    results: dict[int, Emulator | BaseException] = {}

    def build(index: int) -> None:
        barrier.wait()
        try:
            results[index] = Emulator(protos=protos[index], behaviors=behaviors)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=build, args=(i,)) for i in range(len(protos))]
    original = os.dup(2)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        stderr_after = os.fstat(2)
    finally:
        os.dup2(original, 2)  # if the test fails, later tests still have their stderr
        os.close(original)
    assert (stderr_after.st_dev, stderr_after.st_ino) == (
        stderr_before.st_dev,
        stderr_before.st_ino,
    )
    broken = results.pop(3)
    assert isinstance(broken, EmulatorError), broken
    assert "echo.proto:5" in str(broken) and "strin" in str(broken)
    for index, result in results.items():
        assert isinstance(result, Emulator), (index, result)
        impl = result.server.registry.get("/lifecycle.v1.Echo/Say")
        assert impl is not None, f"thread {index} got no behaviours"
    # The emulators built concurrently also serve.
    with results[0] as emu:
        assert emu.stub("lifecycle.v1.Echo").Say({}).text == "from the behaviour"


# -- signals -------------------------------------------------------------------------------------


def _busy_behavior(tmp_path: Path) -> tuple[str, Path]:
    started = tmp_path / "started"
    path = tmp_path / "busy.py"
    path.write_text(
        textwrap.dedent(f"""
        import pathlib, time
        from emulator import Behavior

        class Busy(Behavior):
            service = "acme.shop.v1.Catalog"

            def GetProduct(self, request, ctx):
                pathlib.Path({str(started)!r}).touch()
                time.sleep(20)  # a thread cannot be cancelled
    """)
    )
    return str(path), started


def test_sighup_reloads_and_the_emulator_keeps_serving() -> None:
    with Running("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS)) as proc:
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: proc.logged("reloaded (SIGHUP)"))
        assert proc.proc.poll() is None
        with grpc.insecure_channel(proc.emulate.target) as channel:
            assert channel.unary_unary(GET_PRODUCT)(b"\n\x02p1", timeout=10)
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    assert code == 0, proc.stderr
    assert "reloaded (SIGHUP) in " in proc.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_during_the_grace_period_exits_at_once(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    behaviors, started = _busy_behavior(tmp_path)
    args = ("--proto", str(PROTOS), "--behaviors", behaviors, "--grace-period", "60s")
    with Running(*args) as proc:
        channel = grpc.insecure_channel(proc.emulate.target)
        future = channel.unary_unary(GET_PRODUCT).future(b"", timeout=30)
        wait_until(started.exists)
        proc.proc.send_signal(sig)
        wait_until(lambda: proc.logged("stopping: draining"))
        proc.proc.send_signal(sig)
        status = proc.wait(timeout=8)  # neither the 60 s grace period nor the 20 s sleep
        future.cancel()
        channel.close()
    assert status == code, proc.stderr
    assert f"second {sig.name}: exiting now" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_clean_sigterm_gives_no_warning_about_sync_behaviours(tmp_path: Path) -> None:
    # Sixteen sync calls busy at once leave sixteen idle worker threads when SIGTERM comes;
    # they used to count as behaviours still running.
    (tmp_path / "wide.py").write_text(
        textwrap.dedent("""
        import threading
        from emulator import Behavior

        everyone = threading.Barrier(16)

        class Catalog(Behavior):
            service = "acme.shop.v1.Catalog"

            def GetProduct(self, request, ctx):
                everyone.wait(timeout=10)
                return {"name": "done"}
    """)
    )
    args = ("--proto", str(PROTOS), "--behaviors", str(tmp_path / "wide.py"), "--workers", "16")
    for _ in range(2):
        with EmulateProcess(*args) as proc:
            with grpc.insecure_channel(proc.target) as channel:
                method = channel.unary_unary(GET_PRODUCT)
                calls = [method.future(b"", timeout=20) for _ in range(16)]
                assert all(call.result() for call in calls)
            code, _, err = proc.stop()
        assert code == 0, err
        assert "still running" not in err


# -- behaviour files that cannot load ------------------------------------------------------------


def _behavior(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "b.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            from emulator import Behavior

            class Shop(Behavior):
                def GetProduct(self, request, ctx):
                    return None
            """,
            ["b.py:4", "class Shop", "has no `service`", "service = 'package.Service'"],
        ),
        (
            """
            from emulator import Behavior

            class Shop(Behavior):
                service = "acme.shop.v1.Catalog"

                def GetProduct(self, request):
                    return None
            """,
            [
                "b.py:7",
                "Shop.GetProduct",
                "takes (self, request)",
                "GetProduct(self, request, ctx)",
            ],
        ),
        (
            """
            from emulator import Behavior

            class Orders(Behavior):
                service = "acme.shop.v1.Orders"

                async def Chat(self, requests, ctx, extra):
                    yield {}
            """,
            [
                "b.py:7",
                "Orders.Chat",
                "takes (self, requests, ctx, extra)",
                "Chat(self, requests, ctx)",
            ],
        ),
        (
            """
            import sys
            from emulator import Behavior
            sys.exit(0)
            """,
            ["b.py:4", "does not import", "SystemExit", "sys.exit(0)"],
        ),
        (
            """
            raise SystemExit(3)
            """,
            ["b.py:2", "does not import", "sys.exit(3)"],
        ),
        (
            """
            raise KeyboardInterrupt
            """,
            ["b.py:2", "does not import", "KeyboardInterrupt"],
        ),
    ],
    ids=["no-service", "too-few-parameters", "too-many-parameters", "exit-0", "exit-3", "ctrl-c"],
)
def test_behaviours_that_cannot_work_are_refused_at_load(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    path = _behavior(tmp_path, body)
    result = emulate("check", "--proto", str(PROTOS), "--behaviors", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("emulate: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    with pytest.raises(BehaviorError) as caught:
        Emulator(protos=PROTOS, behaviors=path)
    for text in expected:
        assert text in str(caught.value)


def test_a_private_base_class_without_service_is_allowed(tmp_path: Path) -> None:
    path = _behavior(
        tmp_path,
        """
        from emulator import Behavior

        class _Base(Behavior):
            def GetProduct(self, request, ctx):
                return {"name": "shared"}

        class Shop(_Base):
            service = "acme.shop.v1.Catalog"
        """,
    )
    result = emulate("check", "--proto", str(PROTOS), "--behaviors", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 with behaviours" in result.stdout


def test_classes_given_directly_are_checked_the_same_way() -> None:
    class NoService(Behavior):
        def GetProduct(self, request, ctx):  # type: ignore[no-untyped-def]
            return None

    class WrongShape(Behavior):
        service = "acme.shop.v1.Catalog"

        def GetProduct(self, request, ctx, extra):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(BehaviorError, match="NoService has no `service`"):
        Emulator(protos=PROTOS, behaviors=NoService)
    with pytest.raises(BehaviorError, match=r"GetProduct\(self, request, ctx\)"):
        Emulator(protos=PROTOS, behaviors=WrongShape())


def test_flexible_signatures_are_accepted() -> None:
    class Flexible(Behavior):
        service = "acme.shop.v1.Catalog"

        def GetProduct(self, *args):  # type: ignore[no-untyped-def]
            return {"name": "star-args"}

        def UpdateProduct(self, request, ctx, extra=None):  # type: ignore[no-untyped-def]
            return None

    with Emulator(protos=PROTOS, behaviors=Flexible) as emu:
        assert emu.stub("acme.shop.v1.Catalog").GetProduct({}).name == "star-args"


def _slow_import(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A behaviour file that marks it is being imported, then waits for a go-ahead file."""
    importing, go = tmp_path / "importing", tmp_path / "go"
    behaviors = tmp_path / "behaviors"
    behaviors.mkdir()
    (behaviors / "slow.py").write_text(
        textwrap.dedent(f"""
        import pathlib, time
        from emulator import Behavior
        pathlib.Path({str(importing)!r}).touch()
        deadline = time.monotonic() + 20
        while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.01)

        class Slow(Behavior):
            service = "acme.shop.v1.Orders"
        """)
    )
    return behaviors, importing, go


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_while_starting_ends_the_start_up(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    import subprocess
    import sys

    behaviors, importing, _ = _slow_import(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--proto", str(PROTOS), "--behaviors", str(behaviors)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(importing.exists)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert f"emulate: stopped by {sig.name} while starting" in err
    assert "Traceback" not in err and "does not import" not in err


def test_sighup_while_starting_is_ignored_and_the_emulator_serves(tmp_path: Path) -> None:
    import subprocess
    import sys

    behaviors, importing, go = _slow_import(tmp_path)
    command = [sys.executable, "-m", "emulator", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--proto", str(PROTOS), "--behaviors", str(behaviors)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(importing.exists)
        proc.send_signal(signal.SIGHUP)
        go.touch()
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("emulator listening on "), banner
        with grpc.insecure_channel(banner.split()[-1]) as channel:
            assert channel.unary_unary("/acme.shop.v1.Orders/Ping")(b"", timeout=5) == b""
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGHUP while starting: ignored (once serving, SIGHUP reloads)" in err
