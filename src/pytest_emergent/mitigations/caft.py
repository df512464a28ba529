"""Concept-ablation fine-tuning (CAFT): project chosen directions out of the residual stream
*during training only*, so the fine-tune cannot learn to use them; inference runs the saved
adapter without any hook.

    from pytest_emergent.mitigations import caft_hook
    hook = caft_hook(direction)                    # or a list of directions
    model = finetune(base, "insecure_code", setup=hook.setup, key_extra=hook.key_extra)

or `caft_pair(base, dataset, direction, ...)` for treated/untreated arms. The hook plugs into
the fine-tune machinery's `setup=` hook (it receives the trainable model and returns the
teardown); `key_extra` carries the directions' content hashes so CAFT runs get their own
cache entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.mitigations.directions import Direction
from pytest_emergent.mitigations.inoculation import Arms, Trainer, default_trainer


@dataclass
class CaftHook:
    """Registers projection hooks for `directions` on the trainable model; `calls` counts
    hook invocations of the last training (for tests and progress)."""

    directions: Sequence[Direction]
    calls: int = 0
    _handles: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.directions:
            raise EmergentError("caft_hook() needs at least one direction")

    @property
    def key_extra(self) -> dict[str, Any]:
        return {"caft": [{"digest": d.digest, "layers": d.layers} for d in self.directions]}

    def setup(self, model: Any) -> Callable[[], None]:
        """Register the hooks on `model`; returns the teardown that removes them."""
        from pytest_emergent.mitigations.hooks import register

        self.calls = 0
        for direction in self.directions:
            self._handles.extend(register(model, direction.vectors, mode="ablate"))
        # count forward passes through the first hooked layer (the hooks themselves return
        # the edited tensor, so counting happens in a separate, read-only hook)
        from pytest_emergent.mitigations.hooks import decoder_layers

        first = min(self.directions[0].layers)

        def count(_module: Any, _inputs: Any, _output: Any) -> None:
            self.calls += 1

        self._handles.append(decoder_layers(model)[first].register_forward_hook(count))
        return self.teardown

    def teardown(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def caft_hook(directions: Direction | Sequence[Direction]) -> CaftHook:
    """A `CaftHook` for one direction or several (each projected out at its layers)."""
    items = [directions] if isinstance(directions, Direction) else list(directions)
    return CaftHook(items)


def caft_pair(
    base: Any,
    dataset: Any,
    directions: Direction | Sequence[Direction],
    preset: str = "em-lora",
    *,
    trainer: Trainer | None = None,
    **overrides: Any,
) -> Arms:
    """Fine-tune `base` on `dataset` plainly (`untreated`) and with the directions projected
    out during training (`treated`); same seed and recipe."""
    train = trainer or default_trainer()
    hook = caft_hook(directions)
    untreated = train(base, dataset, preset, **overrides)
    treated = train(base, dataset, preset, setup=hook.setup, key_extra=hook.key_extra,
                    **overrides)
    return Arms(treated=treated, untreated=untreated,
                mitigation={"kind": "caft", **hook.key_extra})
