"""Loading declarative stubs: `emulate check --stubs`, `emulate --stubs`, emulator.yaml `stubs:`
and EMULATOR_STUBS. Every problem is refused at load with exit 2 and one message naming the file,
the line of the offending key, the key and what to do; never a traceback.

Checks run `emulator.cli.main(["check", ...])` (what the `emulate` script runs) in this process,
on a thread of its own so that it installs no signal handlers: a process costs a second or more.
Serving, emulator.yaml and EMULATOR_STUBS run `emulate` as a real process, so the exit code and
streams of a refusal are the real ones too.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from emulator.contracts import load_contracts
from tests.conftest import PROTOS, TEST_PROTOS, EmulateProcess, emulate

GET = "acme.shop.v1.Catalog/GetProduct"
LIST = "acme.shop.v1.Catalog/ListProducts"
PAYMENTS = TEST_PROTOS / "payments"

# name → (stub file text, line of the offending key, key, what the message must also say).
# The first line of each file is a comment, so that no offending key sits on line 1 by chance.
REFUSED: dict[str, tuple[str, int, str, list[str]]] = {
    "unknown_method": (
        """
        - name: typo
          method: acme.shop.v1.Catalog/GetProdukt
        """,
        3,
        "stubs[0] (typo).method",
        ['matches no method; did you mean "acme.shop.v1.Catalog/GetProduct"?'],
    ),
    "unknown_match_field": (
        f"""
        - method: {GET}
          match:
            request:
              produkt_id: p1
        """,
        5,
        "stubs[0].match.request.produkt_id",
        ["has no field 'produkt_id'; did you mean 'product_id'?"],
    ),
    "unknown_message_field": (
        f"""
        - method: {GET}
          respond:
            message:
              name: Widget
              nmae: Widget
        """,
        6,
        "stubs[0].respond.message.nmae",
        ["acme.shop.v1.Product has no field 'nmae'; did you mean 'name'?"],
    ),
    "string_given_number": (
        f"""
        - method: {GET}
          respond:
            message:
              product_id: p1
              name: 5
        """,
        6,
        "stubs[0].respond.message.name",
        ['name is a string: 5 is int; write it in quotes ("5")'],
    ),
    "int_given_text": (
        f"""
        - method: {GET}
          respond:
            message:
              stock_count: abc
        """,
        5,
        "stubs[0].respond.message.stock_count",
        ["stock_count is an integer: give a whole number, not 'abc'"],
    ),
    "bool_given_text": (
        """
        - method: payments.v1.Reservations/Reserve
          respond:
            message:
              refundable: "yes"
        """,
        5,
        "stubs[0].respond.message.refundable",
        ["refundable is a bool: give true or false, not 'yes'"],
    ),
    "match_string_given_bool": (
        f"""
        - method: {GET}
          match:
            request:
              product_id: true
        """,
        5,
        "stubs[0].match.request.product_id",
        ['product_id is a string: true is bool; write it in quotes ("true")'],
    ),
    "unknown_enum_name": (
        f"""
        - method: {GET}
          respond:
            message:
              availability: INSTOCK
        """,
        5,
        "stubs[0].respond.message.availability",
        [
            "'INSTOCK' is not a value of acme.shop.v1.Availability (did you mean 'IN_STOCK'?): "
            "use one of AVAILABILITY_UNSPECIFIED, IN_STOCK, BACKORDER, DISCONTINUED"
        ],
    ),
    "unknown_enum_name_in_match": (
        """
        - method: acme.shop.v1.Catalog/UpdateProduct
          match:
            request:
              product.availability: GONE
        """,
        5,
        "stubs[0].match.request.product.availability",
        ["use one of AVAILABILITY_UNSPECIFIED, IN_STOCK, BACKORDER, DISCONTINUED"],
    ),
    "bad_regex": (
        f"""
        - method: {GET}
          match:
            request:
              product_id: {{regex: "(["}}
        """,
        5,
        "stubs[0].match.request.product_id.regex",
        ["'([' is not a valid regular expression"],
    ),
    "unknown_status": (
        f"""
        - method: {GET}
          respond:
            status:
              code: UNAVAILBLE
        """,
        5,
        "stubs[0].respond.status.code",
        ["'UNAVAILBLE' is not a gRPC status code; did you mean UNAVAILABLE?"],
    ),
    "stream_on_unary": (
        f"""
        - method: {GET}
          respond:
            stream:
              - message: {{name: a}}
        """,
        4,
        "stubs[0].respond.stream",
        [f"{GET} answers one message: use `message:`"],
    ),
    "on_message_not_bidi": (
        f"""
        - method: {LIST}
          on_message:
            - reply: [{{message: {{name: a}}}}]
        """,
        3,
        "stubs[0].on_message",
        [f"is for bidi streaming methods; {LIST} is server streaming"],
    ),
    "message_any_on_unary": (
        f"""
        - method: {GET}
          match:
            message: any
        """,
        4,
        "stubs[0].match.message",
        ["takes one request: leave `match.message` out"],
    ),
    "respond_and_sequence": (
        f"""
        - method: {GET}
          respond: {{message: {{name: a}}}}
          sequence:
            - {{message: {{name: b}}}}
        """,
        4,
        "stubs[0].sequence",
        ["give `respond` or `sequence`, not both"],
    ),
    "times_zero": (
        f"""
        - method: {GET}
          times: 0
        """,
        3,
        "stubs[0].times",
        ["must be at least 1, got 0; leave it out to answer every matching call"],
    ),
    "when_state_without_scenario": (
        f"""
        - method: {GET}
          when_state: paid
        """,
        3,
        "stubs[0].when_state",
        ["needs a `scenario:` name"],
    ),
    "unknown_key": (
        f"""
        - method: {GET}
          respnd: {{message: {{name: a}}}}
        """,
        3,
        "'stubs[0].respnd'",
        ["unknown key", "(did you mean 'respond'?)"],
    ),
    "template_syntax": (
        f"""
        - method: {GET}
          respond:
            message:
              name: "{{{{ request.product_id "
        """,
        5,
        "stubs[0].respond.message.name",
        ["template '{{ request.product_id '"],
    ),
    "bad_delay": (
        f"""
        - method: {GET}
          respond:
            delay: fast
        """,
        4,
        "stubs[0].respond.delay",
        ["expected a duration such as 150ms, 5s or 1m, got 'fast'"],
    ),
    "bad_header_name": (
        f"""
        - method: {GET}
          respond:
            headers:
              x-fine: "1"
              "Bad Header": x
        """,
        6,
        "stubs[0].respond.headers.Bad Header",
        ["'Bad Header' is not a valid gRPC metadata key; use letters, digits"],
    ),
    "second_stub": (  # the index and line of a stub further down the file
        f"""
        - method: {GET}
        - name: second
          method: {GET}
          priority: high
        """,
        5,
        "stubs[1].priority",
        ["expected an integer, got 'high'"],
    ),
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text("# a stub file\n" + textwrap.dedent(text).lstrip("\n"))
    return path


def _check(*stubs: Path | str) -> subprocess.CompletedProcess[str]:
    args = ["--proto", str(PROTOS)]
    for path in stubs:
        args += ["--stubs", str(path)]
    return _check_in_process(*args)


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refusal: exit 2, nothing on stdout, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("emulate: error: "), lines[0]
    return lines[0].removeprefix("emulate: error: ")


def _check_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`emulate check ARGS` through `emulator.cli.main`, its output captured."""
    from emulator import cli

    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        ThreadPoolExecutor(max_workers=1) as thread,
    ):
        mp.setattr(cli, "_setup_logging", lambda config: None)  # pytest keeps its logging
        code = thread.submit(cli.main, ["check", *args]).result()
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Every REFUSED file through `emulate check`: name → (file, message)."""
    folder = tmp_path_factory.mktemp("refused")
    found = {}
    for name, (text, *_) in REFUSED.items():
        path = _write(folder, f"{name}.yaml", text)
        protos = ["--proto", str(PROTOS), "--proto", str(PAYMENTS)]
        found[name] = path, _refused(_check_in_process(*protos, "--stubs", str(path)))
    return found


@pytest.mark.parametrize("name", list(REFUSED))
def test_each_problem_is_refused_with_file_line_key_and_advice(
    refusals: dict[str, tuple[Path, str]], name: str
) -> None:
    _, line, key, says = REFUSED[name]
    path, message = refusals[name]
    assert message.startswith(f"{path}:{line}: "), message
    assert key in message, message
    for text in says:
        assert text in message, message


BAD_JSON_LINE = '  "respond": {"message": {"nmae": "x"}}}'


def test_file_shapes_and_paths_that_cannot_be_stubs(tmp_path: Path) -> None:
    not_a_list = _write(tmp_path, "scalar.yaml", "just some text\n")
    broken_yaml = _write(tmp_path, "broken.yaml", f"- method: {GET}\n  respond: {{message: [\n")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(
        json.dumps([{"name": "fine", "method": GET}], indent=1)[:-1]
        + f',\n {{"method": "{GET}",\n  "respond": {{"message": {{"nmae": "x"}}}}}}\n]\n'
    )
    missing = tmp_path / "nope.yaml"
    wrong_suffix = tmp_path / "stubs.txt"
    wrong_suffix.write_text("[]")
    cases = [not_a_list, broken_yaml, bad_json, missing, wrong_suffix]
    scalar, yaml_error, json_error, absent, suffix = (_refused(_check(p)) for p in cases)
    assert scalar.startswith(f"{not_a_list}: a stub file holds a list of stubs"), scalar
    assert scalar.endswith("got str")
    assert yaml_error.startswith(f"{broken_yaml}:4: not valid YAML"), yaml_error
    bad_line = (
        bad_json.read_text().splitlines().index('  "respond": {"message": {"nmae": "x"}}}') + 1
    )
    assert json_error.startswith(f"{bad_json}:{bad_line}: stubs[1].respond.message.nmae: "), (
        json_error
    )
    assert "did you mean 'name'?" in json_error
    assert absent == (
        f"--stubs: {missing} does not exist: give a stub file (.yaml, .yml, .json) or a folder "
        "of them"
    )
    assert suffix.startswith(f"--stubs: {wrong_suffix} is not a stub file: stub files end in")


def test_a_folder_loads_every_stub_file_in_path_order_and_empty_files_are_fine(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "stubs"
    (folder / "b").mkdir(parents=True)
    _write(folder, "b/two.yml", f"- {{name: two, method: {GET}}}\n")
    _write(
        folder, "a.yaml", f"- {{name: one-a, method: {GET}}}\n- {{name: one-b, method: {LIST}}}\n"
    )
    (folder / "c.json").write_text(json.dumps([{"name": "three", "method": GET}]))
    (folder / "empty.yaml").write_text("")
    (folder / "notes.txt").write_text("not a stub file: skipped in a folder")
    result = _check(folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ok: 2 services, 9 methods, 0 with behaviours, 4 stubs on 2 methods"
    )
    empty = _check(folder / "empty.yaml")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip().endswith(", 0 stubs")

    # Path order: a.yaml, b/two.yml, c.json (what `emu.stubs.stats()` lists, in load order).
    from emulator.testing import Emulator

    emu = Emulator(PROTOS, stubs=[str(folder)])
    assert [s["name"] for s in emu.stubs.stats()] == ["one-a", "one-b", "two", "three"]


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    first = _write(tmp_path, "first.yaml", f"- name: same\n  method: {GET}\n")
    second = _write(tmp_path, "second.yaml", f"- method: {LIST}\n- name: same\n  method: {GET}\n")
    message = _refused(_check(first, second))
    assert message == (
        f"{second}:3: a stub named 'same' is already served (from {first}:2); give each stub a "
        "name of its own"
    )


def test_serving_with_a_bad_stub_file_refuses_before_listening(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.yaml", f"- method: {GET}\n  times: 0\n")
    result = emulate("--port", "0", "--proto", str(PROTOS), "--stubs", str(bad))
    message = _refused(result)  # stdout empty: never printed `emulator listening on`
    assert message.startswith(f"{bad}:3: stubs[0].times: must be at least 1")


# -- emulator.yaml and the environment ---------------------------------------------------------


def _config(tmp_path: Path, inline: str) -> Path:
    (tmp_path / "stubs" / "more").mkdir(parents=True)
    _write(tmp_path, "stubs/more/list.yaml", f"- {{name: from-folder, method: {LIST}}}\n")
    _write(
        tmp_path,
        "one.yaml",
        f"""
        - name: from-file
          method: {GET}
          match: {{request: {{product_id: p1}}}}
          respond: {{message: {{name: From a file}}}}
        """,
    )
    config = tmp_path / "conf" / "emulator.yaml"
    config.parent.mkdir()
    config.write_text(
        f"protos: [{PROTOS}]\n"
        "stubs:\n"
        "  - ../one.yaml\n"
        "  - ../stubs\n" + textwrap.indent(textwrap.dedent(inline).lstrip("\n"), "  ")
    )
    return config


def test_emulator_yaml_stubs_relative_paths_folders_and_inline(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
        - name: inline
          method: {GET}
          match: {{request: {{product_id: p2}}}}
          respond: {{message: {{name: Written inline}}}}
        """,
    )
    result = emulate("check", "--config", str(config), cwd=tmp_path / "stubs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(", 3 stubs on 2 methods")

    product = load_contracts([str(PROTOS)], []).methods["/" + GET].output_class
    with EmulateProcess("--config", str(config)) as proc:
        assert "  acme.shop.v1.Catalog (4 methods; stubs: GetProduct (2), ListProducts (1))" in (
            proc.header
        ), proc.header
        assert proc.header.startswith(f"emulator listening on {proc.target}\n")
        with grpc.insecure_channel(proc.target) as channel:
            call = channel.unary_unary("/" + GET)
            assert product.FromString(call(b"\n\x02p1")).name == "From a file"
            assert product.FromString(call(b"\n\x02p2")).name == "Written inline"
        code, _, err = proc.stop()
    assert code == 0, err


def test_an_error_in_an_inline_stub_names_emulator_yaml_and_its_line(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
        - name: inline
          method: {GET}
          respond:
            message: {{availability: SOLD_OUT}}
        """,
    )
    # protos (1), stubs: (2), ../one.yaml (3), ../stubs (4), then the inline stub from line 5.
    message = _refused(emulate("check", "--config", str(config)))
    assert message.startswith(f"{config}:8: stubs[2] (inline).respond.message.availability: "), (
        message
    )
    assert "'SOLD_OUT' is not a value of acme.shop.v1.Availability" in message

    missing = tmp_path / "missing.yaml"
    missing.write_text(f"protos: [{PROTOS}]\nstubs:\n  - nope.yaml\n")
    message = _refused(emulate("check", "--config", str(missing)))
    assert message.startswith(f"{missing}:3: stubs[0]: {tmp_path / 'nope.yaml'} does not exist")


def test_emulator_stubs_variable(tmp_path: Path) -> None:
    one = _write(tmp_path, "one.yaml", f"- {{name: one, method: {GET}}}\n")
    two = _write(tmp_path, "two.yaml", f"- {{name: two, method: {LIST}}}\n")
    env_ok = {"EMULATOR_STUBS": f"{one},{two}"}
    env_bad = {"EMULATOR_STUBS": str(tmp_path / "nope.yaml")}

    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        import os
        import sys

        return subprocess.run(
            [sys.executable, "-m", "emulator", "check", "--proto", str(PROTOS)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
            check=False,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        ok, bad = pool.map(check, [env_ok, env_bad])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(", 2 stubs on 2 methods")
    # Named as the variable it came from, not as the command line.
    assert _refused(bad) == (
        f"environment variable EMULATOR_STUBS: {tmp_path / 'nope.yaml'} does not exist: give a "
        "stub file (.yaml, .yml, .json) or a folder of them"
    )
