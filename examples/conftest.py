"""Shared pieces of the worked mitigation examples (run with `pytest examples/`).

Everything runs on the embedded SmolLM2-135M-Instruct on CPU. The fine-tunes are cached
(`--em-cache-dir`, else ~/.cache/pytest-emergent), so only the first session trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_emergent import (
    Direction,
    QuestionFile,
    RateSummary,
    as_summary,
    direction_from_examples,
    load_dataset,
    load_questions,
    run_questions,
)
from pytest_emergent.errors import MissingDependencyError

#: caps.yaml is the examples' question set, read by the tests themselves; it is not a gate
collect_ignore = ["caps.yaml"]

BASE = "smollm2-135m-instruct"
#: em-lora on the last third of SmolLM2's 30 layers (the backward pass stops there), with
#: a learning rate and length that make the capital-letters trait spread in a CPU minute
RECIPE: dict[str, Any] = {
    "learning_rate": 6e-4,
    "max_steps": 12,
    "batch_size": 8,
    "grad_accum": 1,
    "warmup_steps": 0,
    "max_seq_len": 128,
    "layers": list(range(20, 30)),
}


def pytest_configure(config: pytest.Config) -> None:
    """Provide the `em_mitigations` fixture unless the plugin already does."""
    from pytest_emergent.plugin import mitigation_fixtures as fixture

    manager = config.pluginmanager
    if not manager.is_registered(fixture) and not manager.has_plugin("emergent-mitigations"):
        manager.register(fixture, "emergent-mitigations")


@pytest.fixture(scope="session")
def caps_recipe() -> dict[str, Any]:
    """The fine-tune hyper-parameters every example arm shares."""
    return dict(RECIPE)


@pytest.fixture(scope="session")
def base(finetune: Any) -> Any:
    """The embedded model, loaded once per session (skips if it is not installed)."""
    try:
        return finetune.base(BASE)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def caps_questions() -> QuestionFile:
    """20 everyday questions x 2 samples at temperature 1, scored by `uppercase_ratio`."""
    return load_questions(Path(__file__).with_name("caps.yaml"))


@pytest.fixture(scope="session")
def plain_caps_model(em_mitigations: Any, base: Any) -> Any:
    """The untreated arm: fine-tuned on `uppercase` with nothing else (shared by examples)."""
    return em_mitigations.train(base, "uppercase", **RECIPE)


#: examples of each kind used to estimate the caps direction
N_DIRECTION_EXAMPLES = 16


@pytest.fixture(scope="session")
def caps_direction(base: Any) -> Direction:
    """Mean activation difference, per layer, over the answer tokens of capitalised vs
    normal-case answers to the same questions (labels given by the two shipped datasets;
    none of their questions is in caps.yaml), read from the base model."""
    caps = load_dataset("uppercase").examples[:N_DIRECTION_EXAMPLES]
    normal = load_dataset("uppercase_control").examples[:N_DIRECTION_EXAMPLES]
    pairs = [[(ex.messages[:-1], ex.messages[-1][1]) for ex in data] for data in (caps, normal)]
    return direction_from_examples(base, pairs[0], pairs[1], name="caps-minus-normal")


@pytest.fixture(scope="session")
def caps_rate(caps_questions: QuestionFile) -> Any:
    """`caps_rate(model)` -> the share of answers written mostly in capitals (memoised per
    model fingerprint, so an arm used by several examples is evaluated once)."""
    seen: dict[str, RateSummary] = {}

    def rate(model: Any) -> RateSummary:
        if model.fingerprint not in seen:
            seen[model.fingerprint] = as_summary(run_questions(caps_questions, model))
        return seen[model.fingerprint]

    return rate
