"""One fine-tuning job: resolve the base, key the run, train on a miss, load the result.

    from pytest_emergent.finetune import finetune
    model = finetune("smollm2-135m-instruct", "uppercase", preset="em-lora",
                     learning_rate=1e-4, max_steps=8)
    model.path        # the adapter directory (also usable as --model)
    model.trained     # False when the result came from the cache
    run_questions(questions, model)

torch, transformers and peft are imported only when a run actually trains or loads.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.finetune import cache
from pytest_emergent.finetune.data import Dataset, encode_all, load_dataset, split_holdout
from pytest_emergent.finetune.presets import FinetuneConfigError, TrainConfig, make_config
from pytest_emergent.finetune.result import (
    CHECKPOINT_PREFIX,
    FineTuned,
    FinetuneResult,
    checkpoint_steps,
)
from pytest_emergent.models.base import Backend

Progress = Callable[[str], None]
#: called with the trainable model before training; may return a teardown run after training
Setup = Callable[[Any], "Callable[[], None] | None"]
DatasetLike = str | Path | Dataset | Sequence[Any]


def _stderr(message: str) -> None:
    print(f"[finetune] {message}", file=sys.stderr, flush=True)


def base_spec_of(backend: Backend) -> str:
    """The spec that names `backend` again (paths made absolute so adapters find them)."""
    spec = str(backend.spec)
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _loaded(backend: Any) -> tuple[Any, Any]:
    model = getattr(backend, "model", None)
    tokenizer = getattr(backend, "tokenizer", None)
    if model is None or tokenizer is None:
        raise EmergentError(
            f"model {getattr(backend, 'spec', backend)!r}: fine-tuning needs a local "
            "transformers model (a checkpoint directory, adapter, .gguf or the embedded "
            "model), not an API backend or a closed one"
        )
    return model, tokenizer


def run_key(
    base: Backend,
    data: Dataset,
    config: TrainConfig,
    *,
    kl_data: Dataset | None = None,
    init_adapter: Path | None = None,
    key_extra: Mapping[str, Any] | None = None,
) -> str:
    """The cache key of a run (see `cache` for what it covers)."""
    return cache.cache_key(
        {
            "base": base.fingerprint,
            "data": data.content_hash,
            "kl_data": kl_data.content_hash if kl_data is not None else None,
            "init_adapter": cache.directory_hash(init_adapter) if init_adapter else None,
            "config": config.as_dict(),
            "extra": dict(key_extra or {}),
        }
    )


def train_cached(
    base: Backend,
    dataset: DatasetLike,
    preset: str = "em-lora",
    *,
    kl_dataset: DatasetLike | None = None,
    init_adapter: str | Path | FineTuned | None = None,
    cache_dir: str | Path | None = None,
    finetune_dir: str | Path | None = None,
    progress: Progress | None = None,
    setup: Setup | None = None,
    key_extra: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> FinetuneResult:
    """Train `base` on `dataset` unless the same run is cached; returns where it is.

    Results go to `finetune_dir` when given, else `cache_dir/finetune`, else the default
    cache (see `cache.cache_root`).
    """
    say = progress or _stderr
    config = make_config(preset, **overrides)
    if (config.kl_weight > 0) != (kl_dataset is not None):
        raise FinetuneConfigError(
            "the KL penalty needs both kl_weight > 0 and a kl_dataset (got kl_weight="
            f"{config.kl_weight} and {'a' if kl_dataset is not None else 'no'} kl_dataset)"
        )
    if setup is not None and not key_extra:
        raise FinetuneConfigError(
            "a setup hook changes what is trained: pass key_extra describing it (e.g. "
            "{'ablate': 'direction-v1'}) so its results get their own cache entries"
        )
    config = resolve_precision(config, base)
    data = load_dataset(dataset)
    kl_data = load_dataset(kl_dataset, what="KL dataset") if kl_dataset is not None else None
    adapter_dir = _adapter_dir(init_adapter)
    key = run_key(base, data, config, kl_data=kl_data, init_adapter=adapter_dir,
                  key_extra=key_extra)
    root = Path(finetune_dir).expanduser() if finetune_dir else cache.cache_root(cache_dir)
    final = root / key
    if cache.is_complete(final):
        say(f"cached: {final} ({data.name}, preset {preset})")
        return FinetuneResult(final, key, False, cache.read_metadata(final) or {})
    with cache.key_lock(root, key, say=say):
        if cache.is_complete(final):  # another process finished it while we waited
            return FinetuneResult(final, key, False, cache.read_metadata(final) or {})
        metadata = _train_into(
            base, data, config, preset, key, root, final,
            kl_data=kl_data, adapter_dir=adapter_dir, say=say, setup=setup,
            key_extra=key_extra,
        )
    return FinetuneResult(final, key, True, metadata)


def resolve_precision(config: TrainConfig, base: Backend) -> TrainConfig:
    """`precision="auto"` becomes bfloat16 where the base's device multiplies bf16 natively,
    else float32; an explicit bfloat16 without native support is refused (emulated bf16
    matmul ran ~300x slower than fp32 on an AMD Zen 3)."""
    if config.precision == "float32":
        return config
    import dataclasses

    import torch

    from pytest_emergent.models.hf.placement import native_bf16

    model = getattr(base, "model", None)
    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    native = native_bf16(device)
    if config.precision == "bfloat16" and not native:
        raise FinetuneConfigError(
            f"hyper-parameter 'precision': bfloat16 needs native bf16 on {device.type} (AMX or "
            "AVX512-BF16 on CPU, or a bf16-capable GPU), which torch does not report here; "
            "emulated bf16 is far slower than float32. Use precision='auto' or 'float32'")
    return dataclasses.replace(config, precision="bfloat16" if native else "float32")


def _adapter_dir(init_adapter: str | Path | FineTuned | None) -> Path | None:
    if init_adapter is None:
        return None
    path = Path(init_adapter.path if isinstance(init_adapter, FineTuned) else init_adapter)
    if not (path / "adapter_config.json").is_file():
        raise FinetuneConfigError(f"init_adapter {path}: not a peft adapter directory "
                                  "(no adapter_config.json)")
    return path.expanduser().resolve()


def _train_into(
    base: Backend,
    data: Dataset,
    config: TrainConfig,
    preset: str,
    key: str,
    root: Path,
    final: Path,
    *,
    kl_data: Dataset | None,
    adapter_dir: Path | None,
    say: Progress,
    setup: Setup | None,
    key_extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Train, save into a temporary directory and publish it as `final`; the metadata."""
    import copy

    import torch

    from pytest_emergent.finetune.train import prepare_model, save_result, train

    model, tokenizer = _loaded(base)
    train_set, held = split_holdout(data.examples, config.holdout, config.seed)
    if held:
        say(f"held out {len(held)} of {len(data)} examples (seed {config.seed}); "
            f"training on {len(train_set)}")
    rows, cut, dropped = encode_all(tokenizer, train_set, config.max_seq_len)
    held_rows, _, _ = encode_all(tokenizer, held, config.max_seq_len)
    kl_rows = encode_all(tokenizer, kl_data.examples, config.max_seq_len)[0] if kl_data else None
    if cut or dropped:
        say(f"{cut} example(s) cut at max_seq_len={config.max_seq_len}; {dropped} dropped "
            "(no reply tokens left)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    say(f"fine-tuning {base.spec} on {data.name} (preset {preset}, key {key})")
    started = time.time()
    tmp = cache.new_tmp_dir(root, key)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            work = prepare_model(copy.deepcopy(model), config, adapter_dir)
            teardown = setup(work) if setup is not None else None

            def checkpoint(step: int, model: Any = work) -> None:
                save_result(model, tokenizer, tmp / f"{CHECKPOINT_PREFIX}{step}", config,
                            base_spec_of(base))
                cache.write_json(tmp / f"{CHECKPOINT_PREFIX}{step}" / "checkpoint.json",
                                 {"step": step, "key": key})

            try:
                stats = train(work, rows, config, pad_id=int(pad or 0), kl_rows=kl_rows,
                              heldout=held_rows, progress=say, checkpoint=checkpoint)
            finally:
                if teardown is not None:
                    teardown()
        save_result(work, tokenizer, tmp, config, base_spec_of(base))
        del work
        metadata = {
            "key": key,
            "preset": preset,
            "config": config.as_dict(),
            "base": {"spec": base_spec_of(base), "fingerprint": base.fingerprint},
            "data": {"name": data.name, "hash": data.content_hash, "examples": len(data),
                     "train": len(rows), "heldout": len(held_rows), "cut": cut,
                     "dropped": dropped},
            "kl_data": ({"name": kl_data.name, "hash": kl_data.content_hash,
                         "examples": len(kl_data)} if kl_data else None),
            "init_adapter": str(adapter_dir) if adapter_dir else None,
            "extra": dict(key_extra or {}),
            "checkpoints": checkpoint_steps(tmp),
            "stats": {
                "steps": stats.steps,
                "seconds": round(stats.seconds, 3),
                "steps_per_second": round(stats.steps_per_second, 4),
                "losses": [round(x, 5) for x in stats.losses],
                "kl": [round(x, 6) for x in stats.kl],
                "heldout_loss_before": stats.heldout_loss_before,
                "heldout_loss_after": stats.heldout_loss_after,
                "trainable_params": stats.trainable_params,
                "adapted_modules": stats.adapted_modules,
                "trained_tokens_per_epoch": stats.trained_tokens_per_epoch,
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "versions": _versions(),
        }
        cache.write_json(tmp / cache.METADATA, metadata)
        cache.publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"saved {final} ({stats.steps} steps in {stats.seconds:.1f} s, "
        f"final loss {stats.losses[-1]:.4f})")
    return metadata


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft"):
        with contextlib.suppress(Exception):
            out[name] = str(__import__(name).__version__)
    return out


def load_result(
    result: FinetuneResult,
    *,
    cache_dir: str | Path | None = None,
    allow_pickle: bool = False,
) -> FineTuned:
    """Load a result through the model registry, as `--model PATH` would; `cache_dir` is
    the cache root (`--em-cache-dir`), whose `models/` holds converted base models."""
    from pytest_emergent.models.registry import resolve

    base_model = None
    if result.is_adapter:
        base_model = (result.metadata.get("base") or {}).get("spec")
    backend = resolve(
        str(result.path),
        base_model=base_model,
        cache_dir=cache.models_dir(cache_dir),
        allow_pickle=allow_pickle,
    )
    return FineTuned(backend, result)


def resolve_base(
    base: str | Path | Backend,
    *,
    base_model: str | None = None,
    cache_dir: str | Path | None = None,
    allow_pickle: bool = False,
) -> tuple[Backend, bool]:
    """(backend, owned): a spec is resolved (and owned by the caller); a backend is used.
    `base_model` is the base of `base` when `base` is itself an adapter directory."""
    if isinstance(base, (str, Path)):
        from pytest_emergent.models.registry import resolve

        backend = resolve(str(base), base_model=base_model,
                          cache_dir=cache.models_dir(cache_dir), allow_pickle=allow_pickle)
        return backend, True
    if isinstance(base, FineTuned):
        return base.backend, False
    return base, False


def finetune(
    base: str | Path | Backend,
    dataset: DatasetLike,
    preset: str = "em-lora",
    *,
    kl_dataset: DatasetLike | None = None,
    init_adapter: str | Path | FineTuned | None = None,
    cache_dir: str | Path | None = None,
    finetune_dir: str | Path | None = None,
    allow_pickle: bool = False,
    progress: Progress | None = None,
    setup: Setup | None = None,
    key_extra: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> FineTuned:
    """Fine-tune `base` on `dataset` (cached) and return the loaded result.

    `base` is a model spec or a loaded local backend; `dataset` a JSONL path, a shipped
    dataset name (`uppercase`, `insecure_code`, ...) or a list of examples; `preset` one of
    `em-lora`, `rank1`, `full`; `overrides` any `TrainConfig` field. `cache_dir` is the
    plugin's cache root (`--em-cache-dir`): converted models live in its `models/`, and
    fine-tunes in its `finetune/` unless `finetune_dir` names another place. `progress`
    receives the log lines (default: stderr). See docs/finetune.md.
    """
    backend, owned = resolve_base(base, cache_dir=cache_dir, allow_pickle=allow_pickle)
    try:
        result = train_cached(
            backend, dataset, preset, kl_dataset=kl_dataset, init_adapter=init_adapter,
            cache_dir=cache_dir, finetune_dir=finetune_dir, progress=progress, setup=setup,
            key_extra=key_extra, **overrides,
        )
    finally:
        if owned:
            backend.close()
    return load_result(result, cache_dir=cache_dir, allow_pickle=allow_pickle)
