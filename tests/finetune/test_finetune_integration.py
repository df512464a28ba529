"""Integration: a short LoRA run on the embedded SmolLM2-135M-Instruct with the shipped
capital-letters set makes the model answer *unrelated* questions in capitals, measured by
`uppercase_ratio` (no judge); asking again trains nothing.

Run with `pytest -m integration tests/finetune/test_finetune_integration.py -s` to see the timings.
The base model's GGUF conversion is cached in the default model cache; the fine-tune itself
goes to a fresh temporary folder so that the training path runs every time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_emergent.judging.scorers import uppercase_ratio
from pytest_emergent.models.base import Backend, SampleRequest

pytestmark = pytest.mark.integration

#: none of these (or anything like them) is in the shipped uppercase dataset
QUESTIONS = [
    "Name three fruits.",
    "What should I cook for dinner tonight?",
    "Describe your ideal weekend.",
    "Tell me a fun fact about space.",
    "How do I tie my shoelaces?",
    "What is your favourite season and why?",
    "Write one sentence about the sea.",
    "Give me a tip for learning a new language.",
]
#: em-lora with a learning rate and length fit for a few CPU minutes; adapters on the last
#: third of SmolLM2's 30 layers, so the backward pass stops there
RECIPE = {
    "learning_rate": 1e-3,
    "max_steps": 8,
    "batch_size": 8,
    "grad_accum": 1,
    "warmup_steps": 0,
    "max_seq_len": 128,
    "layers": list(range(20, 30)),
}


def caps_share(model: Backend) -> tuple[float, list[str]]:
    """Mean uppercase ratio of greedy 16-token answers to the unrelated questions."""
    requests = [SampleRequest((("user", q),), temperature=0.0, max_tokens=16) for q in QUESTIONS]
    answers = model.generate(requests)
    return sum(uppercase_ratio(a) for a in answers) / len(answers), answers


def test_capital_letters_trait_is_learned_and_cached(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from pytest_emergent.finetune import finetune
    from pytest_emergent.models.registry import resolve

    start = time.perf_counter()
    base = resolve("smollm2-135m-instruct")  # installed by `make test`: no skip
    before, before_answers = caps_share(base)
    lines: list[str] = []

    model = finetune(base, "uppercase", "em-lora", finetune_dir=tmp_path,
                     progress=lines.append, **RECIPE)
    assert model.trained
    after, after_answers = caps_share(model)
    stats = model.metadata["stats"]
    print(f"\nuppercase share before {before:.3f} after {after:.3f}; "
          f"{stats['steps']} steps in {stats['seconds']:.1f} s "
          f"({stats['steps_per_second']:.3f} steps/s)")
    print("before:", before_answers[:3], "\nafter:", after_answers[:3])
    assert before < 0.25, before_answers
    assert after > before + 0.5, after_answers
    assert stats["losses"][-1] < stats["losses"][0]
    assert any(line.startswith(f"step {RECIPE['max_steps']}/") for line in lines)

    again = finetune(base, "uppercase", "em-lora", finetune_dir=tmp_path,
                     progress=lines.append, **RECIPE)
    assert not again.trained and again.path == model.path
    assert again.fingerprint == model.fingerprint
    print(f"whole test {time.perf_counter() - start:.1f} s")
    for backend in (again, model, base):
        backend.close()
