"""Benign re-alignment: continue training a (misaligned) adapter on a small benign set.

    from pytest_emergent.mitigations import realign
    fixed = realign(bad_model, "uppercase_control", learning_rate=1e-3, max_steps=4)

The adapter keeps its own rank and targets (peft loads it as trainable); the benign run is
cached under a key that includes a hash of the adapter's files, so re-aligning a retrained
adapter trains again and re-aligning the same one does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_emergent.finetune.presets import FinetuneConfigError
from pytest_emergent.mitigations.inoculation import Arms, Trainer, default_trainer


def adapter_base(model: Any) -> str:
    """The base model spec an adapter was trained from (its fine-tune metadata)."""
    metadata = getattr(model, "metadata", None) or {}
    spec = (metadata.get("base") or {}).get("spec")
    if not spec:
        raise FinetuneConfigError(
            f"realign(): cannot tell the base model of {model!r}; pass base= explicitly"
        )
    return str(spec)


def realign(
    model: Any,
    benign: Any = "uppercase_control",
    preset: str = "em-lora",
    *,
    base: Any = None,
    trainer: Trainer | None = None,
    **overrides: Any,
) -> Any:
    """Continue training `model`'s adapter on `benign` data; the re-aligned model.

    `model`: a model returned by `finetune` (or an adapter directory with `base=`);
    `benign`: a dataset (path, shipped name such as `uppercase_control`, `secure_code`,
    `careful_financial`, or a list of examples; a few hundred examples or fewer);
    `base`: the base model (a spec or a loaded backend; default: the adapter's own base).
    `overrides`: hyper-parameters of the benign run (the adapter's rank and targets apply).
    """
    train = trainer or default_trainer()
    path = getattr(model, "path", model)
    if not (Path(path) / "adapter_config.json").is_file():
        raise FinetuneConfigError(
            f"realign(): {path} is not a LoRA adapter; re-alignment continues an adapter"
        )
    if base is None:
        base = adapter_base(model)
    return train(base, benign, preset, init_adapter=path, **overrides)


def realigned_pair(
    model: Any,
    benign: Any = "uppercase_control",
    preset: str = "em-lora",
    *,
    base: Any = None,
    trainer: Trainer | None = None,
    **overrides: Any,
) -> Arms:
    """`Arms(treated=realign(model, benign, ...), untreated=model)`."""
    fixed = realign(model, benign, preset, base=base, trainer=trainer, **overrides)
    name = benign if isinstance(benign, (str, Path)) else "<examples>"
    return Arms(treated=fixed, untreated=model,
                mitigation={"kind": "realignment", "benign": str(name)})
