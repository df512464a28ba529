"""Where fine-tuned results live, how they are keyed, and how they are written safely.

A result directory is named by a hash of everything that determines the trained weights:
the base model's content fingerprint, the training data's content hash, the KL data's hash,
the hash of an adapter training continues from, every hyper-parameter, and a format version.
Library versions are recorded in the metadata but left out of the key, so upgrading torch
does not throw away every cached adapter.

Results are trained into a temporary directory and renamed into place once complete (the
rename is atomic on one file system), so an interrupted run leaves nothing half-written; a
lock file serialises concurrent sessions (pytest-xdist workers) training the same key, so
the second one waits and then finds the first one's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: bump when the training code changes what a given key produces
FORMAT_VERSION = 1
METADATA = "pytest_emergent_finetune.json"
_KEY_CHARS = 20
_STALE_TMP_S = 6 * 3600


def default_root() -> Path:
    """`$PYTEST_EMERGENT_CACHE/finetune` or `~/.cache/pytest-emergent/finetune`."""
    env = os.environ.get("PYTEST_EMERGENT_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "pytest-emergent"
    return root / "finetune"


def cache_root(cache_dir: str | Path | None) -> Path:
    """The fine-tune cache folder: `cache_dir/finetune` when a cache root (`--em-cache-dir`)
    is given, else `default_root()`."""
    if cache_dir is None:
        return default_root()
    return Path(cache_dir).expanduser() / "finetune"


def models_dir(cache_dir: str | Path | None) -> Path | None:
    """The converted-model cache under a `--em-cache-dir` root (None: the registry's own
    default), the same folder the session's `--model` uses."""
    return Path(cache_dir).expanduser() / "models" if cache_dir is not None else None


def cache_key(parts: Mapping[str, Any]) -> str:
    """Short sha256 of the canonical JSON of `parts` plus the format version."""
    payload = json.dumps(
        {"format": FORMAT_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:_KEY_CHARS]


def directory_hash(path: Path) -> str:
    """Content hash of the files at the top level of `path` (names and bytes), e.g. of an
    adapter that training continues from. Our own metadata file is left out, so a copy of a
    result hashes the same as the original."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.name != METADATA):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:_KEY_CHARS]


def read_metadata(result_dir: Path) -> dict[str, Any] | None:
    """The metadata of a complete result, or None if missing or unreadable."""
    try:
        data = json.loads((result_dir / METADATA).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(result_dir: Path) -> bool:
    """A result is complete when its metadata names it and its weights are present."""
    meta = read_metadata(result_dir)
    if meta is None or meta.get("key") != result_dir.name:
        return False
    return any(result_dir.glob("*.safetensors"))


@contextlib.contextmanager
def key_lock(root: Path, key: str, *, say: Any = None) -> Iterator[None]:
    """Hold an exclusive lock for `key` (POSIX flock; a no-op where unavailable)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = root / f".{key}.lock"
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if say is not None:
                say(f"another process is training {key}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_tmp_dir(root: Path, key: str) -> Path:
    """A fresh temporary directory beside the final one (same file system, so the final
    rename is atomic). Leftovers of killed runs older than six hours are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if old.is_dir() and now - old.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(old, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def publish(tmp: Path, final: Path) -> None:
    """Move the finished `tmp` directory to `final`, replacing an incomplete leftover."""
    if final.exists() and not is_complete(final):
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # someone else published the same key meanwhile: keep theirs
        if not is_complete(final):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON (indented, sorted keys) in one go."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
