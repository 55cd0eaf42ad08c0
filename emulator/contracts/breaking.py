"""Breaking changes between two versions of the contracts, judged by buf (`emulate diff`).

Each side is compiled by the emulator's own compiler, so imports resolve exactly as the emulator
serves them (well-known types, -I roots, googleapis under an import root), then written as a
descriptor set and handed to `buf breaking NEW --against OLD` with a config that names one
category. buf's rules are the reference for what breaks; re-implementing them would drift.

The old side may be a git revision (`git:REV`): the --proto paths (and -I paths inside the same
repository) are read from REV with `git ls-tree` and `git cat-file` into a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from emulator.contracts.compiler import compile_contracts, shown_path
from emulator.errors import EmulatorError

__all__ = ["CATEGORIES", "DEFAULT_CATEGORY", "GIT_PREFIX", "Change", "breaking_changes", "find_buf"]

# Strictest first, as buf lists them: a change that breaks one breaks every stricter one too.
CATEGORIES = ("FILE", "PACKAGE", "WIRE_JSON", "WIRE")
# buf's own default (a buf.yaml without `breaking:`), so `emulate diff` and `buf breaking` agree
# on the same contracts; FILE also guards generated code, where Python breaks per file.
DEFAULT_CATEGORY = "FILE"
GIT_PREFIX = "git:"
BUF_BREAKING = 100  # buf's exit status when it found breaking changes (0: none; else it failed)


@dataclass(frozen=True, slots=True)
class Change:
    """One breaking change as buf reports it, located in the new contracts."""

    path: str  # the file on disk when the new side is one, else its name in the contracts
    line: int  # 0 when unknown (a deleted file, a descriptor set without source info)
    column: int
    rule: str  # buf's rule id, e.g. FIELD_NO_DELETE
    message: str

    def __str__(self) -> str:
        where = self.path
        if where and self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.rule}: {self.message}" if where else f"{self.rule}: {self.message}"


def find_buf() -> str:
    """The buf of the `diff` extra (buf-bin puts it next to this Python), else one on PATH."""
    name = "buf.exe" if os.name == "nt" else "buf"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("buf")
    if found is None:
        raise EmulatorError(
            "needs buf, which judges the changes: pip install 'grpc-emulator[diff]' "
            "(or put buf on PATH)"
        )
    return found


def breaking_changes(
    protos: Sequence[str],
    against: Sequence[str],
    import_paths: Sequence[str] = (),
    category: str = DEFAULT_CATEGORY,
) -> list[Change]:
    """What in `protos` breaks `against` under `category`; EmulatorError on bad input."""
    if category not in CATEGORIES:
        raise EmulatorError(f"--category {category}: expected one of {', '.join(CATEGORIES)}")
    buf = find_buf()  # before compiling: a missing tool is said at once
    gits = [a for a in against if a.startswith(GIT_PREFIX)]
    if gits and len(against) > 1:
        raise EmulatorError(
            f"--against {gits[0]}: a git revision stands for all the --proto paths: give it alone"
        )
    with tempfile.TemporaryDirectory(prefix="grpc-emulator-diff-") as tmp:
        work = Path(tmp).resolve()
        new = _compiled(protos, import_paths, "--proto", " ".join(protos), lambda text: text)
        (work / "new.binpb").write_bytes(new.SerializeToString())
        # buf says 1:1 for a file without source info (a descriptor set written without it):
        # no line is better than a wrong one.
        located = {f.name for f in new.file if f.source_code_info.location}
        if gits:
            with _at_revision(gits[0], protos, import_paths) as (inputs, imports, rename):
                old = _compiled(inputs, imports, "--against", gits[0], rename)
        else:
            old = _compiled(against, import_paths, "--against", " ".join(against), lambda t: t)
        (work / "old.binpb").write_bytes(old.SerializeToString())
        found = _run_buf(buf, work, category)
    roots = _roots(protos, import_paths)
    return [
        Change(
            path=_on_disk(str(item.get("path", "")), roots),
            line=int(item.get("start_line", 0)) if item.get("path") in located else 0,
            column=int(item.get("start_column", 0)),
            rule=str(item.get("type", "")),
            message=str(item.get("message", "")),
        )
        for item in found
    ]


def _compiled(
    inputs: Sequence[str],
    import_paths: Sequence[str],
    flag: str,
    label: str,
    rename: Callable[[str], str],
) -> descriptor_pb2.FileDescriptorSet:
    """One side compiled, its errors in one line naming the side (and REV: for a revision)."""
    try:
        fds = compile_contracts(inputs, import_paths)
    except EmulatorError as exc:
        message = rename(_one_line(str(exc)))
        if message.startswith("--proto "):  # the compiler names every input --proto
            raise EmulatorError(flag + message.removeprefix("--proto")) from None
        raise EmulatorError(f"{flag} {label}: {message}") from None
    return fds


def _one_line(message: str) -> str:
    """protoc's lines joined: a CI log shows the error on the line that says it failed."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[-1].startswith("fix the .proto files above"):
        lines.pop()  # the hint speaks of "above", which a one-line message has not
    if not lines:
        return message
    head, *rest = lines
    return f"{head} {'; '.join(rest)}" if rest else head


def _run_buf(buf: str, work: Path, category: str) -> list[dict[str, Any]]:
    config = json.dumps({"version": "v2", "breaking": {"use": [category]}})
    # cwd is the temporary folder: buf would otherwise read a buf.yaml of the working directory.
    command = [buf, "breaking", "new.binpb", "--against", "old.binpb", "--config", config]
    try:
        done = subprocess.run(
            [*command, "--error-format", "json"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise EmulatorError(f"{buf}: cannot be run: {exc.strerror}") from None
    if done.returncode not in (0, BUF_BREAKING):
        said = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[0]
        raise EmulatorError(f"buf breaking failed (exit status {done.returncode}): {said}")
    found = []
    for line in done.stdout.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict) and "type" in item:
                found.append(item)
    return found


def _roots(protos: Sequence[str], import_paths: Sequence[str]) -> list[Path]:
    """Where the new side's files sit on disk, in the order the compiler searches them."""
    roots = []
    for raw in protos:
        path = Path(raw).resolve()
        if path.is_dir():
            roots.append(path)
        elif path.suffix == ".proto":
            roots.append(path.parent)
    return [*roots, *(Path(raw).resolve() for raw in import_paths)]


def _on_disk(name: str, roots: Sequence[Path]) -> str:
    """A file's name in the contracts as the user opens it (protos/acme/...), when it is there."""
    if not name:
        return ""
    held = next((root / name for root in roots if (root / name).is_file()), None)
    return name if held is None else shown_path(held)


# ---- git:REV ----


def _git(args: Sequence[str], cwd: Path, spec: str, stdin: bytes | None = None) -> bytes | None:
    """git's output, or None when it refused; an EmulatorError when there is no git at all."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False
        )
    except OSError:
        raise EmulatorError(f"--against {spec}: needs git, which is not on PATH") from None
    return done.stdout if done.returncode == 0 else None


@contextlib.contextmanager
def _at_revision(
    spec: str, protos: Sequence[str], import_paths: Sequence[str]
) -> Iterator[tuple[list[str], list[str], Callable[[str], str]]]:
    """The --proto and -I paths as they were at the revision: (inputs, import paths, a function
    that writes the temporary folder in messages as `REV:`)."""
    rev = spec.removeprefix(GIT_PREFIX)
    if not rev or rev.startswith("-"):  # "-..." would be read by git as an option
        raise EmulatorError(f"--against {spec}: name a revision, as in git:HEAD~1 or git:main")
    anchor = Path(protos[0]).resolve()
    anchor = anchor if anchor.is_dir() else anchor.parent
    top_out = _git(["rev-parse", "--show-toplevel"], anchor, spec)
    if top_out is None:
        raise EmulatorError(
            f"--against {spec}: --proto {protos[0]} is not in a git repository; "
            "give --against a folder, a .proto file or a descriptor set instead"
        )
    top = Path(top_out.decode().strip()).resolve()
    commit_out = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top, spec)
    if commit_out is None:
        raise EmulatorError(f"--against {spec}: no revision {rev!r} in the git repository at {top}")
    commit = commit_out.decode().strip()
    with tempfile.TemporaryDirectory(prefix="grpc-emulator-rev-") as tmp:
        out = Path(tmp).resolve()
        inputs = [_extract(raw, top, commit, out, spec, required=True) for raw in protos]
        imports = [_extract(raw, top, commit, out, spec, required=False) for raw in import_paths]

        def rename(text: str) -> str:
            return text.replace(f"{out}{os.sep}", f"{rev}:").replace(str(out), f"{rev}:")

        yield inputs, imports, rename


def _extract(raw: str, top: Path, commit: str, out: Path, spec: str, *, required: bool) -> str:
    """`raw` (and, for a .proto file, the folder it is compiled from) written under `out` as
    it is in `commit`; a path outside the repository is the same on both sides."""
    path = Path(raw).resolve()
    if not path.is_relative_to(top):
        if required:
            raise EmulatorError(
                f"--against {spec}: --proto {raw} is outside the git repository {top}"
            )
        return raw
    rel = path.relative_to(top).as_posix() or "."
    wanted = [rel]
    if rel.endswith(".proto"):  # a single file imports its neighbours: its folder is a root
        wanted.append(path.parent.relative_to(top).as_posix() or ".")
    for item in wanted:
        listing = _git(["ls-tree", "-r", "-z", commit, "--", item], top, spec)
        if not listing:
            flag, rev = ("--proto" if required else "-I"), spec.removeprefix(GIT_PREFIX)
            raise EmulatorError(f"--against {spec}: {flag} {raw} is not in {rev} ({commit[:12]})")
        _write_tree(listing, top, out, spec)
    return str(out / rel)


def _write_tree(listing: bytes, top: Path, out: Path, spec: str) -> None:
    """Write the blobs `git ls-tree -r -z` listed under `out`: files and symbolic links (a
    submodule's commit has no content here, and none is a contract)."""
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_name = record.partition(b"\t")
        mode, kind, obj = meta.split(b" ")
        if kind == b"blob":
            entries.append((mode, obj, os.fsdecode(raw_name)))
    if not entries:
        return
    batch = _git(["cat-file", "--batch"], top, spec, b"".join(obj + b"\n" for _, obj, _ in entries))
    if batch is None:
        raise EmulatorError(f"--against {spec}: git cat-file could not read the contracts")
    at = 0
    for mode, _, name in entries:
        header_end = batch.index(b"\n", at)
        size = int(batch[at:header_end].split(b" ")[2])
        content = batch[header_end + 1 : header_end + 1 + size]
        at = header_end + 1 + size + 1  # each object ends with a newline of its own
        target = out / name
        if target.exists() or target.is_symlink():
            continue  # listed twice (a file and its folder both asked for)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == b"120000":
            target.symlink_to(content.decode())
        else:
            target.write_bytes(content)
