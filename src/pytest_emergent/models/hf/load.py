"""Local checkpoints: content fingerprints, the GGUF conversion cache, and loading.

Everything heavy (torch, transformers, peft) is imported inside the functions that need it,
so the registry can import this module's hashing helpers without pulling torch in.

Fingerprints are sha256 over file *content* (never paths or timestamps), so a model copied
elsewhere keeps its cache entries and a retrained one gets new ones. Hashing a 500 MB weight
file takes about a second; the result is memoised by (path, size, mtime_ns) in a small JSON
file in the cache directory so a re-run does not hash again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from pytest_emergent._io import write_atomic
from pytest_emergent.errors import ModelSpecError, require

#: files (beside the weights) that change what a checkpoint computes or how it tokenises
_MODEL_META_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
#: tokenizer files: an adapter directory that has one of these brings its own tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
#: pickle weight files; trainer state files (training_args.bin, optimizer.pt, ...) are not
#: weights and are ignored both for loading and for the refusal
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_TRAINER_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
_HASH_MEMO = "file-hashes.json"
#: files modified this recently are hashed but not memoised: file timestamps are coarse
#: (a few ms), so a file rewritten right after hashing could keep its (size, mtime)
_RACY_SECONDS = 2.0
_CHUNK = 1 << 20
_SHORT = 16


def default_cache_dir() -> Path:
    """`$PYTEST_EMERGENT_CACHE/models` or `~/.cache/pytest-emergent/models`.

    Same layout as `--em-cache-dir DIR` (`DIR/models`, `DIR/finetune`, `DIR/records.sqlite`).
    """
    env = os.environ.get("PYTEST_EMERGENT_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "pytest-emergent"
    return root / "models"


class HashMemo:
    """sha256 of files, memoised by (absolute path, size, mtime_ns) in a JSON file."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / _HASH_MEMO
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text())
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                # a missing or corrupted memo only costs re-hashing
                self._entries = {}
        return self._entries

    def sha256(self, path: Path) -> str:
        """Full hex sha256 of `path`'s content, from the memo when size and mtime match."""
        path = path.resolve()
        st = path.stat()
        entries = self._load()
        entry = entries.get(str(path))
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return str(entry["sha256"])
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        hexdigest = digest.hexdigest()
        if time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
            entries[str(path)] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": hexdigest,
            }
            self._dirty = True
        return hexdigest

    def save(self) -> None:
        """Write the memo atomically, merged with entries other processes wrote meanwhile."""
        if not self._dirty or self._entries is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                on_disk = json.loads(self.path.read_text())
            except (OSError, ValueError):
                on_disk = {}
            merged = {**(on_disk if isinstance(on_disk, dict) else {}), **self._entries}
            write_atomic(self.path, json.dumps(merged, indent=0, sort_keys=True), private=True)
            self._dirty = False
        except OSError:
            pass  # a read-only cache directory only costs re-hashing next time


def combine(parts: list[str]) -> str:
    """Short (16 hex) sha256 over an ordered list of strings."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:_SHORT]


def _is_weight_file(path: Path, *, pickle: bool) -> bool:
    if path.name in _TRAINER_FILES or path.name.startswith("rng_state"):
        return False
    if pickle:
        return path.suffix in _PICKLE_SUFFIXES
    return path.suffix == ".safetensors"


def weight_files(model_dir: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle weight files) at the top level of `model_dir`."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    return (
        [p for p in files if _is_weight_file(p, pickle=False)],
        [p for p in files if _is_weight_file(p, pickle=True)],
    )


def check_weights(model_dir: Path, *, allow_pickle: bool, what: str) -> list[Path]:
    """The weight files that will be loaded; refuses pickle-only checkpoints unless allowed."""
    safe, pickled = weight_files(model_dir)
    if safe:
        return safe
    if pickled:
        if not allow_pickle:
            names = ", ".join(p.name for p in pickled[:3])
            raise ModelSpecError(
                f"{what} {model_dir}: only pickle weight files ({names}) and no *.safetensors. "
                "Loading a pickle can run arbitrary code, so it is refused. Convert the "
                "checkpoint to safetensors (save_pretrained(..., safe_serialization=True)), "
                "or, if you trust its source, pass --em-allow-pickle true "
                "(em_allow_pickle = true in the ini file, allow_pickle=True in Python)."
            )
        return pickled
    raise ModelSpecError(f"{what} {model_dir}: no weight files (*.safetensors) found")


def fingerprint_dir(model_dir: Path, weights: list[Path], memo: HashMemo) -> str:
    """Short content hash of a checkpoint directory: weights, config and tokenizer files."""
    files = sorted(
        set(weights) | {model_dir / n for n in _MODEL_META_FILES if (model_dir / n).is_file()}
    )
    files += sorted(model_dir.glob("*.safetensors.index.json"))
    parts = [f"{p.name}={_content_hash(p, memo)}" for p in files]
    memo.save()
    return combine(parts)


def _content_hash(path: Path, memo: HashMemo) -> str:
    """sha256 of a file; for adapter_config.json without the base's path, which may differ
    between copies of the same adapter (the base's own fingerprint is hashed instead)."""
    if path.name != "adapter_config.json":
        return memo.sha256(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{path}: cannot read it: {exc}") from exc
    if isinstance(config, dict):
        config.pop("base_model_name_or_path", None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def convert_gguf(gguf: Path, cache_dir: Path, memo: HashMemo) -> tuple[Path, str]:
    """The safetensors directory converted from `gguf` (converting on first use) and its hash.

    GGUF loading dequantises to fp32 and takes ~20-35 s; the converted directory loads in a
    few seconds. It is written to a temporary directory and renamed into place, so a killed
    conversion never leaves a half-written model behind.
    """
    sha = memo.sha256(gguf)
    memo.save()
    target = cache_dir / sha
    if (target / "config.json").is_file():
        return target, sha
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(cache_dir)
    tmp = cache_dir / f".tmp-{sha[:12]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _convert_into(gguf, tmp)
        (tmp / "pytest_emergent_source.json").write_text(
            json.dumps({"gguf": str(gguf), "sha256": sha}, indent=1)
        )
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished the same conversion first: use theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, sha


def _remove_stale_tmp(cache_dir: Path, max_age_s: float = 6 * 3600) -> None:
    """Remove temporary conversion directories left by killed processes."""
    now = time.time()
    for path in cache_dir.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if path.is_dir() and now - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path, ignore_errors=True)


def _convert_into(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF file with transformers (dequantised fp32) and save it as safetensors."""
    require("gguf", "hf", "loading a .gguf model")
    transformers = require("transformers", "hf", "loading a .gguf model")
    import torch

    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(  # type: ignore[attr-defined]
            str(gguf.parent), **kwargs
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(  # type: ignore[attr-defined]
            str(gguf.parent), dtype=torch.float32, **kwargs
        )
    except Exception as exc:
        raise ModelSpecError(f"GGUF file {gguf}: transformers cannot load it: {exc}") from exc
    # A GGUF-loaded model carries its quantizer; save_pretrained refuses it ("not
    # serializable") although the weights are already dequantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def load_model_dir(
    model_dir: Path, *, use_safetensors: bool, trust_remote_code: bool, tokenizer_dir: Path
) -> tuple[Any, Any]:
    """(model, tokenizer) from a local transformers directory, fp32, eval mode, no network."""
    transformers = require("transformers", "hf", "the local transformers backend")
    import torch

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(  # type: ignore[attr-defined]
            str(tokenizer_dir), **kwargs
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(  # type: ignore[attr-defined]
            str(model_dir), dtype=torch.float32, use_safetensors=use_safetensors, **kwargs
        )
    except ModelSpecError:
        raise
    except Exception as exc:
        raise ModelSpecError(f"model directory {model_dir}: cannot load it: {exc}") from exc
    model.eval()
    return model, tokenizer


def apply_adapter(model: Any, adapter_dir: Path) -> Any:
    """`model` with the peft adapter in `adapter_dir` merged into its weights.

    Merging makes inference as fast as the base model; the adapter files themselves are
    untouched. peft prefers `adapter_model.safetensors`; the caller has already refused a
    pickle-only adapter unless pickles are allowed.
    """
    peft = require("peft", "hf", "loading a peft adapter")
    try:
        wrapped = peft.PeftModel.from_pretrained(  # type: ignore[attr-defined]
            model, str(adapter_dir), is_trainable=False
        )
        merged = wrapped.merge_and_unload()
    except Exception as exc:
        raise ModelSpecError(f"adapter {adapter_dir}: cannot apply it: {exc}") from exc
    merged.eval()
    return merged
