"""`emulate`'s flags, derived from the config schema: one per key, the old names kept, values
checked by the schema with messages that name the flag; `--help` and the banner."""

from __future__ import annotations

import argparse
import dataclasses
import re
import textwrap
from pathlib import Path

import grpc
import pytest

from emulator._flags import Flag, add_setting_flags, flag_name, given
from emulator._schema import Duration, settings
from emulator.cli import _FLAGS, _TOOLS, _config, _parser
from emulator.config import Config
from emulator.environment import variable
from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess, emulate, wait_until

GET_PRODUCT = "/acme.shop.v1.Catalog/GetProduct"
CREATE_ORDER = "/acme.shop.v1.Orders/CreateOrder"
WATCH_ORDER = "/acme.shop.v1.Orders/WatchOrder"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def _refused_in_one_line(result: object, *expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for text in expected:
        assert text in stderr, stderr


def test_help_lists_every_subcommand() -> None:
    result = emulate("--help")
    assert result.returncode == 0, result.stderr
    for name in {"check", "certs", "token", "health", *_TOOLS}:
        assert f"emulate {name} " in result.stdout, result.stdout
        assert emulate(name, "--help").returncode == 0


def test_every_setting_has_a_flag_and_the_old_names_are_kept() -> None:
    helps = [emulate("--help").stdout, emulate("check", "--help").stdout]
    for setting in settings(Config):
        for shown in helps:
            assert re.search(rf"\s{flag_name(setting.key)}[ ,]", shown), setting.key
    shown = helps[0]
    for old in [
        *("--proto", "-I", "--import-path", "--behaviors", "--config", "--seed", "--log-format"),
        *("--host", "--port", "--workers", "--stream-messages", "--grace-period"),
        *("--max-metadata-size", "--header-faults", "--tls-cert", "--tls-key", "--tls-client-ca"),
        *("--auth-token", "--jwt-key", "--jwt-secret-env", "--jwt-issuer", "--jwt-audience"),
        "--authz-policy",
    ]:
        assert re.search(rf"\s{old}[ ,]", shown), old
    # A short name for a key the config no longer has would be lost without a word.
    assert set(_FLAGS) <= {s.key for s in settings(Config)}


def test_old_flags_set_the_same_keys_as_before(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"name": "p", "allow_rules": [{"name": "all"}]}')
    args = _parser().parse_args(
        [
            *("--proto", str(PROTOS), "--proto", "more.proto", "-I", "a", "--import-path", "b"),
            *("--behaviors", str(BEHAVIORS), "--seed", "7", "--log-format", "json"),
            *("--host", "::1", "--port", "0", "--workers", "3", "--stream-messages", "5"),
            *("--grace-period", "250ms", "--max-metadata-size", "64KiB", "--header-faults"),
            *("--auth-token", "t1=alice", "--auth-token", "t2", "--jwt-secret-env", "JWT_SECRET"),
            *("--jwt-issuer", "https://issuer.test", "--jwt-audience", "shop"),
            *("--authz-policy", str(policy)),
        ]
    )
    config = _config(args)
    assert config.protos == (str(PROTOS), "more.proto")
    assert config.import_paths == ("a", "b")
    assert config.behaviors == (str(BEHAVIORS),)
    assert (config.seed, config.log_format, config.header_faults) == (7, "json", True)
    server = config.server
    assert (server.host, server.port, server.workers) == ("::1", 0, 3)
    assert (server.grace_period, server.max_metadata_size) == (0.25, 64 * 1024)
    assert config.defaults.stream_messages == 5
    assert {t: v.principal for t, v in config.auth.tokens.items()} == {
        "t1": "alice",
        "t2": "token-user",
    }
    assert config.auth.jwt is not None
    assert [k.secret_env for k in config.auth.jwt.keys] == ["JWT_SECRET"]
    assert (config.auth.jwt.issuer, config.auth.jwt.audience) == ("https://issuer.test", ("shop",))
    assert config.authorization == {"name": "p", "allow_rules": [{"name": "all"}]}
    # The derived names set the same keys.
    derived = _config(
        _parser().parse_args(
            [
                *("--protos", str(PROTOS), "--import-paths", "a", "--server-host", "::1"),
                *("--server-port", "0", "--server-workers", "3", "--defaults-stream-messages"),
                *("5", "--server-grace-period", "250ms", "--server-max-metadata-size", "64KiB"),
            ]
        )
    )
    assert derived.server == server and derived.defaults == config.defaults


def test_tls_flags_still_serve_tls(tmp_path: Path) -> None:
    assert emulate("certs", "--out", str(tmp_path), "--client", "ci").returncode == 0
    with EmulateProcess(
        *("--proto", str(PROTOS), "--tls-cert", str(tmp_path / "server.pem")),
        *("--tls-key", str(tmp_path / "server-key.pem")),
    ) as proc:
        creds = grpc.ssl_channel_credentials((tmp_path / "ca.pem").read_bytes())
        target = f"localhost:{proc.port}"
        with grpc.secure_channel(target, creds) as channel:
            assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=10) == b"\x08\x01"
        code, _, err = proc.stop()
    assert code == 0, err


def test_derived_flags_set_their_keys_on_the_running_server() -> None:
    with EmulateProcess(
        *("--proto", str(PROTOS), "--auth-token", "s3cret"),
        # A list key: one item per flag, and the list replaces the default one.
        *("--auth-exempt", "acme.shop.v1.Catalog/*", "--auth-exempt", "grpc.health.v1.Health/*"),
        *("--defaults-stream-messages", "2", "--log-stream", "stdout"),
    ) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert channel.unary_unary(GET_PRODUCT)(b"", timeout=10) is not None
            assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=10) == b"\x08\x01"
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(CREATE_ORDER)(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = [("authorization", "Bearer s3cret")]
            replies = list(channel.unary_stream(WATCH_ORDER)(b"", timeout=10, metadata=token))
            assert len(replies) == 2
        code, out, err = proc.stop()
    assert code == 0, err
    assert "stopping: draining in-flight calls" in out  # the log went to stdout
    assert "stopping" not in err


def test_max_concurrent_streams_flag_holds_a_second_call_until_the_first_ends(
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    behaviors = tmp_path / "held.py"
    behaviors.write_text(
        textwrap.dedent(f"""
        import asyncio, pathlib
        from emulator import Behavior

        class Held(Behavior):
            service = "acme.shop.v1.Catalog"

            async def GetProduct(self, request, ctx):
                pathlib.Path({str(started)!r}).touch()
                while not pathlib.Path({str(release)!r}).exists():
                    await asyncio.sleep(0.01)
                return {{"name": "held"}}
    """)
    )
    with EmulateProcess(
        *("--proto", str(PROTOS), "--behaviors", str(behaviors)),
        *("--server-max-concurrent-streams", "1"),
    ) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            held = channel.unary_unary(GET_PRODUCT).future(b"", timeout=30)
            wait_until(started.exists)
            # One stream per connection: the second call waits for the first, past its deadline.
            with pytest.raises(grpc.RpcError) as waited:
                channel.unary_unary(CREATE_ORDER)(b"", timeout=1)
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            release.touch()
            assert b"held" in held.result(timeout=10)
            assert channel.unary_unary(CREATE_ORDER)(b"", timeout=10) is not None
        proc.stop()


BAD_VALUES = [
    (["--server-port", "x"], "argument --server-port: expected a port number 0 to 65535"),
    (["--journal-limit", "x"], "argument --journal-limit: expected an integer, got 'x'"),
    (["--journal-limit", "0"], "argument --journal-limit: journal.limit: must be at least 1"),
    (["--workers", "0"], "argument --workers: server.workers: must be at least 1, got 0"),
    (["--stream-messages", "many"], "argument --stream-messages: expected an integer"),
    (["--server-max-connection-age", "soon"], "argument --server-max-connection-age: expected a"),
    (["--journal-max-bytes", "lots"], "argument --journal-max-bytes: expected a size"),
    (["--log-stream", "syslog"], "argument --log-stream: expected one of 'stderr', 'stdout'"),
    (["--server-host", "a b"], "argument --server-host: server.host: 'a b' is not a host"),
    (
        ["--tls-client-ca", "ca.pem"],
        "argument --tls-client-ca: tls.client_ca: client certificates need TLS",
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), BAD_VALUES, ids=["=".join(args) for args, _ in BAD_VALUES]
)
def test_bad_flag_values_name_the_flag_in_one_line(args: list[str], expected: str) -> None:
    for command in (["check"], []):
        result = emulate(*command, "--proto", str(PROTOS), *args)
        _refused_in_one_line(result, expected)
        assert result.stdout == ""


def test_flags_win_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "emulator.yaml"
    config_file.write_text(f"protos: [{PROTOS}]\njournal: {{limit: 10}}\nheader_faults: true\n")

    def limit(*flags: str) -> tuple[int, bool]:
        config = _config(_parser().parse_args(["--config", str(config_file), *flags]))
        return config.journal.limit, config.header_faults

    assert limit() == (10, True)
    monkeypatch.setenv("EMULATOR_JOURNAL_LIMIT", "20")
    assert limit() == (20, True)
    assert limit("--journal-limit", "30", "--no-header-faults") == (30, False)
    # Out of range in the environment, but the flag sets the key anyway: the flag wins.
    monkeypatch.setenv("EMULATOR_JOURNAL_LIMIT", "0")
    assert limit("--journal-limit", "30") == (30, True)
    result = emulate("check", "--config", str(config_file))
    _refused_in_one_line(result, "environment variable EMULATOR_JOURNAL_LIMIT (journal.limit)")


def test_environment_variables_that_flags_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert emulate("certs", "--out", str(tmp_path), "--client", "ci").returncode == 0
    cert, key = str(tmp_path / "server.pem"), str(tmp_path / "server-key.pem")
    monkeypatch.setenv(variable("tls.client_ca"), str(tmp_path / "ca.pem"))
    result = emulate("check", "--proto", str(PROTOS), "--tls-cert", cert, "--tls-key", key)
    assert result.returncode == 0, result.stderr
    # The whole mTLS set-up from the environment alone.
    monkeypatch.setenv(variable("tls.cert"), cert)
    monkeypatch.setenv(variable("tls.key"), key)
    result = emulate("check", "--proto", str(PROTOS))
    assert result.returncode == 0, result.stderr
    monkeypatch.delenv(variable("tls.cert"))
    result = emulate("check", "--proto", str(PROTOS), "--tls-key", key)
    _refused_in_one_line(result, "tls needs both cert and key")


ONE_METHOD = """syntax = "proto3";
package solo.v1;
message M {}
service Solo { rpc Get(M) returns (M); }
"""


def test_the_banner_and_check_count_one_method_in_the_singular(tmp_path: Path) -> None:
    (tmp_path / "solo.proto").write_text(ONE_METHOD)
    result = emulate("check", "--proto", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "ok: 1 service, 1 method, 0 with behaviours" in result.stdout
    with EmulateProcess("--proto", str(tmp_path)) as proc:
        code, out, err = proc.stop()
    assert code == 0, err
    assert "  solo.v1.Solo (1 method)" in out
    assert "1 methods" not in out


def test_a_parse_keeps_nothing_for_the_next() -> None:
    parser = _parser()
    assert _config(parser.parse_args(["--proto", str(PROTOS)])).protos == (str(PROTOS),)
    assert _config(parser.parse_args(["--proto", "x.proto"])).protos == ("x.proto",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Section:
    timeout: Duration = 2.0
    retries: int = dataclasses.field(default=3, metadata={"help": "tries per call, 50% more"})
    verbose: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Settings:
    names: tuple[str, ...] = ()
    section: _Section = dataclasses.field(default_factory=_Section)


def test_a_new_key_gets_its_flag_and_help_from_the_schema() -> None:
    parser = argparse.ArgumentParser(prog="x")
    add_setting_flags(parser, _Settings, {"section.timeout": Flag(("--timeout",))}, {})
    text = " ".join(parser.format_help().split())
    assert "--section-timeout DURATION, --timeout DURATION" in text
    assert "section.timeout: a duration such as 150ms, 5s or 1m (default 2s)" in text
    assert "tries per call, 50% more" in text  # the field's metadata
    assert "--section-verbose, --no-section-verbose section.verbose" in text
    args = parser.parse_args(["--names", "a", "--names", "b", "--timeout", "1m"])
    assert given(args) == {"names": ("--names", ["a", "b"]), "section.timeout": ("--timeout", "1m")}
    assert given(parser.parse_args(["--no-section-verbose"])) == {
        "section.verbose": ("--no-section-verbose", False)
    }


def test_a_duration_flag_takes_a_plain_number_of_seconds_as_the_file_does() -> None:
    result = emulate("check", "--proto", str(PROTOS), "--grace-period", "2.5")
    assert result.returncode == 0, result.stderr
    config = Config().with_overrides({"server.grace_period": "7"})
    assert config.server.grace_period == 7.0
