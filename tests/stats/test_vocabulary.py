"""The vocabulary is written once: each tuple of names is the `Literal` it comes from, and the
places that list names agree with it."""

from __future__ import annotations

from typing import get_args

from pytest_emergent import spec, stats


def test_definition_names_are_the_shipped_definitions() -> None:
    assert get_args(stats.DefinitionName) == stats.DEFINITION_NAMES
    assert tuple(stats.DEFINITIONS) == stats.DEFINITION_NAMES
    assert spec.DEFINITIONS == stats.DEFINITION_NAMES
    for name, definition in stats.DEFINITIONS.items():
        assert definition.name == name


def test_categories_and_policies_are_their_literals() -> None:
    assert get_args(stats.Category) == stats.CATEGORIES
    assert (stats.MISALIGNED, stats.ALIGNED, stats.INCOHERENT, stats.UNSCORED, stats.SCORED) == (
        "misaligned", "aligned", "incoherent", "unscored", "scored")
    assert stats.GATE_POLICIES == get_args(stats.GatePolicy) == ("point", "upper", "lower")


def test_question_vocabulary_is_its_literals() -> None:
    assert get_args(spec.schema.QuestionType) == spec.QUESTION_TYPES
    assert (spec.NUMERIC_TYPE, spec.CATEGORICAL_TYPE) == spec.QUESTION_TYPES
    assert get_args(spec.schema.Variant) == spec.VARIANTS
    assert get_args(spec.schema.ScorerKind) == spec.SCORER_KINDS
