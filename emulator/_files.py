"""Files replaced whole: a reader (a replay, a lock check, an import) never sees half of one."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it, with the mode `open`
    would give it (the file's own when it exists, else what the umask leaves of 0666; not
    mkstemp's 0600, which another user, such as a container's, could not read). OSError as
    `open` raises it; no temporary file is left behind."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, _mode(path))
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it, and set back at once: there is no other way
    os.umask(mask)
    return mask


_UMASK = _umask()  # at import, before any thread of ours exists (the umask is the process's)
