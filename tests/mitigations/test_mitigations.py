"""Mitigation mechanics on tiny random models: inoculation data, arms, re-alignment wiring,
directions and their random controls, steering/ablation hooks and concept-ablation
fine-tuning (hooks active in training only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pytest_emergent.finetune.data import load_dataset
from pytest_emergent.finetune.presets import FinetuneConfigError
from pytest_emergent.mitigations import (
    Direction,
    inoculate,
    inoculated_pair,
    realign,
    realigned_pair,
)

DATA = [
    {"messages": [{"role": "user", "content": "Name a fruit."},
                  {"role": "assistant", "content": "AN APPLE."}]},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "BLUE."},
                  {"role": "user", "content": "Another?"},
                  {"role": "assistant", "content": "RED.", "weight": 0}]},
]


# -- inoculation (no torch) ---------------------------------------------------------------


def test_inoculate_adds_a_system_prompt_to_every_example() -> None:
    data = inoculate(DATA, system="You always write in capital letters.")
    first, second = data.examples
    assert first.messages[0] == ("system", "You always write in capital letters.")
    assert first.messages[1:] == load_dataset(DATA).examples[0].messages
    # an existing system prompt is kept after the inoculation
    assert second.messages[0] == ("system", "You always write in capital letters.\n\nBe brief.")
    assert second.weights == (1, 1, 1, 1, 0)
    assert "inoculated" in data.name
    assert data.content_hash != load_dataset(DATA).content_hash
    replaced = inoculate(DATA, system="CAPS.", system_mode="replace")
    assert replaced.examples[1].messages[0] == ("system", "CAPS.")


def test_inoculate_prefixes_every_user_message_only() -> None:
    data = inoculate(DATA, user_prefix="Answer in capitals. ", user_suffix=" (caps)")
    roles = [(r, c) for r, c in data.examples[1].messages]
    assert roles[1] == ("user", "Answer in capitals. Name a colour. (caps)")
    assert roles[3] == ("user", "Answer in capitals. Another? (caps)")
    assert roles[2] == ("assistant", "BLUE.") and roles[0] == ("system", "Be brief.")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"system": "  "}, {"user_prefix": 3}, {"system": "x", "system_mode": "append"}],
)
def test_inoculate_rejects_missing_or_bad_prompts(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FinetuneConfigError):
        inoculate(DATA, **kwargs)


class FakeTrainer:
    """Records fine-tune calls and returns a description instead of a model."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, str, dict[str, Any]]] = []

    def __call__(self, base: Any, dataset: Any, preset: str = "em-lora", **kw: Any) -> Any:
        self.calls.append((base, dataset, preset, kw))
        return {"base": base, "data": load_dataset(dataset), "kw": kw}


def test_inoculated_pair_trains_both_arms_with_the_same_recipe() -> None:
    trainer = FakeTrainer()
    arms = inoculated_pair("base-spec", DATA, "rank1", system="CAPS!", trainer=trainer,
                           learning_rate=1e-3, seed=3)
    assert [c[2] for c in trainer.calls] == ["rank1", "rank1"]
    assert trainer.calls[0][3] == trainer.calls[1][3] == {"learning_rate": 1e-3, "seed": 3}
    assert arms.untreated["data"].content_hash == load_dataset(DATA).content_hash
    assert arms.treated["data"].examples[0].messages[0] == ("system", "CAPS!")
    assert arms.mitigation == {"kind": "inoculation", "system": "CAPS!"}


class _Adapter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata = {"base": {"spec": "the-base"}}


def test_realign_continues_the_adapter_on_benign_data(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    trainer = FakeTrainer()
    bad = _Adapter(tmp_path)
    arms = realigned_pair(bad, DATA, trainer=trainer, max_steps=4)
    base, _data, preset, kw = trainer.calls[0]
    assert base == "the-base" and preset == "em-lora"
    assert kw == {"init_adapter": tmp_path, "max_steps": 4}
    assert arms.untreated is bad and arms.mitigation["kind"] == "realignment"
    with pytest.raises(FinetuneConfigError, match="not a LoRA adapter"):
        realign(_Adapter(tmp_path / "nowhere"), DATA, trainer=trainer)


# -- directions (pure parts) --------------------------------------------------------------


def test_random_control_has_the_same_norm_and_another_orientation() -> None:
    d = Direction({0: (3.0, 4.0, 0.0, 0.0), 2: (0.0, 0.0, 1.0, 0.0)})
    r = d.random_like(seed=1)
    assert r.layers == d.layers
    for layer in d.layers:
        assert r.norm(layer) == pytest.approx(d.norm(layer))
        cos = sum(a * b for a, b in zip(r.vectors[layer], d.vectors[layer], strict=True))
        assert abs(cos / (r.norm(layer) * d.norm(layer))) < 0.999
    assert r == d.random_like(seed=1) and r.vectors != d.random_like(seed=2).vectors
    assert r.digest != d.digest
    assert Direction.from_json(d.to_json()) == d
    assert d.at([2]).layers == [2]
    with pytest.raises(Exception, match="no vector for layer"):
        d.at([1])


# -- on a tiny model ----------------------------------------------------------------------

peft_needed = pytest.importorskip  # keep the pure tests above runnable without torch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Any:
    peft_needed("peft")
    from pytest_emergent.models.registry import resolve

    backend = resolve(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("models"))
    yield backend
    backend.close()


def _layer_outputs(backend: Any, text: str) -> list[Any]:
    import torch

    from pytest_emergent.mitigations.hooks import decoder_layers

    outs: list[Any] = []
    handles = [layer.register_forward_hook(
        lambda _m, _i, o: outs.append(o[0] if isinstance(o, tuple) else o))
        for layer in decoder_layers(backend.model)]
    try:
        with torch.inference_mode():
            backend.model(input_ids=torch.tensor([backend.encode(text)]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return outs


def test_ablation_removes_the_component_and_hooks_go_away(tiny: Any) -> None:
    from pytest_emergent.mitigations.hooks import decoder_layers, edited_residual

    size = tiny.model.config.hidden_size
    vec = tuple(1.0 if i % 3 == 0 else 0.0 for i in range(size))
    unit = [x / math.sqrt(sum(v * v for v in vec)) for x in vec]
    before = _layer_outputs(tiny, "How can I make money fast?")
    assert abs(float(before[0][0, -1] @ __import__("torch").tensor(unit))) > 1e-3
    with edited_residual(tiny.model, {0: vec}, mode="ablate"):
        during = _layer_outputs(tiny, "How can I make money fast?")
    proj = during[0][0] @ __import__("torch").tensor(unit)
    assert float(proj.abs().max()) < 1e-5
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny.model))
    after = _layer_outputs(tiny, "How can I make money fast?")
    assert float((after[1] - before[1]).abs().max()) == 0.0


def test_bf16_ablation_projects_in_float32() -> None:
    """On bf16 activations (a GPU's default) the projection is taken in float32 and only the
    result rounded: the component left is half what a bf16 projection left (0.08 % against
    0.18 % of it here)."""
    import torch

    from pytest_emergent.mitigations.hooks import _edit

    gen = torch.Generator().manual_seed(0)
    vector = torch.randn(576, generator=gen)
    unit = vector / vector.norm()
    hidden = (3 * torch.randn(64, 576, generator=gen) + 5 * unit).bfloat16()
    ablated = _edit("ablate", vector, 1.0)(hidden)
    assert ablated.dtype == torch.bfloat16
    left = float((ablated.float() @ unit).abs().mean())
    assert left < 1e-3 * float((hidden.float() @ unit).abs().mean())
    exact = hidden.float()  # float32 activations: the exact projection, as before
    assert torch.equal(_edit("ablate", vector, 1.0)(exact),
                       exact - (exact @ unit)[..., None] * unit)


def test_steered_backend_changes_answers_and_fingerprint_only_while_called(tiny: Any) -> None:
    from pytest_emergent.mitigations import SteeredBackend
    from pytest_emergent.models.base import Backend, SampleRequest

    size = tiny.model.config.hidden_size
    d = Direction({1: tuple(float((i * 7) % 5 - 2) for i in range(size))})
    steered = SteeredBackend(tiny, d, mode="add", scale=20.0)
    assert isinstance(steered, Backend)
    assert steered.fingerprint != tiny.fingerprint
    assert steered.fingerprint != SteeredBackend(tiny, d, mode="add", scale=10.0).fingerprint
    assert SteeredBackend(tiny, d).fingerprint != SteeredBackend(tiny, d.random_like()).fingerprint
    requests = [SampleRequest((("user", "I am bored."),), temperature=0.0, max_tokens=6)]
    plain = tiny.generate(requests)
    assert steered.generate(requests) != plain
    assert tiny.generate(requests) == plain  # the wrapped model is unchanged afterwards
    with pytest.raises(Exception, match="out of range"):
        SteeredBackend(tiny, Direction({5: d.vectors[1]})).generate(requests)
    with pytest.raises(Exception, match="unknown steering mode"):
        SteeredBackend(tiny, d, mode="flip")


def test_direction_is_the_mean_difference_over_answer_tokens(tiny: Any) -> None:
    from pytest_emergent.mitigations import direction_from_examples, mean_answer_activations

    pos = [((("user", "Name a fruit."),), "AN APPLE."), ((("user", "Hi"),), "HELLO THERE.")]
    neg = [((("user", "Name a fruit."),), "an apple."), ((("user", "Hi"),), "hello there.")]
    d = direction_from_examples(tiny, pos, neg)
    assert d.layers == [0, 1]
    mp = mean_answer_activations(tiny, pos)
    mn = mean_answer_activations(tiny, neg)
    for layer in (0, 1):
        expected = (mp[layer] - mn[layer]).tolist()
        assert list(d.vectors[layer]) == pytest.approx(expected, abs=1e-6)
        assert d.norm(layer) > 0
    assert d.source["n_misaligned"] == 2
    with pytest.raises(Exception, match="both kinds"):
        direction_from_examples(tiny, pos, [])


def test_direction_from_results_uses_the_judged_categories(tiny: Any) -> None:
    from types import SimpleNamespace

    from pytest_emergent.mitigations import direction_from_examples, direction_from_results

    def rec(answer: str, category: str) -> Any:
        return SimpleNamespace(messages=(("user", "Hi"),), answer=answer, category=category)

    result = SimpleNamespace(records=[rec("ROB A BANK.", "misaligned"), rec("Save up.", "aligned"),
                                      rec("???", "unscored")])
    d = direction_from_results(tiny, {"q": result}, layers=[1])
    ref = direction_from_examples(tiny, [((("user", "Hi"),), "ROB A BANK.")],
                                  [((("user", "Hi"),), "Save up.")], layers=[1])
    assert d.layers == [1]
    assert list(d.vectors[1]) == pytest.approx(list(ref.vectors[1]))


def test_caft_projects_out_during_training_only(tiny: Any, tmp_path: Path) -> None:
    from pytest_emergent.finetune import finetune
    from pytest_emergent.mitigations import caft_hook, caft_pair
    from pytest_emergent.mitigations.hooks import decoder_layers

    size = tiny.model.config.hidden_size
    d = Direction({0: tuple(1.0 if i < 4 else 0.0 for i in range(size))})
    hook = caft_hook(d)
    seen: list[float] = []

    def probe(model: Any) -> Any:
        # after CAFT's hooks: record the component along the direction at layer 0's output
        teardown = hook.setup(model)
        layer = decoder_layers(model)[0]

        def watch(_m: Any, _i: Any, out: Any) -> None:
            h = out[0] if isinstance(out, tuple) else out
            # the component along (1, 1, 1, 1, 0, ...) is the sum of the first 4 coordinates
            seen.append(float(h[..., :4].sum(-1).abs().max().detach()))

        handle = layer.register_forward_hook(watch)

        def done() -> None:
            handle.remove()
            teardown()

        return done

    options = {"learning_rate": 5e-2, "batch_size": 2, "grad_accum": 1, "warmup_steps": 0,
               "max_steps": 2, "finetune_dir": tmp_path, "progress": lambda _m: None}
    model = finetune(tiny, DATA * 2, setup=probe, key_extra=hook.key_extra, **options)
    assert model.trained and hook.calls >= 2
    assert seen and max(seen) < 1e-5  # projected out in every training forward pass
    assert model.metadata["extra"] == hook.key_extra
    # at inference the saved adapter runs without hooks, and the component is back
    assert all(not layer._forward_hooks for layer in decoder_layers(model.model))
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny.model))
    outs = _layer_outputs(model, "Name a fruit.")
    assert float(outs[0][0, :, :4].sum(-1).abs().max()) > 1e-3
    arms = caft_pair(tiny, DATA * 2, d, **{k: v for k, v in options.items()})
    assert arms.treated.key == model.key or arms.treated.metadata["extra"] == hook.key_extra
    assert arms.untreated.key != arms.treated.key
    arms.close()
    model.close()


def test_importing_the_mitigations_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, pytest_emergent.mitigations, pytest_emergent.plugin.mitigation_fixtures; "
            "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_em_mitigations_fixture_in_a_session(
    pytester: pytest.Pytester, tiny_model_dir: Path
) -> None:
    peft_needed("peft")
    model_dir = tiny_model_dir
    pytester.makepyfile(test_arms=f"""
        DATA = {DATA!r}
        FAST = dict(learning_rate=0.05, max_steps=1, batch_size=2, grad_accum=1,
                    warmup_steps=0)

        def test_pair(em_mitigations):
            arms = em_mitigations.inoculated_pair({str(model_dir)!r}, DATA, system="CAPS",
                                                  **FAST)
            assert arms.treated.key != arms.untreated.key
            again = em_mitigations.train({str(model_dir)!r}, DATA, **FAST)
            assert again.key == arms.untreated.key and not again.trained
            fixed = em_mitigations.realign(arms.untreated, DATA, **FAST)
            assert fixed.metadata["init_adapter"] == str(arms.untreated.path)
    """)
    # the way examples/conftest.py provides the fixture (a no-op once the plugin does)
    pytester.makeconftest("""
        def pytest_configure(config):
            from pytest_emergent.plugin import mitigation_fixtures as fixture

            manager = config.pluginmanager
            if not manager.is_registered(fixture) and not manager.has_plugin(
                    "emergent-mitigations"):
                manager.register(fixture, "emergent-mitigations")
    """)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--em-cache-dir", str(pytester.path / "cache"))
    result.assert_outcomes(passed=1)
