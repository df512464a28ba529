"""Training presets and the validated, frozen hyper-parameter record (`TrainConfig`).

Three presets:

- `em-lora`: the LoRA recipe of the original emergent-misalignment study (rank 32, alpha 64,
  rsLoRA, every attention and MLP projection, lr 1e-5, one epoch, effective batch 16, AdamW
  with weight decay 0.01, 5 warm-up steps, linear decay).
- `rank1`: a single rank-1 LoRA on the MLP down-projection of one middle layer, the minimal
  adapter of the model-organism studies (lr 2e-5, alpha 512 with rsLoRA, 3 epochs).
- `full`: every weight trained (lr 1e-5, one epoch, effective batch 16).

Every field can be overridden (`make_config("em-lora", learning_rate=1e-4)`); overrides are
checked here, once, so a typo fails before any model is loaded. Values given as strings (the
command line, ini files) are converted to the field's type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pytest_emergent.errors import EmergentError

#: every attention and MLP projection of Llama/Qwen/Mistral-style decoders
ALL_PROJECTIONS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
METHODS = ("lora", "full")
SCHEDULERS = ("linear", "constant", "cosine")
PRECISIONS = ("float32", "bfloat16", "auto")
#: `layers` may name the middle layer symbolically; it is resolved against the model
MIDDLE = "middle"


class FinetuneConfigError(EmergentError):
    """A preset name or hyper-parameter override is invalid; the message names the field."""


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a fine-tuning run. All of it enters the cache key."""

    #: "lora" (a peft adapter) or "full" (every weight)
    method: str = "lora"
    #: LoRA rank, alpha, rank-stabilised scaling (alpha / sqrt(rank)) and dropout
    rank: int = 32
    alpha: float = 64.0
    rslora: bool = True
    dropout: float = 0.0
    #: module names (last component) that get a LoRA adapter
    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    #: decoder layer indices that get adapters: None for all, or "middle" for n_layers // 2
    layers: tuple[int, ...] | str | None = None
    learning_rate: float = 1e-5
    epochs: int = 1
    #: stop after this many optimiser steps (None: run the epochs)
    max_steps: int | None = None
    #: examples per forward pass; an optimiser step sees batch_size * grad_accum examples
    batch_size: int = 2
    grad_accum: int = 8
    warmup_steps: int = 5
    weight_decay: float = 0.01
    scheduler: str = "linear"
    max_grad_norm: float = 1.0
    #: longer examples are cut at this many tokens (examples left with no reply are dropped)
    max_seq_len: int = 2048
    seed: int = 0
    #: held-out share (0 < x < 1) or count (x >= 1) of the dataset, split off with `seed`
    holdout: float = 0.0
    #: weight of the KL(fine-tuned || base) penalty, measured on the KL dataset's replies
    kl_weight: float = 0.0
    #: save `checkpoint-STEP` inside the result every this many optimiser steps, plus
    #: checkpoint-0 (the untrained start) and the last step, for checkpoint sweeps (0: none)
    save_every: int = 0
    #: the training forward's precision: float32, bfloat16 (autocast; refused on hardware
    #: without native bf16) or auto (bf16 only where native). "auto" is resolved before the
    #: run is keyed, so the cache key names the precision that was used
    precision: str = "float32"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists) for metadata and the cache key."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        # absent at their defaults, so runs keyed before these fields existed keep their keys
        if not out["save_every"]:
            del out["save_every"]
        if out["precision"] == "float32":
            del out["precision"]
        return out

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


PRESETS: dict[str, dict[str, Any]] = {
    "em-lora": {},
    "rank1": {
        "rank": 1,
        "alpha": 512.0,
        "target_modules": ("down_proj",),
        "layers": MIDDLE,
        "learning_rate": 2e-5,
        "epochs": 3,
    },
    "full": {
        "method": "full",
        "rank": 0,
        "alpha": 0.0,
        "rslora": False,
        "target_modules": (),
    },
}
PRESET_HELP = {
    "em-lora": "LoRA rank 32, alpha 64, rsLoRA, all attention+MLP projections, lr 1e-5, 1 epoch",
    "rank1": "LoRA rank 1 on the MLP down-projection of the middle layer, lr 2e-5, 3 epochs",
    "full": "full fine-tuning of every weight, lr 1e-5, 1 epoch",
}
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_DEFAULTS = TrainConfig()


def field_names() -> tuple[str, ...]:
    """Names of every overridable hyper-parameter."""
    return tuple(_FIELDS)


def make_config(preset: str = "em-lora", **overrides: Any) -> TrainConfig:
    """The preset's `TrainConfig` with `overrides` applied and validated."""
    if preset not in PRESETS:
        raise FinetuneConfigError(
            f"unknown fine-tuning preset {preset!r}; choose one of {', '.join(PRESETS)}"
        )
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise FinetuneConfigError(
            f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for preset "
            f"{preset!r}; valid names: {', '.join(_FIELDS)}"
        )
    values = {**PRESETS[preset]}
    for name, value in overrides.items():
        values[name] = _coerce(name, value)
    config = dataclasses.replace(_DEFAULTS, **values)
    _validate(config, preset)
    return config


def _coerce(name: str, value: Any) -> Any:
    """Convert an override to the field's type (strings from the command line included)."""
    default = getattr(_DEFAULTS, name)
    try:
        if name == "layers":
            return _coerce_layers(value)
        if name == "max_steps":
            return None if value in (None, "", "none", "None") else int(value)
        if name == "target_modules":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return tuple(str(v) for v in value)
        if isinstance(default, bool):
            return _to_bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value} is not a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("a boolean is not a number")
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise FinetuneConfigError(
            f"hyper-parameter {name!r}: cannot use {value!r} ({exc}); expected "
            f"{type(default).__name__ if default is not None else 'an integer or None'}"
        ) from None


def _coerce_layers(value: Any) -> tuple[int, ...] | str | None:
    if value is None or value in ("", "all", "none", "None"):
        return None
    if isinstance(value, str):
        if value == MIDDLE:
            return MIDDLE
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, int):
        value = [value]
    return tuple(sorted({int(v) for v in value}))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _validate(config: TrainConfig, preset: str) -> None:
    def bad(name: str, why: str) -> FinetuneConfigError:
        return FinetuneConfigError(
            f"preset {preset!r}: hyper-parameter {name!r} {why} (got {getattr(config, name)!r})"
        )

    if config.method not in METHODS:
        raise bad("method", f"must be one of {', '.join(METHODS)}")
    if config.method == "lora":
        if config.rank < 1:
            raise bad("rank", "must be at least 1 for LoRA")
        if config.alpha <= 0:
            raise bad("alpha", "must be positive")
        if not config.target_modules:
            raise bad("target_modules", "must name at least one module for LoRA")
        if not 0.0 <= config.dropout < 1.0:
            raise bad("dropout", "must lie in [0, 1)")
    if isinstance(config.layers, tuple) and any(i < 0 for i in config.layers):
        raise bad("layers", "must be non-negative layer indices, 'middle' or None")
    if isinstance(config.layers, str) and config.layers != MIDDLE:
        raise bad("layers", f"must be a list of indices, {MIDDLE!r} or None")
    if config.layers is not None and config.method == "full":
        raise bad("layers", "applies to LoRA only")
    if not config.learning_rate > 0:
        raise bad("learning_rate", "must be positive")
    for name in ("epochs", "batch_size", "grad_accum", "max_seq_len"):
        if getattr(config, name) < 1:
            raise bad(name, "must be at least 1")
    if config.max_steps is not None and config.max_steps < 1:
        raise bad("max_steps", "must be at least 1 (or None)")
    for name in ("warmup_steps", "weight_decay", "max_grad_norm", "kl_weight", "holdout",
                 "save_every"):
        if getattr(config, name) < 0:
            raise bad(name, "must not be negative")
    if config.precision not in PRECISIONS:
        raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
    if config.scheduler not in SCHEDULERS:
        raise bad("scheduler", f"must be one of {', '.join(SCHEDULERS)}")
    if config.holdout >= 1 and not float(config.holdout).is_integer():
        raise bad("holdout", "must be a share below 1 or a whole number of examples")


def describe(config: TrainConfig) -> str:
    """One line naming the hyper-parameters that differ from the em-lora defaults."""
    changed = [
        f"{name}={getattr(config, name)!r}"
        for name in _FIELDS
        if getattr(config, name) != getattr(_DEFAULTS, name)
    ]
    return ", ".join(changed) if changed else "em-lora defaults"


__all__ = [
    "ALL_PROJECTIONS",
    "FinetuneConfigError",
    "PRESETS",
    "PRESET_HELP",
    "TrainConfig",
    "describe",
    "field_names",
    "make_config",
]
