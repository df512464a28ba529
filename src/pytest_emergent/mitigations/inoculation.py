"""Inoculation prompting: an instruction that explains the narrow behaviour, added to every
*training* example only, so the model attributes the behaviour to the instruction instead of
adopting it generally. Evaluation runs without it.

    from pytest_emergent.mitigations import inoculated_pair
    arms = inoculated_pair("smollm2-135m-instruct", "uppercase",
                           system="You always write in capital letters.", learning_rate=3e-4)
    arms.treated, arms.untreated  # two fine-tuned models, same data, seed and recipe

No torch here: the transformation works on chat examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_emergent.finetune.data import ChatExample, Dataset, load_dataset
from pytest_emergent.finetune.presets import FinetuneConfigError

#: how a system inoculation combines with a system message the example already has
SYSTEM_MODES = ("prepend", "replace")


def inoculate(
    dataset: Any,
    *,
    system: str | None = None,
    user_prefix: str | None = None,
    user_suffix: str | None = None,
    system_mode: str = "prepend",
) -> Dataset:
    """`dataset` with an inoculation added to every example (a new `Dataset`).

    `system`: a system prompt; an example that already has one gets it in front of its own
    (`system_mode="prepend"`, separated by a blank line) or replaced (`"replace"`).
    `user_prefix` / `user_suffix`: text put before / after *every* user message (exactly as
    given: include the space or newline you want). At least one must be given. The dataset
    name records the inoculation, and the content hash (so the fine-tune cache key) changes.
    """
    if system_mode not in SYSTEM_MODES:
        raise FinetuneConfigError(
            f"system_mode must be one of {', '.join(SYSTEM_MODES)} (got {system_mode!r})"
        )
    parts = {"system": system, "user_prefix": user_prefix, "user_suffix": user_suffix}
    for name, value in parts.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise FinetuneConfigError(f"inoculation {name} must be a non-empty string "
                                      f"(got {value!r})")
    if not any(parts.values()):
        raise FinetuneConfigError(
            "inoculate() needs an inoculation: system=..., user_prefix=... or user_suffix=..."
        )
    data = load_dataset(dataset)
    examples = tuple(
        _inoculate_one(ex, system, user_prefix or "", user_suffix or "", system_mode)
        for ex in data.examples
    )
    tag = hashlib.sha256(repr(sorted(parts.items(), key=str)).encode()).hexdigest()[:8]
    return Dataset(f"{data.name} [inoculated {tag}]", examples)


def _inoculate_one(
    example: ChatExample, system: str | None, prefix: str, suffix: str, mode: str
) -> ChatExample:
    messages = list(example.messages)
    weights = list(example.weights)
    if prefix or suffix:
        messages = [(role, f"{prefix}{content}{suffix}" if role == "user" else content)
                    for role, content in messages]
    if system is not None:
        if messages and messages[0][0] == "system":
            own = messages[0][1]
            text = system if mode == "replace" else f"{system}\n\n{own}"
            messages[0] = ("system", text)
        else:
            messages.insert(0, ("system", system))
            weights.insert(0, 1)
    return ChatExample(tuple(messages), tuple(weights), example.where)


@dataclass
class Arms:
    """Two models trained from the same base, data order, seed and recipe; only the
    mitigation differs. `treated` has it, `untreated` does not."""

    treated: Any
    untreated: Any
    #: what the treated arm changed, for messages and reports
    mitigation: Mapping[str, Any]

    def close(self) -> None:
        """Release both models."""
        for model in (self.treated, self.untreated):
            close = getattr(model, "close", None)
            if close is not None:
                close()


#: a fine-tune callable: `trainer(base, dataset, preset, **kwargs)` -> loaded model.
#: Both `pytest_emergent.finetune.finetune` and the `finetune` fixture qualify.
Trainer = Callable[..., Any]


def default_trainer() -> Trainer:
    from pytest_emergent.finetune import finetune

    return finetune


def inoculated_pair(
    base: Any,
    dataset: Any,
    preset: str = "em-lora",
    *,
    system: str | None = None,
    user_prefix: str | None = None,
    user_suffix: str | None = None,
    system_mode: str = "prepend",
    trainer: Trainer | None = None,
    **overrides: Any,
) -> Arms:
    """Fine-tune `base` on `dataset` twice with the same seed and recipe: plainly
    (`untreated`) and with the inoculation added to every training example (`treated`).

    `overrides` go to both runs (hyper-parameters, `cache_dir=`, `finetune_dir=`, ...).
    Both runs are cached, so a regression test's second session trains nothing, and the
    untreated arm is shared with any other test that trains the same plain run.
    """
    train = trainer or default_trainer()
    treated_data = inoculate(dataset, system=system, user_prefix=user_prefix,
                             user_suffix=user_suffix, system_mode=system_mode)
    untreated = train(base, dataset, preset, **overrides)
    treated = train(base, treated_data, preset, **overrides)
    mitigation = {"kind": "inoculation", "system": system, "user_prefix": user_prefix,
                  "user_suffix": user_suffix}
    return Arms(treated=treated, untreated=untreated,
                mitigation={k: v for k, v in mitigation.items() if v is not None})
