"""The benchmark scripts stay runnable: benchmarks/bench_eval.py end to end at a tiny size on
the embedded model (integration: every peer and ratio line is printed with a number, and the
cached re-run loads nothing; not a speed test, figures at this size mean nothing), and the
parts of benchmarks/judge_bf16_drift.py that compute its figures, on a tiny model."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_emergent.models.base import SampleRequest

import transformers.modeling_utils  # noqa: F401  isort: skip  (torch once per process)

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str) -> Any:
    if str(BENCHMARKS) not in sys.path:  # as when run as a script: its siblings import
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_bench_prints_every_peer_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_emergent.plugin.options import DEFAULT_JUDGE

    _load("bench_eval").main([
        "--questions", "1", "--samples", "4", "--max-tokens", "6", "--naive-samples", "1",
        "--naive-judgments", "2", "--rounds", "2", "--judge", DEFAULT_JUDGE])
    out = capsys.readouterr().out
    number = r"[0-9]+\.[0-9]+"
    assert re.search(r"^model smollm2-135m-instruct; CPU: .+; native bf16: (True|False); "
                     r"dtype float32 on cpu", out, re.M)
    assert re.search(r"^judges in float32$", out, re.M)
    assert len(re.findall(rf"round \d: plugin +{number} tokens/s, batched HF generate +"
                          rf"{number} tokens/s .*: {number}x", out)) == 2
    assert re.search(rf"plugin / batched HF {number}x tokens/s \(medians of the rounds\); "
                     rf"plugin / naive {number}x", out)
    assert re.search(rf"plugin +{number} tokens/s = \d+% of \d+ tokens/s", out)
    assert re.search(r"llama\.cpp(: not installed| +[0-9.]+ tokens/s)", out)
    assert re.search(r"fully cached re-run \d+ ms", out)
    assert re.search(rf"speed-up {number}x \(largest score difference", out)


def test_bf16_emulation_rounds_weights_and_outputs(tmp_path: Path) -> None:
    """The drift script's emulation: every weight is bf16-representable afterwards, the
    logits are bf16-representable (the last module's output is rounded), they moved from
    float32 by a bf16-sized amount, and removing the hooks stops the rounding."""
    import torch
    from tiny import make_tiny_model
    from transformers import AutoModelForCausalLM

    drift = _load("judge_bf16_drift")
    model = AutoModelForCausalLM.from_pretrained(str(make_tiny_model(tmp_path / "m"))).eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        exact = model(input_ids=ids).logits
        handles = drift.round_like_bf16(model)
        logits = model(input_ids=ids).logits
        for h in handles:
            h.remove()
        unhooked = model(input_ids=ids).logits
    for p in model.parameters():
        assert torch.equal(p, p.to(torch.bfloat16).float())
    assert torch.equal(logits, logits.to(torch.bfloat16).float())
    assert 0 < (logits - exact).abs().max() < 0.1 * exact.abs().max()
    assert not torch.equal(unhooked, unhooked.to(torch.bfloat16).float())


def test_drift_counts_deltas_flips_and_one_sided() -> None:
    drift = _load("judge_bf16_drift")

    def rows(*scores: float | None) -> list[dict[str, Any]]:
        return [{"scores": {"aligned": {"score": s}}} for s in scores]

    n, mean, most, flips, one = drift.drift(rows(10.0, 50.0, None, 80.0),
                                            rows(40.0, 49.0, 5.0, 80.0), "aligned", 30.0)
    assert (n, flips, one) == (3, 1, 1)
    assert mean == pytest.approx((30 + 1 + 0) / 3) and most == 30.0


def test_a_random_model_keeps_its_shape_and_the_bench_times_it(
        tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/random_model.py: a shape (config and tokenizer, no weights) becomes a
    loadable model of that shape with seeded random weights; bench_eval.py --model times it,
    judged by the logprob judge on itself, with no llama.cpp peer (not the embedded GGUF)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from pytest_emergent.models.registry import resolve

    random_model = _load("random_model")
    shape = tmp_path / "shape"
    shape.mkdir()
    for name in random_model.SHAPE_FILES:
        if (tiny_model_dir / name).is_file():
            shutil.copyfile(tiny_model_dir / name, shape / name)
    assert not list(shape.glob("*.safetensors"))
    count = random_model.build(shape, tmp_path / "a", seed=3)
    random_model.build(shape, tmp_path / "b", seed=3)
    random_model.build(shape, tmp_path / "c", seed=4)
    a, b, c, tiny = (load_file(str(d / "model.safetensors")) for d in (
        tmp_path / "a", tmp_path / "b", tmp_path / "c", tiny_model_dir))
    assert a.keys() == tiny.keys() and all(a[k].shape == tiny[k].shape for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded
    weight = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(a[weight], c[weight]) and not torch.equal(a[weight], tiny[weight])
    backend: Any = resolve(str(tmp_path / "a"), cache_dir=tmp_path / "cache")
    assert sum(p.numel() for p in backend.model.parameters()) == count
    assert len(backend.generate_ids([SampleRequest((("user", "Hi"),), 1.0, 5, 0)])[0]) <= 5

    model = str(tmp_path / "a")
    _load("bench_eval").main([
        "--model", model, "--questions", "1", "--samples", "2", "--max-tokens", "4",
        "--naive-samples", "1", "--naive-judgments", "2", "--rounds", "1", "--host-sampling"])
    out = capsys.readouterr().out
    number = r"[0-9]+\.[0-9]+"
    assert re.search(rf"plugin sampling on cpu +{number} tokens/s, logits copied to the CPU "
                     rf"and sampled there +{number} tokens/s: {number}x", out)
    assert re.search(rf"^model {re.escape(model)}; CPU: .+; dtype float32 on cpu", out, re.M)
    assert "llama.cpp: timed only for the embedded model on the CPU" in out
    assert re.search(rf"^judging     {re.escape(model)}\n  naive +{number} judgments/s", out,
                     re.M)
    assert re.search(rf"plugin / batched HF {number}x tokens/s", out)
    with pytest.raises(SystemExit):
        _load("bench_eval").main(["--model", model, "--judge", "contrast:other"])
