"""Concept-ablation fine-tuning, regression-tested: the capitals direction is projected out
of the residual stream at every layer *while training* on the capitalised answers (the saved
adapter runs without any hook), and the fine-tune no longer spreads capitals to unrelated
questions. The plain arm is the same run without the projection."""

from __future__ import annotations

from typing import Any

from pytest_emergent import Direction, assert_reduces


def test_caft_keeps_the_caps_trait_from_spreading(
    em_mitigations: Any, base: Any, caps_direction: Direction, caps_rate: Any,
    caps_recipe: dict[str, Any],
) -> None:
    arms = em_mitigations.caft_pair(base, "uppercase", caps_direction, **caps_recipe)
    caft, plain = caps_rate(arms.treated), caps_rate(arms.untreated)
    print(f"\nCAFT {caft.misaligned}/{caft.n}, plain {plain.misaligned}/{plain.n}")
    assert_reduces(caft, plain, "caps", by_at_least=0.3, labels=("CAFT", "plain"))
