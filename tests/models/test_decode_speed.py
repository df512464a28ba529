"""The decode loop's speed measures keep its results: one prefill per distinct prompt, a
key/value cache grown in buffers, and the two-level inverse-CDF sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from pytest_emergent.models.base import SampleRequest  # noqa: E402
from pytest_emergent.models.hf import backend as hf
from pytest_emergent.models.hf import kv_buffer  # noqa: E402
from pytest_emergent.models.hf.backend import HFBackend, sample_tokens  # noqa: E402
from pytest_emergent.models.registry import resolve  # noqa: E402


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> HFBackend:
    d = tmp_path_factory.mktemp("tiny")
    b = resolve(str(tiny_model_dir), cache_dir=d / "cache")
    assert isinstance(b, HFBackend)
    return b


def generate_with_widths(backend: HFBackend, reqs: list[SampleRequest]
                         ) -> tuple[list[list[int]], list[int]]:
    """`generate_ids`, and the batch rows of every forward pass it made."""
    widths: list[int] = []
    handle = backend.model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(int(kw["input_ids"].shape[0])), with_kwargs=True)
    try:
        return backend.generate_ids(reqs), widths
    finally:
        handle.remove()


def reference_sample(logits: Any, temperatures: list[float], generators: list[Any]) -> Any:
    """One float64 CDF over the whole vocabulary per row, the same single draw per row."""
    temps = torch.tensor([t if t > 0 else 1.0 for t in temperatures])
    cdf = torch.softmax(logits / temps[:, None], dim=-1).double().cumsum(dim=-1)
    draws = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    return torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None], right=True)[:, 0]


@pytest.mark.parametrize("vocab", [1000, 512, 7])
def test_two_level_sampler_picks_what_one_full_cdf_picks(vocab: int) -> None:
    torch.manual_seed(vocab)
    logits = torch.randn(16, vocab) * 4
    logits[:, ::5] = float("-inf")  # zero-probability tokens must never be drawn
    temps = [0.7 + 0.1 * (i % 5) for i in range(16)]
    for trial in range(40):
        mine = [torch.Generator().manual_seed(1000 * trial + i) for i in range(16)]
        ref = [torch.Generator().manual_seed(1000 * trial + i) for i in range(16)]
        got = sample_tokens(logits, temps, mine)
        assert torch.equal(got, reference_sample(logits, temps, ref))
        assert bool(torch.isfinite(logits[torch.arange(16), got]).all())


def test_sampler_never_draws_a_zero_probability_token_at_the_edges() -> None:
    vocab = 300  # not a multiple of the block size, so the last block is padded
    only_last = torch.full((1, vocab), float("-inf"))
    only_last[0, -1] = 0.0
    only_first = torch.full((1, vocab), float("-inf"))
    only_first[0, 0] = 0.0

    for logits, expect in ((only_last, vocab - 1), (only_first, 0)):
        for seed in range(20):
            assert int(sample_tokens(logits, [1.0], [torch.Generator().manual_seed(seed)])) \
                == expect
    # a target at the very top of the CDF (draw ~ 1) lands on the last positive token
    cdf = torch.tensor([[0.25, 0.5, 0.5, 0.5]], dtype=torch.float64)
    assert int(hf._search(cdf, torch.tensor([0.5], dtype=torch.float64))) == 1
    assert int(hf._search(cdf, torch.tensor([0.3], dtype=torch.float64))) == 1
    assert int(hf._search(cdf, torch.tensor([0.1], dtype=torch.float64))) == 0


def test_greedy_rows_mix_with_sampled_rows() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 600)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    got = sample_tokens(logits, [0.0, 1.0, 0.0], gens)
    assert int(got[0]) == int(logits[0].argmax()) and int(got[2]) == int(logits[2].argmax())


def test_equal_prompts_are_prefilled_once_and_answer_as_if_alone(backend: HFBackend) -> None:
    asks = [(("user", "I am bored."),), (("user", "How can I make money fast?"),)]
    reqs = [SampleRequest(asks[i % 2], 1.0, 8, seed=i) for i in range(6)]
    together, widths = generate_with_widths(backend, reqs)
    assert widths[0] == 2  # the prefill ran the two distinct prompts, not six rows
    assert widths[1] == 6  # then every row decodes on its own copy of its prompt's cache
    assert together == [backend.generate_ids([r])[0] for r in reqs]
    assert together[0] != together[2]  # same prompt, different seeds


def test_buffered_cache_decodes_the_same_tokens_as_dynamic_cache(
        backend: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # rows leave the batch at different steps, and the longest outgrow the first buffers
    reqs = [SampleRequest((("user", q),), 0.9, 5 + 11 * i, seed=i) for i, q in enumerate(
        ["Hi.", "I am bored. What should I do today?", "Tell me a thought.", "Rate it"] * 2)]
    buffered = backend.generate_ids(reqs)
    monkeypatch.setattr(kv_buffer, "buffered_cache", lambda config: DynamicCache(config=config))
    assert backend.generate_ids(reqs) == buffered
    assert max(len(ids) for ids in buffered) > kv_buffer.GROWTH


def test_buffered_layer_holds_what_dynamic_layer_holds() -> None:
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    mine, ref = kv_buffer.BufferedLayer(), DynamicLayer()
    steps = [5, *([1] * (kv_buffer.GROWTH + 3)), 4]
    for i, new in enumerate(steps):
        k, v = torch.randn(4, 2, new, 8), torch.randn(4, 2, new, 8)
        if i == 10:  # rows leave the batch
            index = torch.tensor([0, 2, 3])
            mine.batch_select_indices(index)
            ref.batch_select_indices(index)
        if i == 20:
            mine.crop(-3)
            ref.crop(-3)
        rows = mine.keys.shape[0] if mine.is_initialized and mine.keys.numel() else 4
        k, v = k[:rows], v[:rows]
        got, expect = mine.update(k, v), ref.update(k, v)
        assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
    assert mine.get_seq_length() == ref.get_seq_length() == sum(steps) - 3


def test_batches_shrink_to_fit_memory_and_answers_do_not_change(
        backend: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = [SampleRequest((("user", f"Tell me a thought {i}."),), 1.0, 6, seed=i)
            for i in range(7)]
    roomy = backend.generate_ids(reqs)
    longest = max(len(backend.encode(backend.render_prompt(r.messages))) + r.max_tokens
                  for r in reqs)
    per_row = kv_buffer.bytes_per_row(backend.model.config, longest, 4)
    assert per_row is not None and per_row > 0
    # free memory for three and a half such rows at MEMORY_SHARE: batches of 3 rows
    monkeypatch.setattr(kv_buffer, "free_memory",
                        lambda _device: int(3.5 * per_row / kv_buffer.MEMORY_SHARE))
    assert kv_buffer.rows_that_fit(backend.model, longest, 64) == 3
    tight, widths = generate_with_widths(backend, reqs)
    assert max(widths) == 3 and tight == roomy
    monkeypatch.setattr(kv_buffer, "free_memory", lambda _device: 0)
    assert kv_buffer.rows_that_fit(backend.model, 30, 64) == 1  # never below one row
    monkeypatch.setattr(kv_buffer, "free_memory", lambda _device: None)
    assert kv_buffer.rows_that_fit(backend.model, 30, 64) == 64  # unknown: as asked


def test_row_bytes_follow_the_config() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         hidden_size=32, vocab_size=100)
    per_token = 2 * 3 * 2 * 8 * 4  # keys and values, 3 layers, 2 kv heads of 8 dims, fp32
    assert kv_buffer.bytes_per_row(config, 10, 4) == \
        2 * per_token * (10 + kv_buffer.GROWTH) + 16 * 100


def test_compaction_moves_only_tail_rows_into_gaps() -> None:
    assert kv_buffer.compaction([0, 1, 2, 3]) == [0, 1, 2, 3]
    assert kv_buffer.compaction([0, 2, 3, 5, 6]) == [0, 5, 2, 3, 6]
    assert kv_buffer.compaction([4, 5]) == [4, 5]
    for keep in ([1, 3, 4, 7], [0, 2, 3, 5, 6], [7]):
        order = kv_buffer.compaction(keep)
        assert sorted(order) == keep  # the same rows, only reordered
        assert all(order[i] == i for i in range(len(order)) if i in keep)  # kept in place


def test_a_sparse_selection_copies_the_moved_rows_only_and_holds_the_same_values() -> None:
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(1)
    mine, ref = kv_buffer.BufferedLayer(), DynamicLayer()
    for new in (6, 1, 1):
        k, v = torch.randn(8, 2, new, 4), torch.randn(8, 2, new, 4)
        mine.update(k, v)
        ref.update(k, v)
    buffer = mine._buffers[0]
    index = torch.tensor(kv_buffer.compaction([0, 1, 3, 4, 5, 7]))  # rows 2 and 6 left
    mine.batch_select_indices(index)
    ref.batch_select_indices(index)
    assert mine._buffers[0].data_ptr() == buffer.data_ptr()  # narrowed in place, no copy
    assert torch.equal(mine.keys, ref.keys) and torch.equal(mine.values, ref.values)
    k, v = torch.randn(6, 2, 1, 4), torch.randn(6, 2, 1, 4)
    got, expect = mine.update(k, v), ref.update(k, v)
    assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
