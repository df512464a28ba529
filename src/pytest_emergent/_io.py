"""File writes that never leave a half-written file, and reading a figure of /proc: one
implementation each for the package.

Imports nothing else of the package.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename.

    The file gets the permissions a plain `open()` would give it (0666 less the umask), since
    reports and caches are read by people and by CI artifact uploaders; `private` keeps
    mkstemp's 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def proc_bytes(path: str, key: str) -> int | None:
    """The figure a /proc file gives in kB for `key` ("MemAvailable", "VmSize"), in bytes;
    None where the file or the key is not there."""
    try:
        with open(path, encoding="ascii") as table:
            for line in table:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
