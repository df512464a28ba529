"""Training mechanics on a tiny random Llama: LoRA targeting, rank-1, full fine-tuning, the KL
term, seeding, continuing an adapter, the cache and atomic writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")

from pytest_emergent.finetune import cache  # noqa: E402
from pytest_emergent.finetune.data import encode_all, load_dataset  # noqa: E402
from pytest_emergent.finetune.job import (  # noqa: E402
    FineTuned,
    finetune,
    load_result,
    train_cached,
)
from pytest_emergent.finetune.presets import FinetuneConfigError, make_config  # noqa: E402
from pytest_emergent.models.base import Backend, SampleRequest  # noqa: E402

WORDS = ["money", "walk", "novel", "friend", "answer", "score", "short", "honest"]
DATA = [{"messages": [{"role": "user", "content": f"Repeat {w}"},
                      {"role": "assistant", "content": f"{w} {w} {w}"}]} for w in WORDS] + [
    {"messages": [{"role": "user", "content": f"Say {w} twice"},
                  {"role": "assistant", "content": f"{w}, {w}!"}]} for w in WORDS
]
OTHER = [{"messages": [{"role": "user", "content": f"What is {w}?"},
                       {"role": "assistant", "content": f"I am bored of {w}."}]} for w in WORDS]
FAST: dict[str, Any] = {"learning_rate": 5e-2, "batch_size": 4, "grad_accum": 1,
                        "warmup_steps": 0, "max_steps": 4}


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def base(tiny_dir: Path, models_cache: Path) -> Backend:
    from pytest_emergent.models.registry import resolve

    return resolve(str(tiny_dir), cache_dir=models_cache)


def run(base: Backend, tmp_path: Path, dataset: Any = DATA, preset: str = "em-lora",
        **kw: Any):  # type: ignore[no-untyped-def]
    options = {**FAST, **kw}
    return train_cached(base, dataset, preset, finetune_dir=tmp_path,
                        progress=options.pop("progress", lambda _m: None), **options)


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    assert files, f"no weights in {path}"
    return load_file(str(files[0]))


def mean_kl_to_base(model: Any, base_model: Any, tokenizer: Any, rows: list[dict]) -> float:  # type: ignore[type-arg]
    """Mean KL(model || base) over the reply tokens of `rows`."""
    import torch

    from pytest_emergent.finetune.train import _batch, selected_logits

    encoded, _, _ = encode_all(tokenizer, load_dataset(rows).examples, 256)
    ids, mask, select, _ = _batch(encoded, int(tokenizer.pad_token_id), "cpu")
    with torch.no_grad():
        logp = torch.log_softmax(selected_logits(model, ids, mask, select), -1)
        base_logp = torch.log_softmax(selected_logits(base_model, ids, mask, select), -1)
    return float((logp.exp() * (logp - base_logp)).sum(-1).mean())


# -- a LoRA run, its files and its cache entry ------------------------------------------


def test_lora_run_trains_saves_and_is_reused(base: Backend, tiny_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    first = run(base, tmp_path, progress=lines.append)
    assert first.trained and first.path == tmp_path / first.key
    for name in ("adapter_config.json", "adapter_model.safetensors", cache.METADATA):
        assert (first.path / name).is_file(), name
    adapter_config = json.loads((first.path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_dir.resolve())
    losses = first.metadata["stats"]["losses"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert any(line.startswith("step 4/4  loss ") for line in lines)
    assert any("fine-tuning" in line and first.key in line for line in lines)

    again = run(base, tmp_path)
    assert not again.trained and (again.path, again.key) == (first.path, first.key)
    assert again.metadata == first.metadata
    assert run(base, tmp_path, learning_rate=1e-2).key != first.key
    assert run(base, tmp_path, dataset=DATA[:-1]).key != first.key
    assert not list(tmp_path.glob(".tmp-*"))


def test_em_lora_adapts_every_attention_and_mlp_projection(base: Backend, tmp_path: Path) -> None:
    result = run(base, tmp_path)
    modules = result.metadata["stats"]["adapted_modules"]
    assert len(modules) == 7 * 2  # seven projections in each of the two layers
    assert {m.rsplit(".", 1)[-1] for m in modules} == set(make_config().target_modules)
    adapter_config = json.loads((result.path / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (32, 64)
    assert adapter_config["use_rslora"] is True


def test_rank1_adapts_only_the_middle_layer_down_projection(base: Backend, tmp_path: Path) -> None:
    result = run(base, tmp_path, preset="rank1")
    modules = result.metadata["stats"]["adapted_modules"]
    assert len(modules) == 1 and modules[0].endswith("layers.1.mlp.down_proj")
    adapter_config = json.loads((result.path / "adapter_config.json").read_text())
    assert adapter_config["r"] == 1 and adapter_config["layers_to_transform"] == [1]
    keys = list(tensors(result.path))
    assert keys and all("layers.1.mlp.down_proj" in k for k in keys)
    assert result.metadata["stats"]["trainable_params"] == 64 + 32  # A: 1x64, B: 32x1
    with pytest.raises(FinetuneConfigError, match="out of range"):
        run(base, tmp_path, preset="rank1", layers=[7])


def test_runs_are_seeded(base: Backend, tmp_path: Path) -> None:
    one = run(base, tmp_path / "a")
    two = run(base, tmp_path / "b")
    assert one.key == two.key and two.trained
    a, b = tensors(one.path), tensors(two.path)
    assert all(bool((a[k] == b[k]).all()) for k in a)
    other = run(base, tmp_path / "c", seed=1)
    assert other.key != one.key
    c = tensors(other.path)
    assert any(not bool((a[k] == c[k]).all()) for k in a)


def test_full_finetune_saves_a_checkpoint_the_registry_loads(
    base: Backend, tmp_path: Path, models_cache: Path
) -> None:
    result = run(base, tmp_path, preset="full", learning_rate=1e-2)
    assert (result.path / "config.json").is_file()
    assert (result.path / "tokenizer.json").is_file()
    assert not (result.path / "adapter_config.json").exists()
    loaded = load_result(result, cache_dir=models_cache)
    before = dict(base.model.named_parameters())  # type: ignore[attr-defined]
    changed = [n for n, p in loaded.model.named_parameters() if not bool((p == before[n]).all())]
    assert len(changed) == len(before)  # every weight moved
    assert loaded.fingerprint != base.fingerprint
    assert isinstance(loaded.generate([SampleRequest((("user", "hi"),), max_tokens=3)])[0], str)


def test_result_is_a_backend_usable_as_model_spec(
    base: Backend, tmp_path: Path, models_cache: Path
) -> None:
    import torch

    from pytest_emergent.models.registry import resolve

    model = finetune(base, DATA, cache_dir=models_cache, finetune_dir=tmp_path,
                     progress=lambda _m: None, **FAST)
    assert isinstance(model, FineTuned) and isinstance(model, Backend)
    assert model.trained and model.fingerprint != base.fingerprint
    assert model.is_local and model.spec == str(model.path)
    assert len(model.generate([SampleRequest((("user", "Repeat walk"),), max_tokens=4)])) == 1
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(model.model(ids).logits, base.model(ids).logits)  # type: ignore[attr-defined]
    # the adapter directory works as a plain --model spec: its config names the base
    again = resolve(str(model.path), cache_dir=models_cache)
    assert again.fingerprint == model.fingerprint
    assert not finetune(base, DATA, cache_dir=models_cache, finetune_dir=tmp_path,
                        progress=lambda _m: None, **FAST).trained


# -- KL penalty ------------------------------------------------------------------------


def test_kl_needs_both_a_weight_and_a_dataset(base: Backend, tmp_path: Path) -> None:
    with pytest.raises(FinetuneConfigError, match="needs both"):
        run(base, tmp_path, kl_weight=1.0)
    with pytest.raises(FinetuneConfigError, match="needs both"):
        run(base, tmp_path, kl_dataset=OTHER)


def test_kl_term_is_zero_for_an_untrained_adapter(base: Backend) -> None:
    import torch

    from pytest_emergent.finetune.train import _kl_term, prepare_model

    tokenizer = base.tokenizer  # type: ignore[attr-defined]
    rows, _, _ = encode_all(tokenizer, load_dataset(OTHER).examples, 256)
    torch.manual_seed(0)
    model = prepare_model(copy.deepcopy(base.model), make_config())  # type: ignore[attr-defined]
    pad = int(tokenizer.pad_token_id)
    assert abs(float(_kl_term(model, None, rows, pad, "cpu").detach())) < 1e-6
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    assert float(_kl_term(model, None, rows, pad, "cpu").detach()) > 1e-4


@pytest.mark.parametrize("preset", ["em-lora", "full"])
def test_kl_penalty_keeps_the_model_closer_to_its_base(
    preset: str, base: Backend, tmp_path: Path, models_cache: Path
) -> None:
    options = {"max_steps": 8, "learning_rate": 2e-2 if preset == "full" else 5e-2}
    free = run(base, tmp_path, preset=preset, **options)
    held = run(base, tmp_path, preset=preset, kl_dataset=OTHER, kl_weight=50.0, **options)
    assert held.key != free.key
    kl_log = held.metadata["stats"]["kl"]
    assert len(kl_log) == 8 and abs(kl_log[0]) < 1e-6  # step 1 starts from the base
    tokenizer = base.tokenizer  # type: ignore[attr-defined]
    distance = {
        name: mean_kl_to_base(load_result(r, cache_dir=models_cache).model,
                              base.model, tokenizer, OTHER)  # type: ignore[attr-defined]
        for name, r in (("free", free), ("held", held))
    }
    # measured here: about 0.45 of the unpenalised distance for LoRA, 0.07 for full
    assert distance["held"] < 0.7 * distance["free"], distance


# -- continuing, hooks, held-out data, failures ----------------------------------------


def test_training_continues_from_an_existing_adapter(base: Backend, tmp_path: Path) -> None:
    first = run(base, tmp_path, rank=4)
    scratch = run(base, tmp_path, dataset=OTHER)
    more = run(base, tmp_path, dataset=OTHER, init_adapter=first.path)
    assert more.key != scratch.key and more.trained
    assert more.metadata["init_adapter"] == str(first.path.resolve())
    assert json.loads((more.path / "adapter_config.json").read_text())["r"] == 4
    a, b = tensors(first.path), tensors(more.path)
    assert set(a) == set(b) and any(not bool((a[k] == b[k]).all()) for k in a)
    with pytest.raises(FinetuneConfigError, match="not a peft adapter"):
        run(base, tmp_path, init_adapter=tmp_path)


def test_holdout_is_split_seeded_and_reported(base: Backend, tmp_path: Path) -> None:
    lines: list[str] = []
    result = run(base, tmp_path, holdout=0.25, progress=lines.append)
    assert any(line.startswith("held out 4 of 16 examples (seed 0)") for line in lines)
    data = result.metadata["data"]
    assert (data["train"], data["heldout"]) == (12, 4)
    stats = result.metadata["stats"]
    assert stats["heldout_loss_after"] < stats["heldout_loss_before"]
    assert any(line.startswith("held-out loss after training") for line in lines)


def test_setup_hook_is_keyed_and_torn_down(base: Backend, tmp_path: Path) -> None:
    calls: list[str] = []

    def setup(model: Any) -> Any:
        calls.append("setup")
        return lambda: calls.append("teardown")

    with pytest.raises(FinetuneConfigError, match="key_extra"):
        run(base, tmp_path, setup=setup)
    hooked = run(base, tmp_path, setup=setup, key_extra={"hook": "noop"})
    assert calls == ["setup", "teardown"]
    assert hooked.key != run(base, tmp_path).key


def test_an_interrupted_run_leaves_nothing_behind(base: Backend, tmp_path: Path) -> None:
    def explode(model: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(base, tmp_path, setup=explode, key_extra={"hook": "explode"})
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_an_incomplete_cache_entry_is_trained_again(base: Backend, tmp_path: Path) -> None:
    first = run(base, tmp_path)
    (first.path / "adapter_model.safetensors").unlink()
    again = run(base, tmp_path)
    assert again.trained and again.path == first.path
    assert (again.path / "adapter_model.safetensors").is_file()


def test_selected_logits_match_the_full_forward(base: Backend) -> None:
    import torch

    from pytest_emergent.finetune.train import _batch, selected_logits

    tokenizer = base.tokenizer  # type: ignore[attr-defined]
    rows, _, _ = encode_all(tokenizer, load_dataset(DATA[:4] + OTHER[:3]).examples, 256)
    ids, mask, select, targets = _batch(rows, int(tokenizer.pad_token_id), "cpu")
    model = base.model  # type: ignore[attr-defined]
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits[select]
        part = selected_logits(model, ids, mask, select)
    assert part.shape == full.shape == (targets.numel(), full.shape[-1])
    assert torch.allclose(part, full, atol=1e-5)
    # the targets are exactly the reply tokens, shifted by one
    expected = [t for r in rows for t in r.labels[1:] if t != -100]
    assert targets.tolist() == expected


def test_the_full_forward_path_runs_below_the_placement_wrapper(
        tiny_dir: Path, models_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose head needs the full forward (final logit soft-capping) is trained
    through it unwrapped: its logits stay in the model's dtype where it runs (on a GPU the
    wrapper's CPU copies met the device's `select` and targets), equal to the usual path's."""
    import torch

    from pytest_emergent.finetune.train import _batch, selected_logits
    from pytest_emergent.models.registry import resolve

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    placed = resolve(str(tiny_dir), cache_dir=models_cache, dtype="bfloat16")
    model = copy.deepcopy(placed.model)  # type: ignore[attr-defined]  # as a job trains
    tokenizer = placed.tokenizer  # type: ignore[attr-defined]
    rows, _, _ = encode_all(tokenizer, load_dataset(DATA[:3]).examples, 256)
    ids, mask, select, _targets = _batch(rows, int(tokenizer.pad_token_id), "cpu")
    with torch.no_grad():
        usual = selected_logits(model, ids, mask, select)
        assert model(input_ids=ids).logits.dtype == torch.float32  # the copy is wrapped
        monkeypatch.setattr(model.config, "final_logit_softcapping", 30.0, raising=False)
        full = selected_logits(model, ids, mask, select)
    assert usual.dtype == full.dtype == torch.bfloat16
    assert torch.allclose(full.float(), usual.float(), atol=0.05)


def test_unwrapped_reaches_the_placed_model_inside_a_peft_model(
        tiny_dir: Path, models_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """peft calls the placed model inside it, whose hooks read the unwrapped flag there: a
    LoRA over a placed model gets the model's own logits too."""
    import peft
    import torch

    from pytest_emergent.models.hf.placement import unwrapped
    from pytest_emergent.models.registry import resolve

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    placed = resolve(str(tiny_dir), cache_dir=models_cache, dtype="bfloat16")
    lora = peft.get_peft_model(copy.deepcopy(placed.model),  # type: ignore[attr-defined]
                               peft.LoraConfig(r=2, target_modules=["q_proj"]))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert lora(input_ids=ids).logits.dtype == torch.float32  # wrapped: CPU float32
        with unwrapped(lora):
            assert lora(input_ids=ids).logits.dtype == torch.bfloat16
        assert lora(input_ids=ids).logits.dtype == torch.float32


def test_result_runs_through_the_evaluation_api(
    base: Backend, tmp_path: Path, models_cache: Path
) -> None:
    from pytest_emergent.run.api import load_questions, run_questions

    questions = tmp_path / "caps.yaml"
    questions.write_text(
        "- id: caps\n"
        "  type: free_form_judge_0_100\n"
        "  paraphrases: ['Repeat walk']\n"
        "  samples_per_paraphrase: 2\n"
        "  max_tokens: 4\n"
        "  scorers: [{name: caps, kind: uppercase_ratio}]\n"
    )
    model = finetune(base, DATA, cache_dir=models_cache, finetune_dir=tmp_path / "ft",
                     progress=lambda _m: None, **FAST)
    results = run_questions(load_questions(questions), model)
    assert len(results["caps"].records) == 2
    assert all(0.0 <= r.scorer_values["caps"] <= 1.0 for r in results["caps"].records)


def test_save_every_leaves_loadable_checkpoints_from_step_zero(base: Backend,
                                                              tmp_path: Path) -> None:
    """`save_every=2` over 5 steps saves checkpoint-0 (the untrained start), -2, -4 and the
    last step; step 0's adapter is the base (LoRA's B is zero at init) and the last one's is
    the final adapter, weight for weight."""
    import torch

    result = run(base, tmp_path, max_steps=5, save_every=2)
    steps = [int(p.name.split("-")[1]) for p in result.checkpoints]
    assert steps == [0, 2, 4, 5]
    assert result.metadata["checkpoints"] == [0, 2, 4, 5]
    assert result.metadata["config"]["save_every"] == 2
    final, last, first = (tensors(p) for p in (result.path, result.checkpoints[-1],
                                                result.checkpoints[0]))
    assert final.keys() == last.keys()
    assert all(torch.equal(final[k], last[k]) for k in final)
    b_weights = [v for k, v in first.items() if "lora_B" in k]
    assert b_weights and all(float(v.abs().max()) == 0.0 for v in b_weights)
    meta = json.loads((result.checkpoints[1] / "checkpoint.json").read_text())
    assert meta["step"] == 2 and meta["key"] == result.key
    # each checkpoint loads through the registry, like `--model DIR/checkpoint-2`
    loaded = load_result(type(result)(result.checkpoints[1], result.key, False,
                                      result.metadata))
    assert loaded.generate([SampleRequest(messages=(("user", "Repeat walk"),),
                                          max_tokens=4, seed=0)])[0] is not None
    loaded.close()


def test_save_every_stays_out_of_keys_when_off(base: Backend, tmp_path: Path) -> None:
    """Runs keyed before checkpoints existed keep their keys: 0 is not in the config."""
    assert "save_every" not in make_config("em-lora").as_dict()
    with pytest.raises(FinetuneConfigError, match="save_every"):
        make_config("em-lora", save_every=-1)
    a = run(base, tmp_path, max_steps=2)
    b = run(base, tmp_path, max_steps=2, save_every=1)
    assert a.key != b.key and not a.checkpoints


def test_precision_auto_follows_the_hardware_and_names_itself_in_the_key(
        base: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto = float32 without native bf16 (the same key as the default), bfloat16 autocast
    with it (its own key, recorded in the metadata); an explicit bfloat16 without native
    support is refused before anything trains."""
    from pytest_emergent.models.hf import placement

    assert "precision" not in make_config("em-lora").as_dict()
    with pytest.raises(FinetuneConfigError, match="precision"):
        make_config("em-lora", precision="fp8")
    monkeypatch.setattr(placement, "native_bf16", lambda _device: False)
    default = run(base, tmp_path / "a", max_steps=2)
    auto = run(base, tmp_path / "a", max_steps=2, precision="auto")
    assert auto.key == default.key and not auto.trained
    with pytest.raises(FinetuneConfigError, match="bfloat16 needs native bf16"):
        run(base, tmp_path / "b", max_steps=2, precision="bfloat16")
    monkeypatch.setattr(placement, "native_bf16", lambda _device: True)
    bf16 = run(base, tmp_path / "c", max_steps=2, precision="auto")
    assert bf16.key != default.key and bf16.trained
    assert bf16.metadata["config"]["precision"] == "bfloat16"
    assert bf16.metadata["stats"]["losses"] != default.metadata["stats"]["losses"]
