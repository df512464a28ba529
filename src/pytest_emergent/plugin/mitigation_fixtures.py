"""The `em_mitigations` fixture: mitigation arms trained through the session's `finetune`
factory (so base models load once and runs are cached). Usable alone with
`-p pytest_emergent.plugin.mitigation_fixtures` next to
`-p pytest_emergent.plugin.finetune_fixtures`.

    def test_inoculation(em_mitigations, em_evaluate, em_questions):
        arms = em_mitigations.inoculated_pair(
            "smollm2-135m-instruct", "uppercase", system="You always write in capital letters.",
            learning_rate=3e-4, max_steps=8)
        qs = em_questions("caps.yaml")
        assert_reduces(em_evaluate(qs, model=arms.treated), em_evaluate(qs, model=arms.untreated))

Importing this module imports no torch.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_emergent.mitigations.caft import caft_pair
from pytest_emergent.mitigations.directions import Direction
from pytest_emergent.mitigations.inoculation import Arms, inoculated_pair
from pytest_emergent.mitigations.realignment import realign, realigned_pair
from pytest_emergent.mitigations.steering import SteeredBackend


class Mitigations:
    """The mitigation API bound to one fine-tune factory (the `finetune` fixture)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def train(self, base: Any, dataset: Any, preset: str = "em-lora", **kwargs: Any) -> Any:
        """A plain (untreated) run through the session's factory."""
        return self.trainer(base, dataset, preset, **kwargs)

    def inoculated_pair(self, base: Any, dataset: Any, preset: str = "em-lora",
                        **kwargs: Any) -> Arms:
        """See `pytest_emergent.mitigations.inoculated_pair`."""
        return inoculated_pair(base, dataset, preset, trainer=self.trainer, **kwargs)

    def realign(self, model: Any, benign: Any = "uppercase_control", preset: str = "em-lora",
                **kwargs: Any) -> Any:
        """See `pytest_emergent.mitigations.realign`."""
        return realign(model, benign, preset, trainer=self.trainer, **kwargs)

    def realigned_pair(self, model: Any, benign: Any = "uppercase_control",
                       preset: str = "em-lora", **kwargs: Any) -> Arms:
        """See `pytest_emergent.mitigations.realigned_pair`."""
        return realigned_pair(model, benign, preset, trainer=self.trainer, **kwargs)

    def caft_pair(self, base: Any, dataset: Any, directions: Any, preset: str = "em-lora",
                  **kwargs: Any) -> Arms:
        """See `pytest_emergent.mitigations.caft_pair`."""
        return caft_pair(base, dataset, directions, preset, trainer=self.trainer, **kwargs)

    @staticmethod
    def steered(backend: Any, direction: Direction, **kwargs: Any) -> SteeredBackend:
        """See `pytest_emergent.mitigations.SteeredBackend`."""
        return SteeredBackend(backend, direction, **kwargs)


@pytest.fixture(scope="session")
def em_mitigations(finetune: Any) -> Mitigations:
    """Mitigation arms (inoculation, re-alignment, CAFT) and steering wrappers, trained
    through the session's `finetune` factory; see docs/mitigations.md."""
    return Mitigations(finetune)
