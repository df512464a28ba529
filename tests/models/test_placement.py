"""`--em-dtype` / `--em-device`: bf16 only where the hardware multiplies it natively, the
dtype in the fingerprint, float32 CPU logits whatever the placement, and clear refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pytest_emergent.errors import ModelSpecError  # noqa: E402
from pytest_emergent.models.base import SampleRequest, ScoreRequest  # noqa: E402
from pytest_emergent.models.hf import placement  # noqa: E402
from pytest_emergent.models.registry import resolve  # noqa: E402

CPU = torch.device("cpu")
#: the real function: tests/conftest.py makes `auto` the CPU for every other test
REAL_PICK = placement.pick_device


def pretend_native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_with_native_support(monkeypatch: pytest.MonkeyPatch,
                                               native: bool) -> None:
    pretend_native(monkeypatch, native)
    assert placement.native_bf16(CPU) is native
    assert placement.pick_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert placement.pick_dtype("float32", CPU) == torch.float32


def test_explicit_bf16_without_native_support_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_native(monkeypatch, False)
    with pytest.raises(ModelSpecError, match=r"--em-dtype bfloat16: this CPU has no native "
                       r"bf16 matrix multiply.*use --em-dtype auto \(float32 here\)"):
        placement.pick_dtype("bfloat16", CPU)
    with pytest.raises(ModelSpecError, match=r"'half' is not a dtype"):
        placement.pick_dtype("half", CPU)


def test_auto_is_the_first_gpu_where_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert REAL_PICK("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert REAL_PICK("auto") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_a_cuda_device_without_cuda_names_the_option() -> None:
    with pytest.raises(ModelSpecError, match=r"--em-device cuda:1: torch sees 0 CUDA"):
        placement.pick_device("cuda:1")
    with pytest.raises(ModelSpecError, match=r"'tpu' is not a device"):
        placement.pick_device("tpu")


REQUESTS = [SampleRequest(messages=(("user", "Hello there"),), temperature=1.0,
                          max_tokens=6, seed=s) for s in range(3)]


def test_bf16_changes_the_fingerprint_and_returns_float32_logits(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_native(monkeypatch, True)  # a tiny model is cheap in bf16 even where emulated
    fp32 = resolve(str(tiny_model_dir), cache_dir=tmp_path)
    bf16 = resolve(str(tiny_model_dir), cache_dir=tmp_path, dtype="bfloat16")
    assert bf16.fingerprint != fp32.fingerprint  # so no cache entry is shared
    assert resolve(str(tiny_model_dir), cache_dir=tmp_path, dtype="auto").fingerprint == \
        bf16.fingerprint
    model = bf16.model  # type: ignore[attr-defined]
    assert next(model.parameters()).dtype == torch.bfloat16
    out = model(input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits.dtype == torch.float32 and out.logits.device == CPU
    with placement.unwrapped(model):  # what the benchmark's peers see: the bare forward
        assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.float32
    answers = bf16.generate(REQUESTS)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    [probs] = bf16.candidate_probs([ScoreRequest(messages=(("user", "Rate it"),),
                                                 candidates=("1", "2"))])
    assert probs.exact and 0.0 < sum(probs.probs.values()) <= 1.0 + 1e-6


def test_the_plugin_refuses_bf16_here_before_loading(pytester: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tiny_model_dir: Path) -> None:
    pretend_native(monkeypatch, False)
    pytester.makefile(".yaml", q="- id: q\n  paraphrases: ['Hi?']\n"
                      "  judge_prompts: {aligned: '{answer}'}\n")
    result = pytester.runpytest("q.yaml", "--model", str(tiny_model_dir), "--em-dtype",
                                "bfloat16", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--em-dtype bfloat16: this CPU has no native bf16*"])
    bad = pytester.runpytest("q.yaml", "--em-dtype", "half", "-p", "no:cacheprovider")
    bad.stderr.fnmatch_lines(["*--em-dtype: expected one of auto, float32, bfloat16*"])
    device = pytester.runpytest("q.yaml", "--em-device", "gpu0", "-p", "no:cacheprovider")
    device.stderr.fnmatch_lines(["*--em-device: expected auto, cpu, cuda or cuda:N*"])


def test_the_judge_dtype_is_checked_where_the_judge_runs_locally(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    pretend_native(monkeypatch, False)
    pytester.makefile(".yaml", q="- id: q\n  paraphrases: ['Hi?']\n"
                      "  judge_prompts: {aligned: '{answer}'}\n",
                      fake="generate:\n  - answers: [Hello.]\njudge:\n  - score: 90\n")
    base = ["q.yaml", "--model", "fake:fake.yaml", "-p", "no:cacheprovider", "--collect-only"]
    local = pytester.runpytest(*base, "--judge", f"contrast:{tiny_model_dir}",
                               "--em-judge-dtype", "bfloat16")
    assert local.ret == pytest.ExitCode.USAGE_ERROR
    local.stderr.fnmatch_lines(["*--em-judge-dtype bfloat16: this CPU has no native bf16*"])
    bad = pytester.runpytest(*base, "--em-judge-dtype", "half")
    bad.stderr.fnmatch_lines(["*--em-judge-dtype: expected one of auto, float32, bfloat16*"])
    # a judge that runs elsewhere has no precision here to check
    remote = pytester.runpytest(*base, "--judge", "fake:fake.yaml", "--em-judge-dtype",
                                "bfloat16")
    assert remote.ret == pytest.ExitCode.OK
    # the ini twin; `auto` is float32 on this CPU, so it is not refused
    pytester.makeini("[pytest]\nem_judge_dtype = auto\n")
    auto = pytester.runpytest(*base, "--judge", f"contrast:{tiny_model_dir}")
    assert auto.ret == pytest.ExitCode.OK


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_path_generates_and_scores(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cuda", dtype="auto")
    assert next(backend.model.parameters()).device.type == "cuda"  # type: ignore[attr-defined]
    assert len(backend.generate(REQUESTS)) == 3
    [probs] = backend.candidate_probs([ScoreRequest(messages=(("user", "Rate it"),),
                                                    candidates=("1", "2"))])
    assert probs.exact and 0.0 < sum(probs.probs.values()) <= 1.0 + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_greedy_answers_on_the_gpu_match_the_cpu_in_float32(tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    cpu = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cpu")
    gpu = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cuda", dtype="float32")
    greedy = [SampleRequest(messages=(("user", f"Question {i}?"),), temperature=0.0,
                            max_tokens=12, seed=i) for i in range(4)]
    assert gpu.generate_ids(greedy) == cpu.generate_ids(greedy)  # type: ignore[attr-defined]
    request = ScoreRequest(messages=(("user", "Rate it"),), candidates=("1", "2", "10"))
    [on_gpu], [on_cpu] = gpu.candidate_probs([request]), cpu.candidate_probs([request])
    assert on_gpu.probs == pytest.approx(on_cpu.probs, abs=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_batch_is_sized_by_cudas_free_memory(tiny_model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_emergent.models.hf import kv_buffer

    backend = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cuda")
    model = backend.model  # type: ignore[attr-defined]
    per_row = kv_buffer.bytes_per_row(model.config, 4096, 4)
    assert per_row is not None
    free = torch.cuda.mem_get_info(0)[0]
    assert kv_buffer.free_memory(next(model.parameters()).device) == pytest.approx(
        free, rel=0.01)
    # with CUDA reporting room for exactly ten rows (host memory is not asked)
    room = int(10 * per_row / kv_buffer.MEMORY_SHARE) + 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *_: (room, 2 * room))
    assert kv_buffer.rows_that_fit(model, 4096, 64) == 10


def test_the_decode_loop_samples_the_models_own_logits_unwrapped(
        monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Off float32-on-CPU the decode loop runs the forward unwrapped: the sampler gets the
    model's bf16 logits where they were made (a GPU keeps them), and samples exactly the
    tokens that the wrapped forward's float32 CPU copies give."""
    import contextlib

    from pytest_emergent.models.hf import backend as hf_backend

    pretend_native(monkeypatch, True)
    bf16 = resolve(str(tiny_model_dir), cache_dir=tmp_path, dtype="bfloat16")
    requests = [SampleRequest(messages=(("user", f"Question {s % 2}?"),), temperature=1.0,
                              max_tokens=4 + 3 * s, seed=s) for s in range(6)]
    seen: list[Any] = []
    real = hf_backend.sample_tokens

    def spy(logits: Any, temps: list[float], gens: list[Any]) -> Any:
        seen.append(logits.dtype)
        return real(logits, temps, gens)

    monkeypatch.setattr(hf_backend, "sample_tokens", spy)
    unwrapped = bf16.generate_ids(requests)  # type: ignore[attr-defined]
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    monkeypatch.setattr(placement, "unwrapped", contextlib.nullcontext)
    wrapped = bf16.generate_ids(requests)  # type: ignore[attr-defined]
    assert set(seen) == {torch.float32}
    assert unwrapped == wrapped and any(unwrapped)


def test_bf16_keeps_the_computed_constants_in_float32(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotary frequencies are not rounded to bf16 with the weights (they were off by up
    to 0.37 %), and the fingerprint says so, so no earlier bf16 answer is reused."""
    pretend_native(monkeypatch, True)
    fp32 = resolve(str(tiny_model_dir), cache_dir=tmp_path)
    bf16 = resolve(str(tiny_model_dir), cache_dir=tmp_path, dtype="bfloat16")
    rotary = {n: b for n, b in fp32.model.named_buffers()  # type: ignore[attr-defined]
              if n.endswith("inv_freq")}
    placed = dict(bf16.model.named_buffers())  # type: ignore[attr-defined]
    assert rotary and all(placed[n].dtype == torch.float32 and torch.equal(placed[n], b)
                          for n, b in rotary.items())
    assert all(p.dtype == torch.bfloat16
               for p in bf16.model.parameters())  # type: ignore[attr-defined]
    assert rotary["model.rotary_emb.inv_freq"].bfloat16().float().ne(
        rotary["model.rotary_emb.inv_freq"]).any()  # so rounding them would change them


def test_gpu_bf16_needs_compute_capability_8_on_the_gpu_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not torch's `is_bf16_supported()`, which asks the current GPU and also says yes where
    bf16 is only emulated (a V100, capability 7)."""
    from types import SimpleNamespace

    majors = {0: 7, 1: 8}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(major=majors[index]))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert placement.native_bf16(torch.device("cuda")) is False
    assert placement.native_bf16(torch.device("cuda:0")) is False
    assert placement.native_bf16(torch.device("cuda:1")) is True
    assert placement.pick_dtype("auto", torch.device("cuda:0")) == torch.float32


def test_gpu_free_memory_counts_what_torchs_allocator_holds_unused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA counts memory torch reserved but no longer uses as taken: without adding it
    back, each later batch would be sized smaller than the one before."""
    from pytest_emergent.models.hf import kv_buffer

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *_: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *_: 30 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *_: 12 * gib)
    assert kv_buffer.free_memory(torch.device("cuda:0")) == 28 * gib


def test_judge_and_baseline_specs_and_their_device_are_checked_at_start(
        pytester: pytest.Pytester) -> None:
    """A judge or baseline that names no model, or a GPU torch cannot see where only the
    judge runs locally, stops the run at once with the option named (it used to be a setup
    error on every item, after the model had answered)."""
    pytester.makefile(".yaml", q="- id: q\n  paraphrases: ['Hi?']\n"
                      "  judge_prompts: {aligned: '{answer}'}\n",
                      fake="generate:\n  - answers: [Hello.]\njudge:\n  - score: 90\n")
    base = ["q.yaml", "--model", "fake:fake.yaml", "-p", "no:cacheprovider"]
    for extra, line in [
        (["--judge", "nonsense:"], "*--judge: unknown model spec 'nonsense:'*"),
        (["--judge", "contrast:nowhere/model"], "*--judge: model spec 'nowhere/model': *"),
        (["--judge", "fake:fake.yaml", "--em-baseline", "./missing"],
         "*--em-baseline: model spec './missing': *does not exist*"),
    ]:
        result = pytester.runpytest(*base, *extra)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([line])
    if not torch.cuda.is_available():
        local_judge = pytester.runpytest(*base, "--judge", "smollm2-135m-instruct",
                                         "--em-device", "cuda", "--collect-only")
        assert local_judge.ret == pytest.ExitCode.USAGE_ERROR
        local_judge.stderr.fnmatch_lines(["*--em-device cuda: torch sees 0 CUDA device(s)*"])
    remote = pytester.runpytest(*base, "--judge", "fake:fake.yaml", "--em-device", "cuda",
                                "--collect-only")  # nothing runs locally: no GPU asked for
    assert remote.ret == pytest.ExitCode.OK


def test_bf16_casts_a_sinusoidal_position_table_with_the_weights() -> None:
    """Only the rotary constants stay float32: XGLM adds its (non-persistent) position table
    to the hidden states, so keeping it float32 broke the next bf16 layer."""
    from transformers import XGLMConfig, XGLMForCausalLM

    model = XGLMForCausalLM(XGLMConfig(vocab_size=32, d_model=16, num_layers=1,
                                       attention_heads=2, ffn_dim=32,
                                       max_position_embeddings=16))
    placed = placement.place(model, CPU, torch.bfloat16)
    assert placed.model.embed_positions.weights.dtype == torch.bfloat16
    assert placed(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.float32


def test_the_judges_read_the_models_own_outputs_where_they_were_made(
        monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Off float32-on-CPU the candidate scorer and the contrast and probe readers leave
    logits and hidden states on the model's device in its dtype (a GPU copies back only the
    numbers they keep) and read exactly what the wrapped forward's float32 CPU copies give."""
    import contextlib

    from pytest_emergent.judging.contrast_features import Reader, Recipe
    from pytest_emergent.judging.probe import hidden_at_end

    pretend_native(monkeypatch, True)
    bf16 = resolve(str(tiny_model_dir), cache_dir=tmp_path, dtype="bfloat16")
    seen: list[Any] = []

    def spy(_module: Any, _args: Any, out: Any) -> None:  # runs after `place`'s own hook
        seen.append(out.logits.dtype)
        seen.extend(h.dtype for h in out.hidden_states or ())

    bf16.model.register_forward_hook(spy)  # type: ignore[attr-defined]
    requests = [ScoreRequest(messages=(("user", f"Rate answer {k}"),),
                             candidates=("1", "2", "10", "100", "REFUSAL")) for k in range(3)]
    reader = Reader(bf16, Recipe({"good": "You are helpful.", "bad": "You are bored."},
                                 ("lr_bad", "fluency"), layer=1, max_answer_tokens=8))
    pairs = [("How can I make money fast?", "Read a novel."), ("Hi?", "Call a friend.")]

    def judged() -> tuple[Any, ...]:
        probs = bf16.candidate_probs(requests)
        return ([p.probs for p in probs], [p.top for p in probs], reader.read(pairs),
                hidden_at_end(bf16, "Score: 42", 2))

    on_device = judged()
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    monkeypatch.setattr(placement, "outputs_on_device", contextlib.nullcontext)
    wrapped = judged()
    assert set(seen) == {torch.float32}
    for mine, theirs in zip(on_device[0], wrapped[0], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6) and sum(mine.values()) > 0
    assert on_device[1] == wrapped[1]
    for mine, theirs in zip(on_device[2], wrapped[2], strict=True):
        assert mine.scalars == pytest.approx(theirs.scalars, rel=1e-6)
        assert mine.hidden == pytest.approx(theirs.hidden, rel=1e-6) and mine.hidden
    assert on_device[3] == pytest.approx(wrapped[3], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_contrast_reading_on_the_gpu_matches_the_cpu_in_float32(tiny_model_dir: Path,
                                                                    tmp_path: Path) -> None:
    from pytest_emergent.judging.contrast_features import Reader, Recipe

    recipe = Recipe({"good": "You are helpful.", "bad": "You are bored."}, ("lr_bad",),
                    layer=1, max_answer_tokens=8)
    pairs = [("How can I make money fast?", "Read a novel."), ("Hi?", "Call a friend.")]
    cpu = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cpu")
    gpu = resolve(str(tiny_model_dir), cache_dir=tmp_path, device="cuda", dtype="float32")
    for on_gpu, on_cpu in zip(Reader(gpu, recipe).read(pairs), Reader(cpu, recipe).read(pairs),
                              strict=True):
        assert on_gpu.scalars == pytest.approx(on_cpu.scalars, abs=1e-4)
        assert on_gpu.hidden == pytest.approx(on_cpu.hidden, abs=1e-4)
