"""Bad input gets one message naming what and where, exit 2 and no traceback; a running server
answers bad bytes with INVALID_ARGUMENT and keeps serving."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from emulator import Emulator
from tests.conftest import PROTOS, ROOT, EmulateProcess, emulate

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"


def _refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "emulate: error: " in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def _run(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "emulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


# -- environment variables and flags ---------------------------------------------------------


def test_jwt_variables_without_a_jwt_section_name_the_variable_and_the_fix() -> None:
    result = _run("check", "--proto", str(PROTOS), env={"EMULATOR_AUTH_JWT_ISSUER": "me"})
    _refused(result, "EMULATOR_AUTH_JWT_ISSUER", "auth.jwt.keys", "--jwt-key")


def test_jwt_variables_complete_keys_given_by_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from emulator.cli import _config, _parser

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = tmp_path / "jwt.pem"
    key.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    monkeypatch.setenv("EMULATOR_AUTH_JWT_ISSUER", "https://issuer.test")
    monkeypatch.setenv("EMULATOR_AUTH_JWT_AUDIENCE", "shop,admin")
    config = _config(_parser().parse_args(["--proto", str(PROTOS), "--jwt-key", str(key)]))
    assert config.auth.jwt is not None
    assert config.auth.jwt.issuer == "https://issuer.test"
    assert config.auth.jwt.audience == ("shop", "admin")
    assert [k.file for k in config.auth.jwt.keys] == [str(key)]
    # A flag still wins over the environment.
    config = _config(
        _parser().parse_args(["--proto", str(PROTOS), "--jwt-key", str(key), "--jwt-issuer", "f"])
    )
    assert config.auth.jwt is not None and config.auth.jwt.issuer == "f"
    assert _run("check", "--proto", str(PROTOS), "--jwt-key", str(key)).returncode == 0


BAD_PORTS = ["²", "--5", "-5", "٣", "5_0", "70000", "1e3"]


@pytest.mark.parametrize("value", BAD_PORTS)
def test_bad_port_in_the_environment(value: str) -> None:
    result = _run("check", "--proto", str(PROTOS), env={"EMULATOR_PORT": value})
    _refused(result, "environment variable EMULATOR_PORT (server.port)")


@pytest.mark.parametrize("value", BAD_PORTS)
def test_bad_port_on_the_command_line(value: str) -> None:
    # `--port=VALUE`: argparse would take `--port --5` for two options.
    result = _run("--proto", str(PROTOS), f"--port={value}")
    _refused(result, "argument --port: expected a port number 0 to 65535")


def test_bad_port_in_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text("server:\n  port: '²'\n")
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(config)), ":2: server.port")


# -- contracts that cannot be read -----------------------------------------------------------


def _unprivileged() -> tuple[str, ...]:
    """A prefix that runs the command without the power to read what its mode forbids. Root
    reads any file whatever its mode, so as root the command runs without the two capabilities
    that allow it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a real EACCES, not a mock."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


SERVICE = """syntax = "proto3";
package {package};
message M {{}}
service {name} {{ rpc Get(M) returns (M); }}
"""


@pytest.fixture
def contracts(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "protos"
    (root / "more").mkdir(parents=True)
    (root / "a.proto").write_text(SERVICE.format(package="t", name="A"))
    (root / "more" / "b.proto").write_text(SERVICE.format(package="t.more", name="B"))
    yield root
    for path in (root / "more", root / "more" / "b.proto"):  # let pytest clean up
        if path.exists():
            path.chmod(0o755)


def test_an_unreadable_proto_file_is_named(contracts: Path) -> None:
    prefix = _unprivileged()
    unreadable = contracts / "more" / "b.proto"
    unreadable.chmod(0)
    for target in (contracts, unreadable):
        result = _run("check", "--proto", str(target), prefix=prefix)
        _refused(result, f"{unreadable}: cannot be read: Permission denied")


def test_an_unreadable_proto_folder_is_named_not_skipped(contracts: Path) -> None:
    prefix = _unprivileged()
    assert _run("check", "--proto", str(contracts), prefix=prefix).stdout.startswith(
        "ok: 2 services"
    )
    (contracts / "more").chmod(0)
    result = _run("check", "--proto", str(contracts), prefix=prefix)
    _refused(result, f"cannot list the folder {contracts / 'more'}: Permission denied")


def test_an_unreadable_behaviours_folder_is_named_not_skipped(tmp_path: Path) -> None:
    prefix = _unprivileged()
    behaviors = tmp_path / "behaviors"
    (behaviors / "more").mkdir(parents=True)
    (behaviors / "more" / "orders.py").write_text(
        "from emulator import Behavior\n"
        "class Orders(Behavior):\n    service = 'acme.shop.v1.Orders'\n"
        "    def Ping(self, request, ctx):\n        return None\n"
    )
    result = _run("check", "--proto", str(PROTOS), "--behaviors", str(behaviors), prefix=prefix)
    assert "1 with behaviours" in result.stdout, result.stderr
    (behaviors / "more").chmod(0)
    try:
        result = _run("check", "--proto", str(PROTOS), "--behaviors", str(behaviors), prefix=prefix)
    finally:
        (behaviors / "more").chmod(0o755)
    _refused(result, f"cannot list the folder {behaviors / 'more'}: Permission denied")


def test_a_broken_link_named_proto_is_named(contracts: Path) -> None:
    (contracts / "more" / "gone.proto").symlink_to("missing.proto")
    result = _run("check", "--proto", str(contracts))
    _refused(result, "gone.proto: a broken symbolic link (to missing.proto)")


@pytest.mark.parametrize("name", ["more/pipe.proto", "pipe.proto", "pipe.binpb"])
def test_a_fifo_as_a_contract_is_refused_not_waited_on(contracts: Path, name: str) -> None:
    fifo = contracts / name
    os.mkfifo(fifo)
    target = contracts if name.startswith("more/") else fifo
    result = _run("check", "--proto", str(target))
    _refused(result, f"{fifo}: not a regular file")


# -- config files ----------------------------------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed: &a [*a]\n", ":1: seed[0]: an alias refers to the value that contains it"),
        ("server: &s {port: *s}\n", ":1: server.port: an alias refers to the value"),
        ("seed: " + "[" * 5000 + "]" * 5000 + "\n", ":1: nested deeper than 64 levels"),
        ("seed:\n" + "".join(f"{' ' * i}- \n" for i in range(0, 400, 2)), "nested deeper"),
        (LAUGHS, ":6: f: aliases expand to more than 100000 values"),
        ("? [a, b]\n: 1\n", ":1: the file: a key must be a name"),
    ],
    ids=["recursive-list", "recursive-mapping", "deep-flow", "deep-block", "laughs", "list-key"],
)
def test_hostile_yaml_is_refused_naming_the_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(text)
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(config)), expected)


def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(fifo)), "is a FIFO")
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(tmp_path)), "is a directory")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(big)), "larger than 1 MiB")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 1\n# caf\xe9\n")
    _refused(_run("check", "--proto", str(PROTOS), "--config", str(latin)), ":2: not UTF-8")


def test_inline_pem_in_a_config_file_in_a_folder_is_not_a_path(tmp_path: Path) -> None:
    from emulator.security.certs import CertificateAuthority

    server = CertificateAuthority().issue("localhost")
    folder = tmp_path / "env" / "ci"
    folder.mkdir(parents=True)

    def block(pem: bytes) -> str:
        return "".join(f"    {line}\n" for line in pem.decode().splitlines())

    (folder / "emulator.yaml").write_text(
        f"protos: [{PROTOS}]\n"
        f"tls:\n  cert: |\n{block(server.cert_pem)}  key: |\n{block(server.key_pem)}"
    )
    result = _run("check", "--config", str(folder / "emulator.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


# -- a running server ------------------------------------------------------------------------


def test_header_faults_while_off_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(protos=PROTOS) as emu, emu.channel() as channel:
        call = channel.unary_unary(GET_PRODUCT)
        with caplog.at_level(logging.WARNING, logger="emulator"):
            call(b"", metadata=[("x-emulator-fault", "code=UNAVAILABLE")])
            call(b"", metadata=[("x-envoy-fault-abort-grpc-request", "14")])
            call(b"", metadata=[("x-emulator-fault", "code=UNAVAILABLE")])
    warnings = [r.getMessage() for r in caplog.records if "header faults are off" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "x-emulator-fault" in warnings[0]
    assert "header_faults: true" in warnings[0] and "--header-faults" in warnings[0]


def test_header_faults_when_on_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with (
        Emulator(protos=PROTOS, header_faults=True) as emu,
        emu.channel() as channel,
        caplog.at_level(logging.WARNING, logger="emulator"),
        pytest.raises(grpc.RpcError),
    ):
        channel.unary_unary(GET_PRODUCT)(b"", metadata=[("x-emulator-fault", "code=14")])
    assert not [r for r in caplog.records if "header faults are off" in r.getMessage()]


@pytest.mark.parametrize("garbage", [b"\xff\xff", b"\x0a\x05ab", b"\x08"])
def test_reflection_and_health_refuse_bytes_that_do_not_parse(garbage: bytes) -> None:
    with Emulator(protos=PROTOS) as emu, emu.channel() as channel:
        for version in ("v1", "v1alpha"):
            path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
            with pytest.raises(grpc.RpcError) as error:
                list(channel.stream_stream(path)(iter([garbage]), timeout=5))
            assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert f"not a valid grpc.reflection.{version}.ServerReflectionRequest" in str(
                error.value.details()
            )
        for path, kind in ((HEALTH_CHECK, "unary_unary"), ("/grpc.health.v1.Health/Watch", "")):
            with pytest.raises(grpc.RpcError) as error:
                if kind:
                    channel.unary_unary(path)(garbage, timeout=5)
                else:
                    list(channel.unary_stream(path)(garbage, timeout=5))
            assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid grpc.health.v1.HealthCheckRequest" in str(error.value.details())
        # Still serving, and still answering well-formed requests.
        assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=5) == b"\x08\x01"
        stream = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        (reply,) = stream(iter([b"\x3a\x00"]), timeout=5)  # list_services
        assert b"acme.shop.v1.Catalog" in reply


def _json_lines(stderr: str) -> list[dict[str, object]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\n{stderr}") from None
    return parsed


JSON = ("--log-format", "json")


def test_json_logs_turn_grpc_core_lines_into_json() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
        result = subprocess.run(
            [sys.executable, "-m", "emulator", "--proto", str(PROTOS), "--port", str(port), *JSON],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=env,
        )
    assert result.returncode == 2
    entries = _json_lines(result.stderr)
    core = [e for e in entries if e["logger"] == "grpc"]
    assert core and core[0]["level"] == "error" and "add_port" in str(core[0]["source"])
    (error,) = [e for e in entries if "emulate: error: cannot listen" in str(e["message"])]
    assert error["level"] == "error"


def test_json_logs_while_serving_with_a_bad_tls_handshake(tmp_path: Path) -> None:
    from emulator.security.certs import CertificateAuthority

    issued = CertificateAuthority().issue("localhost")
    (tmp_path / "s.pem").write_bytes(issued.cert_pem)
    (tmp_path / "s-key.pem").write_bytes(issued.key_pem)
    args = ["--proto", str(PROTOS), "--log-format", "json"]
    args += ["--tls-cert", str(tmp_path / "s.pem"), "--tls-key", str(tmp_path / "s-key.pem")]
    with EmulateProcess(*args) as proc:
        # Plaintext to a TLS port: grpc core logs the failed handshake.
        with grpc.insecure_channel(proc.target) as plain, pytest.raises(grpc.RpcError):
            plain.unary_unary(HEALTH_CHECK)(b"", timeout=5)
        code, _, stderr = proc.stop()
    assert code == 0
    entries = _json_lines(stderr)
    assert any(e["logger"] == "emulator" for e in entries)


# -- addresses and limits --------------------------------------------------------------------


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["[::1]", "::1"])
def test_ipv6_hosts_with_or_without_brackets(host: str) -> None:
    with EmulateProcess("--proto", str(PROTOS), "--host", host) as proc:
        assert proc.target.startswith("[::1]:")
        with grpc.insecure_channel(proc.target) as channel:
            assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=5) == b"\x08\x01"
        proc.stop()


@pytest.mark.parametrize("host", ["127.0.0.1:50051", "[::1", "my host"])
def test_a_host_that_is_not_one_is_named(host: str) -> None:
    result = emulate("--proto", str(PROTOS), "--host", host)
    _refused(result, "server.host:", repr(host))


def test_max_metadata_size_lets_a_large_token_through() -> None:
    big = [("authorization", "Bearer " + "x" * 12_000)]
    options = [("grpc.max_metadata_size", 65536), ("grpc.absolute_max_metadata_size", 65536)]
    with (
        Emulator(protos=PROTOS, server={"max_metadata_size": 65536}) as emu,
        grpc.insecure_channel(emu.target, options=options) as channel,
    ):
        for _ in range(20):  # grpc refuses between its soft and hard limit at random
            assert channel.unary_unary(HEALTH_CHECK)(b"", metadata=big, timeout=5)


def test_max_metadata_size_from_flag_and_environment() -> None:
    big = [("authorization", "Bearer " + "x" * 12_000)]
    options = [("grpc.max_metadata_size", 65536)]
    with EmulateProcess("--proto", str(PROTOS), "--max-metadata-size", "65536") as proc:
        with grpc.insecure_channel(proc.target, options=options) as channel:
            for _ in range(20):
                assert channel.unary_unary(HEALTH_CHECK)(b"", metadata=big, timeout=5)
        proc.stop()
    env = {"EMULATOR_SERVER_MAX_METADATA_SIZE": "100"}
    _refused(_run("check", "--proto", str(PROTOS), env=env), "EMULATOR_SERVER_MAX_METADATA_SIZE")
