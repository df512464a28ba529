"""Presets, overrides and their validation; the fine-tune modules import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_emergent.finetune.presets import (
    ALL_PROJECTIONS,
    PRESETS,
    FinetuneConfigError,
    describe,
    field_names,
    make_config,
)


def test_em_lora_is_the_published_recipe() -> None:
    config = make_config("em-lora")
    assert (config.method, config.rank, config.alpha, config.rslora) == ("lora", 32, 64.0, True)
    assert config.target_modules == ALL_PROJECTIONS
    assert (config.learning_rate, config.epochs, config.effective_batch) == (1e-5, 1, 16)
    assert config.layers is None
    assert describe(config) == "em-lora defaults"


def test_rank1_targets_one_middle_down_projection() -> None:
    config = make_config("rank1")
    assert (config.rank, config.target_modules, config.layers) == (1, ("down_proj",), "middle")


def test_full_trains_every_weight() -> None:
    config = make_config("full")
    assert config.method == "full"
    assert config.target_modules == ()


def test_every_field_is_overridable_and_strings_are_converted() -> None:
    config = make_config(
        "em-lora", learning_rate="1e-4", rank="8", rslora="false", layers="3,1",
        target_modules="q_proj, v_proj", max_steps="12", holdout="0.1",
    )
    assert config.learning_rate == 1e-4 and config.rank == 8 and config.rslora is False
    assert config.layers == (1, 3)
    assert config.target_modules == ("q_proj", "v_proj")
    assert config.max_steps == 12 and config.holdout == 0.1
    assert make_config("rank1", layers=[5]).layers == (5,)
    assert make_config("rank1", layers=None).layers is None
    assert "learning_rate=0.0001" in describe(config)
    assert set(PRESETS) == {"em-lora", "rank1", "full"}


@pytest.mark.parametrize(
    ("preset", "overrides", "fragment"),
    [
        ("nope", {}, "unknown fine-tuning preset 'nope'"),
        ("em-lora", {"lr": 1e-4}, "unknown hyper-parameter(s) 'lr'"),
        ("em-lora", {"rank": 0}, "'rank' must be at least 1"),
        ("em-lora", {"learning_rate": -1}, "'learning_rate' must be positive"),
        ("em-lora", {"rank": "many"}, "hyper-parameter 'rank': cannot use 'many'"),
        ("em-lora", {"scheduler": "step"}, "'scheduler' must be one of"),
        ("em-lora", {"layers": "top"}, "'layers'"),
        ("full", {"layers": [1]}, "applies to LoRA only"),
        ("em-lora", {"holdout": 2.5}, "'holdout'"),
        ("em-lora", {"rslora": "maybe"}, "expected true or false"),
    ],
)
def test_bad_values_name_the_field(preset: str, overrides: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(FinetuneConfigError) as info:
        make_config(preset, **overrides)
    assert fragment in str(info.value)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(FinetuneConfigError) as info:
        make_config("em-lora", epoch=2)
    for name in field_names():
        assert name in str(info.value)


def test_importing_the_fixture_module_stays_light() -> None:
    code = (
        "import sys, pytest_emergent.finetune, pytest_emergent.plugin.finetune_fixtures, "
        "pytest_emergent.finetune.__main__\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
