"""Locked contracts: `emulate lock` writes the fingerprints, `emulate check --locked` and
`locked:` compare the served contracts with them; the fingerprint is the same in the start-up
log, GetInfo and every --journal-out line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc

from tests.conftest import PROTOS, EmulateProcess, emulate, wait_until
from tests.test_admin_api import Admin

CATALOG = "acme/shop/v1/catalog.proto"
ACCEPT = "review the change, then run `emulate lock` to accept it"


def _project(tmp_path: Path, name: str = "project") -> Path:
    """A copy of the example contracts under `name/protos`, to edit."""
    root = tmp_path / name
    shutil.copytree(PROTOS, root / "protos")
    return root


def _lock(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    result = emulate("lock", "--proto", "protos", *extra, cwd=root)
    assert result.returncode == 0, result.stderr
    return result


def _check(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return emulate("check", "--proto", "protos", "--locked", *extra, cwd=root)


def _edit(root: Path, old: str, new: str, path: str = CATALOG) -> None:
    file = root / "protos" / path
    text = file.read_text()
    assert old in text, f"{old!r} is not in {path}"
    file.write_text(text.replace(old, new, 1))


def _fingerprint(lock: Path) -> str:
    found = re.search(r"^fingerprint: ([0-9a-f]{64})$", lock.read_text(), re.M)
    assert found, lock.read_text()
    return found.group(1)


def test_lock_then_check_passes(tmp_path: Path) -> None:
    root = _project(tmp_path)
    wrote = _lock(root)
    assert wrote.stdout.startswith("wrote emulator.lock: fingerprint ")
    assert "(5 files, 2 services, 9 methods)" in wrote.stdout
    text = (root / "emulator.lock").read_text()
    assert text.startswith("# emulator.lock: fingerprints (sha256)")
    assert "#   emulate lock --proto protos\n" in text  # how to bump it
    assert "  acme.shop.v1.Catalog:\n    fingerprint: " in text
    assert re.search(r"^      GetProduct: [0-9a-f]{64}$", text, re.M)
    assert re.search(r"^  acme/shop/v1/catalog.proto: [0-9a-f]{64}$", text, re.M)
    assert "google/protobuf/" not in text  # the protobuf release's files, not the contracts
    checked = _check(root)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith("; contracts as locked in emulator.lock")
    again = _lock(root)  # nothing changed: the file is left as it is
    assert again.stdout.startswith("emulator.lock: up to date")
    assert (root / "emulator.lock").read_text() == text


def test_a_changed_field_names_the_file_and_the_methods_that_use_its_message(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    _lock(root)
    _edit(root, "message Product {\n", "message Product {\n  string brand = 99;\n")
    checked = _check(root)
    assert checked.returncode == 1, checked.stderr
    lines = checked.stderr.splitlines()
    assert lines[0].startswith("emulate: error: the contracts differ from the lock emulator.lock")
    assert f"  file {CATALOG}: changed" in lines
    assert (
        "  acme.shop.v1.Catalog/GetProduct: changed (messages it uses: acme.shop.v1.Product)"
        in lines
    )
    assert not any("GetCategoryTree" in line for line in lines)  # it does not use Product
    assert lines[-1] == ACCEPT
    # Accepting it: the lock says what changed, and the check passes again.
    accepted = _lock(root)
    assert "  acme.shop.v1.Catalog/GetProduct: changed" in accepted.stdout
    assert _check(root).returncode == 0


def test_an_added_method_and_a_removed_service_are_named(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _lock(root)
    _edit(
        root,
        "service Catalog {\n",
        "service Catalog {\n  rpc DeleteProduct(GetProductRequest) returns (Product);\n",
    )
    orders = root / "protos" / "acme/shop/v1/orders.proto"
    text = orders.read_text()
    start = text.index("service Orders {")
    end = text.index("\n}\n", start) + 3
    orders.write_text(text[:start] + text[end:])
    checked = _check(root)
    assert checked.returncode == 1, checked.stderr
    assert "  acme.shop.v1.Catalog/DeleteProduct: added" in checked.stderr.splitlines()
    assert "  service acme.shop.v1.Orders: removed" in checked.stderr.splitlines()
    assert "  file acme/shop/v1/orders.proto: changed" in checked.stderr.splitlines()


def test_comments_do_not_count(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _lock(root)
    before = _fingerprint(root / "emulator.lock")
    _edit(root, "message Product {\n", "// A product: reworded.\nmessage Product {  // more\n")
    checked = _check(root)
    assert checked.returncode == 0, checked.stderr
    _lock(root)
    assert _fingerprint(root / "emulator.lock") == before


def test_fingerprint_is_the_same_across_file_order_copies_and_a_descriptor_set(
    tmp_path: Path,
) -> None:
    first = _project(tmp_path, "first")
    _lock(first)
    expected = _fingerprint(first / "emulator.lock")
    # Another folder, the files given one by one in another order, imports reordered.
    second = _project(tmp_path, "elsewhere/second")
    _edit(
        second,
        'import "acme/common/v1/money.proto";\nimport "google/api/annotations.proto";\n',
        'import "google/api/annotations.proto";\nimport "acme/common/v1/money.proto";\n',
    )
    files = sorted((second / "protos").rglob("*.proto"), reverse=True)
    args = [a for f in files for a in ("--proto", str(f))]
    _lock(second, *args, "-I", "protos", "--out", "other.lock")
    assert _fingerprint(second / "other.lock") == expected
    # The same contracts as a descriptor set written by protoc (no source info).
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path / "contracts.binpb"
    status = protoc.main(
        [
            "protoc",
            f"--descriptor_set_out={out}",
            "--include_imports",
            f"-I{first / 'protos'}",
            f"-I{Path(grpc_tools.__file__).parent / '_proto'}",  # the well-known types
            *[str(p.relative_to(first / "protos")) for p in (first / "protos").rglob("*.proto")],
        ]
    )
    assert status == 0
    from_set = emulate("lock", "--proto", str(out), "--out", str(tmp_path / "set.lock"))
    assert from_set.returncode == 0, from_set.stderr
    assert _fingerprint(tmp_path / "set.lock") == expected
    checked = emulate("check", "--proto", str(out), "--locked", str(first / "emulator.lock"))
    assert checked.returncode == 0, checked.stderr


def test_the_start_log_getinfo_and_the_journal_carry_the_lock_fingerprint(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    _lock(root)
    expected = _fingerprint(root / "emulator.lock")
    out = tmp_path / "calls.jsonl"
    args = ["--proto", str(root / "protos"), "--journal-out", str(out)]
    with EmulateProcess(*args, "--locked", str(root / "emulator.lock")) as proc:
        assert Admin(proc.target)("GetInfo").contract_fingerprint == expected
        with grpc.insecure_channel(proc.target) as channel:
            call = channel.unary_unary("/acme.shop.v1.Catalog/GetProduct")
            call(b"", timeout=10)
        [line] = wait_until(lambda: out.is_file() and out.read_text().splitlines())
        assert json.loads(line)["contractFingerprint"] == expected
        code, _, err = proc.stop()
    assert code == 0, err
    assert f"contracts: fingerprint {expected} (5 files, as locked in " in err


def test_a_server_with_locked_refuses_to_start_on_drift(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _lock(root)
    (root / "emulator.yaml").write_text("protos: [protos]\nlocked: emulator.lock\n")
    _edit(root, "message Product {\n", "message Product {\n  string brand = 99;\n")
    served = subprocess.run(
        [sys.executable, "-m", "emulator", "--config", "project/emulator.yaml", "--port", "0"],
        cwd=tmp_path,  # the lock is found next to emulator.yaml, not in the working folder
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 1, served.stderr
    assert "emulator listening" not in served.stdout
    assert "differ from the lock project/emulator.lock (" in served.stderr
    assert "acme.shop.v1.Catalog/GetProduct: changed" in served.stderr


def test_a_missing_or_malformed_lock_is_one_line_naming_it(tmp_path: Path) -> None:
    root = _project(tmp_path)
    missing = _check(root)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "emulate: error: lock file emulator.lock: no such file; write it with "
        "`emulate lock --proto ...` (the same --proto flags) and commit it"
    ]
    _lock(root)
    lock = root / "emulator.lock"
    good = lock.read_text()
    cases = {
        "fingerprint: [oops\n": "emulator.lock:10: not valid YAML",  # where the parser sees it
        "version: 7\n": "emulator.lock:7: version must be 1, got 7",
        "fingerprint: abc\n": "emulator.lock:8: fingerprint: expected a sha256 digest",
        "- a list\n": "emulator.lock:1: expected a mapping of version",
    }
    for text, expected in cases.items():
        if text.startswith("fingerprint: ["):
            lock.write_text(good.replace("files:\n", text + "files:\n", 1))
        elif text.startswith(("version", "fingerprint")):
            key = text.split(":")[0]
            lock.write_text(re.sub(rf"^{key}: .*\n", text, good, count=1, flags=re.M))
        else:
            lock.write_text(text)
        checked = _check(root)
        assert checked.returncode == 2, (text, checked.stderr)
        [line] = checked.stderr.strip().splitlines()
        assert line.startswith(f"emulate: error: {expected}"), (text, line)
    directory = _check(root, str(tmp_path))
    assert directory.returncode == 2 and len(directory.stderr.strip().splitlines()) == 1
    assert str(tmp_path) in directory.stderr
