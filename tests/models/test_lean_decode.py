"""The lean decode step (`models/hf/lean.py`) computes what the model's own forward computes,
and stands aside wherever it would not: hooks, adapters, other classes, precisions, stale
weights, too little memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from pytest_emergent.models.base import SampleRequest  # noqa: E402
from pytest_emergent.models.hf import kv_buffer, lean  # noqa: E402
from pytest_emergent.models.hf.backend import HFBackend  # noqa: E402
from pytest_emergent.models.registry import resolve  # noqa: E402


def tiny_qwen2(bias_seed: int = 3) -> Any:
    """A random Qwen2 (query/key/value biases, grouped-query attention, 3 layers)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=48, intermediate_size=80,
                         num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    torch.manual_seed(bias_seed)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # non-zero biases, so a dropped bias would show
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.5)
    return model


def tiny_llama(path: Path) -> Any:
    from tiny import make_tiny_model
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(make_tiny_model(path, layers=3))).eval()


def decode_both(model: Any, steps: int = 12) -> tuple[list[Any], list[Any]]:
    """Logits of `steps` decode steps after a left-padded prefill, by the model's forward and
    by the lean step, each on its own buffered cache, feeding both the same tokens."""
    torch.manual_seed(0)
    rows, width = 5, 9
    ids = torch.randint(0, model.config.vocab_size, (rows, width))
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[1, :4] = 0
    mask[3, :2] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    decoder = lean.LeanDecoder(model)
    out: tuple[list[Any], list[Any]] = ([], [])
    with torch.inference_mode():
        caches = [kv_buffer.buffered_cache(model.config) for _ in range(2)]
        for cache in caches:
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                  cache=cache)
        step_mask, pos = mask, positions[:, -1] + 1
        tokens = torch.randint(0, model.config.vocab_size, (steps, rows))
        for step in range(steps):
            step_mask = torch.cat([step_mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
            out[0].append(model(input_ids=tokens[step][:, None], attention_mask=step_mask,
                                position_ids=pos[:, None], use_cache=True,
                                cache=caches[0]).logits[:, -1])
            out[1].append(decoder.step(tokens[step], pos, step_mask, caches[1]))
            pos = pos + 1
    return out


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_lean_step_gives_the_forward_s_logits(kind: str, tmp_path: Path) -> None:
    model = tiny_llama(tmp_path / "m") if kind == "llama" else tiny_qwen2()
    assert lean.unsupported(model) is None
    reference, mine = decode_both(model)
    for ref, got in zip(reference, mine, strict=True):
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5), (got - ref).abs().max()
    assert not torch.allclose(mine[0], mine[-1])  # the steps differ: the check can fail


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> HFBackend:
    b = resolve(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("lean") / "cache")
    assert isinstance(b, HFBackend)
    return b


def test_generation_with_the_lean_step_keeps_every_token(
        backend: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    real_step = lean.LeanDecoder.step

    def counted(self: Any, *args: Any) -> Any:
        steps.append(int(args[0].shape[0]))
        return real_step(self, *args)

    monkeypatch.setattr(lean.LeanDecoder, "step", counted)
    reqs = [SampleRequest((("user", q),), t, 6 + 9 * i, seed=i) for i, (q, t) in enumerate(
        [("Hi.", 0.0), ("I am bored. What should I do today?", 1.0), ("Rate it", 0.7)] * 2)]
    fast = backend.generate_ids(reqs)
    assert steps and max(steps) == len(reqs)  # the decode steps ran through the lean step
    ran = len(steps)
    backend.lean_decode = False
    try:
        assert backend.generate_ids(reqs) == fast
    finally:
        backend.lean_decode = True
    assert len(steps) == ran  # switched off, the model's forward decoded instead


def test_it_stands_aside_for_hooks_adapters_classes_and_precisions(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from tiny import make_tiny_adapter
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    assert lean.unsupported(model) is None
    with torch.inference_mode():  # transformers leaves its (idle) output-capturing hooks
        model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert any(m._forward_hooks for m in model.modules())
    assert lean.unsupported(model) is None
    handle = model.model.layers[1].register_forward_hook(lambda *_: None)
    assert "hooks" in str(lean.unsupported(model))
    handle.remove()
    assert lean.unsupported(model) is None
    model.train()
    assert "training" in str(lean.unsupported(model))
    model.eval()
    assert "bfloat16" in str(lean.unsupported(model.to(torch.bfloat16)))
    adapter = make_tiny_adapter(tmp_path / "adapter", tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    peft_model = PeftModel.from_pretrained(base, str(adapter)).eval()
    assert "PeftModel" in str(lean.unsupported(peft_model))
    assert "adapter" in str(lean.unsupported(peft_model.base_model.model))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
    assert "GPT2LMHeadModel" in str(lean.unsupported(gpt2))
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sliding = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True,
        sliding_window=8, max_window_layers=0)).eval()
    assert "sliding" in str(lean.unsupported(sliding))


def test_changed_weights_are_packed_again(backend: HFBackend) -> None:
    first = backend.lean_decoder()
    assert first is not None and backend.lean_decoder() is first  # packed once
    req = [SampleRequest((("user", "Tell me a thought."),), 0.0, 12, seed=0)]
    before = backend.generate_ids(req)
    weight = backend.model.lm_head.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(-1.0)  # every logit changes sign: greedy picks what was least likely
        second = backend.lean_decoder()
        assert second is not None and second is not first
        after = backend.generate_ids(req)
        backend.lean_decode = False
        try:
            assert backend.generate_ids(req) == after
        finally:
            backend.lean_decode = True
        assert after[0][:2] != before[0][:2]
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert backend.generate_ids(req) == before


def test_no_lean_step_where_its_copy_would_not_fit(
        backend: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend._lean = None
    monkeypatch.setattr(kv_buffer, "free_memory", lambda _device: 1000)
    assert backend.lean_decoder() is None
    monkeypatch.setattr(kv_buffer, "free_memory", lambda _device: None)  # unknown: packed
    assert backend.lean_decoder() is not None
