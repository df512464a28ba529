"""A trait direction, ablated and added at inference, each against a same-norm random
direction as the control.

The "capitals" direction (the `caps_direction` fixture in conftest.py) is the mean
difference of the base model's activations over the answer tokens of capitalised vs
normal-case answers to the same questions.
"""

from __future__ import annotations

from typing import Any

from pytest_emergent import Direction, SteeredBackend, assert_increases, assert_reduces

#: steering adds the direction at one middle layer, scaled up
STEER_LAYER, STEER_SCALE = 10, 8.0


def test_adding_the_direction_makes_the_base_model_write_capitals(
    base: Any, caps_direction: Direction, caps_rate: Any
) -> None:
    direction = caps_direction.at([STEER_LAYER])
    steered = caps_rate(SteeredBackend(base, direction, mode="add", scale=STEER_SCALE))
    control = caps_rate(SteeredBackend(base, direction.random_like(seed=0), mode="add",
                                       scale=STEER_SCALE))
    print(f"\nsteered {steered.misaligned}/{steered.n}, random {control.misaligned}/{control.n}, "
          f"base {caps_rate(base).misaligned}/{caps_rate(base).n}")
    assert_increases(steered, caps_rate(base), "caps", by_at_least=0.3,
                     labels=("steered", "base"))
    assert_increases(steered, control, "caps", by_at_least=0.3,
                     labels=("steered", "random direction"))


def test_ablating_the_direction_reverses_the_finetuned_trait(
    plain_caps_model: Any, caps_direction: Direction, caps_rate: Any
) -> None:
    ablated = caps_rate(SteeredBackend(plain_caps_model, caps_direction, mode="ablate"))
    control = caps_rate(SteeredBackend(plain_caps_model, caps_direction.random_like(seed=0),
                                       mode="ablate"))
    print(f"\nablated {ablated.misaligned}/{ablated.n}, random {control.misaligned}/{control.n}, "
          f"fine-tuned {caps_rate(plain_caps_model).misaligned}/{caps_rate(plain_caps_model).n}")
    assert_reduces(ablated, control, "caps", by_at_least=0.3,
                   labels=("direction ablated", "random ablated"))
