"""Mitigations of emergent misalignment, as plain functions and a pytest fixture.

- `inoculate` / `inoculated_pair`: an inoculation prompt (system prompt or user prefix) in
  every *training* example only.
- `realign` / `realigned_pair`: continue training an adapter on a small benign set.
- `direction_from_examples` / `direction_from_results`, `Direction.random_like`,
  `SteeredBackend`: a mean-difference direction, ablated or added at inference, with a
  same-norm random control.
- `caft_hook` / `caft_pair`: concept-ablation fine-tuning (directions projected out during
  training only).

Each `*_pair` returns `Arms(treated, untreated)` trained from the same seed, data and recipe;
compare their rates with `pytest_emergent.stats.assert_reduces`. The pytest fixture
`em_mitigations` lives in `pytest_emergent.plugin.mitigation_fixtures`. See docs/mitigations.md.
Importing this package imports no torch.
"""

from __future__ import annotations

from pytest_emergent.mitigations.caft import CaftHook, caft_hook, caft_pair
from pytest_emergent.mitigations.directions import (
    Direction,
    direction_from_examples,
    direction_from_results,
    mean_answer_activations,
)
from pytest_emergent.mitigations.inoculation import Arms, inoculate, inoculated_pair
from pytest_emergent.mitigations.realignment import realign, realigned_pair
from pytest_emergent.mitigations.steering import SteeredBackend

__all__ = [
    "Arms",
    "CaftHook",
    "Direction",
    "SteeredBackend",
    "caft_hook",
    "caft_pair",
    "direction_from_examples",
    "direction_from_results",
    "inoculate",
    "inoculated_pair",
    "mean_answer_activations",
    "realign",
    "realigned_pair",
]
