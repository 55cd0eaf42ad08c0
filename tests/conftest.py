"""Shared test helpers: the example contracts, and the `emulate` command as a real process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BEHAVIORS = ROOT / "behaviors"
TEST_PROTOS = Path(__file__).resolve().parent / "protos"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled-contract cache per test session, so no run depends on an earlier one."""
    cache = tmp_path_factory.mktemp("contract-cache")
    old = os.environ.get("GRPC_EMULATOR_CACHE_DIR")
    os.environ["GRPC_EMULATOR_CACHE_DIR"] = str(cache)
    yield
    if old is None:
        os.environ.pop("GRPC_EMULATOR_CACHE_DIR", None)
    else:
        os.environ["GRPC_EMULATOR_CACHE_DIR"] = old


def emulate(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `emulate ARGS` to completion (for check and for errors)."""
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class EmulateProcess:
    """`emulate ... --port 0` as a real process; `target` is read from its first stdout line."""

    def __init__(
        self,
        *args: str,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        subcommand: str = "",
    ) -> None:
        first_args = [subcommand] if subcommand else []  # `emulate record --port 0 ...`
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", *first_args, "--port", "0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("emulator listening on "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"emulate did not start: {first!r}\n{err}")
        self.target = first.removeprefix("emulator listening on ").strip()
        self.port = int(self.target.rsplit(":", 1)[1])
        # The services follow; read them here, since communicate() skips Python's read buffer.
        self.header = first
        while not self.header.splitlines()[-1].startswith("  grpc.health"):
            self.header += self.proc.stdout.readline()

    def stop(self, timeout: float = 15, *, signal: bool = True) -> tuple[int, str, str]:
        """SIGTERM (unless the test already signalled it), then collect the exit status."""
        if signal and self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, self.header + out, err

    def __enter__(self) -> EmulateProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


class Running:
    """`emulate` as a process whose stderr is read as it comes, to act on its log lines."""

    def __init__(self, *args: str) -> None:
        self.emulate = EmulateProcess(*args)
        self.proc, self.target = self.emulate.proc, self.emulate.target
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def logged(self, text: str) -> bool:
        return text in self.stderr

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def reset_around(emu):  # type: ignore[no-untyped-def]
    """A module's shared emulator for one test, reset before and after it (yield from this)."""
    emu.reset()
    yield emu
    emu.reset()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextlib.contextmanager
def trace_receiver(servicer: object) -> Iterator[int]:
    """`servicer` (an opentelemetry-proto TraceServiceServicer) served by a real grpc server on
    a free loopback port, for the emulator's spans to be exported to: the port."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)
