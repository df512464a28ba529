"""The peers `bench_eval.py` times the plugin against, and what it measures them with.

Each peer is what a user would write by hand on the same weights and dtype: Hugging Face
`generate` on left-padded batches, a batch-1 `generate` loop, and llama.cpp on the embedded
GGUF where `llama-cpp-python` is importable. They run the model's own forward, unwrapped
(`placement.unwrapped`), with their tensors on the model's device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.models.base import SampleRequest


def linear_peak(backend: Any, rows: int, repeats: int = 5) -> float:
    """Tokens/s of the model's linear layers alone (lm_head included) at batch `rows`: the
    best of `repeats` sweeps of one matrix product per layer, as a decode step does them.
    The faster of two kernels counts: `F.linear` on every `nn.Linear`, and the lean decode
    step's fused, prepacked products (`models/hf/lean.py`) where it applies."""
    import torch

    weights = [m.weight for m in backend.model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype, device=w.device)
              for w in weights}
    maps: list[Any] = [lambda w=w: torch.nn.functional.linear(inputs[w.shape[1]], w)
                       for w in weights]
    sweeps = [maps]
    lean = backend.lean_decoder()
    if lean is not None:
        packed = [p for layer in lean.layers for p in (layer.qkv, layer.out, layer.gate_up,
                                                       layer.down)] + [lean.lm_head]
        rows_in = {p.in_features: torch.randn(rows, p.in_features) for p in packed}
        sweeps.append([lambda p=p: p(rows_in[p.in_features]) for p in packed])
    best = float("inf")
    with torch.inference_mode():
        for sweep in sweeps:
            for _ in range(repeats):
                sync(weights[0].device)
                start = time.perf_counter()
                for run in sweep:
                    run()
                sync(weights[0].device)
                best = min(best, time.perf_counter() - start)
    return rows / best


def sync(device: Any) -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts it (a no-op on
    the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_kind(device: Any) -> str:
    """The header's name of the device: the CPU kind, or the GPU's name and memory."""
    import torch

    if device.type != "cuda":
        return f"CPU: {cpu_kind()}"
    props = torch.cuda.get_device_properties(device)
    return f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB (host CPU: {cpu_kind()})"


def spread(items: list[Any], count: int) -> list[Any]:
    """`count` items evenly spaced over `items` (all of them for 0 or more than there are):
    the first few answers of a run are not a fair sample of its lengths."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def naive_generate(backend: Any, request: SampleRequest) -> int:
    """One `model.generate` call for one sample (batch 1); returns the new token count."""
    import torch

    from pytest_emergent.models.hf.placement import unwrapped

    ids = backend.encode(backend.render_prompt(request.messages))
    torch.manual_seed(request.seed)
    device = next(backend.model.parameters()).device
    with torch.inference_mode(), unwrapped(backend.model):
        out = backend.model.generate(
            input_ids=torch.tensor([ids], device=device),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
            do_sample=True, temperature=request.temperature, top_k=0, top_p=1.0,
            max_new_tokens=request.max_tokens, pad_token_id=backend.pad_id,
            eos_token_id=sorted(backend.stop_ids),
        )
    return int(out.shape[1] - len(ids))


def cpu_kind() -> str:
    """The CPU's model name (from /proc/cpuinfo) and core count, for the header."""
    import os

    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def batched_generate(backend: Any, requests: Sequence[SampleRequest], rows: int) -> int:
    """Hugging Face `generate` on left-padded batches of `rows` prompts (sorted by length,
    as a careful user would), sampling at each request's temperature; returns the new tokens
    up to each row's first stop token."""
    import torch

    from pytest_emergent.models.hf.placement import unwrapped

    device = next(backend.model.parameters()).device
    prompts = sorted(((backend.encode(backend.render_prompt(r.messages)), r) for r in requests),
                     key=lambda pair: len(pair[0]))
    stops, total = set(backend.stop_ids), 0
    for start in range(0, len(prompts), rows):
        chunk = prompts[start: start + rows]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), backend.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (p, _r) in enumerate(chunk):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        torch.manual_seed(chunk[0][1].seed)
        with torch.inference_mode(), unwrapped(backend.model):
            out = backend.model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                temperature=chunk[0][1].temperature, top_k=0, top_p=1.0,
                max_new_tokens=max(r.max_tokens for _, r in chunk),
                pad_token_id=backend.pad_id, eos_token_id=sorted(stops))
        for row in out[:, width:].tolist():
            total += next((i for i, t in enumerate(row) if t in stops), len(row))
    return total


def llama_cpp_generate(requests: Sequence[SampleRequest]) -> tuple[int, float] | None:
    """llama.cpp on the embedded GGUF file, one request at a time (its Python binding
    decodes one sequence per call); (new tokens, seconds), or None when not installed."""
    import importlib
    import importlib.util
    import os

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from pytest_emergent.models.registry import embedded_gguf

    llama_cpp: Any = importlib.import_module("llama_cpp")  # untyped use: not a dependency

    llm = llama_cpp.Llama(model_path=str(embedded_gguf()), n_ctx=1024,
                          n_threads=os.cpu_count() or 1, verbose=False)
    start, tokens = time.perf_counter(), 0
    for r in requests:
        reply = llm.create_chat_completion(
            messages=[{"role": role, "content": text} for role, text in r.messages],
            temperature=r.temperature, top_k=0, top_p=1.0, max_tokens=r.max_tokens,
            seed=r.seed)
        tokens += int(reply["usage"]["completion_tokens"])
    return tokens, time.perf_counter() - start


def alternate(backend: Any, requests: Sequence[SampleRequest], rows: int,
              rounds: int) -> list[tuple[float, float]]:
    """`rounds` alternating timings of the plugin's generation (`generate_ids`, its own
    batching) and batched HF `generate` on the same requests, the order swapped every
    round so that a machine getting faster or slower during the run favours neither; the
    (plugin, batched HF) tokens/s of each round. On these shared machines single timings
    drifted by 10-15 % between runs, ratios measured side by side did not."""
    out = []
    for index in range(rounds):
        rates = {}
        for who in (("plugin", "hf") if index % 2 == 0 else ("hf", "plugin")):
            start = time.perf_counter()
            tokens = (sum(len(row) for row in backend.generate_ids(requests)) if who == "plugin"
                      else batched_generate(backend, requests, rows))
            rates[who] = tokens / (time.perf_counter() - start)
        out.append((rates["plugin"], rates["hf"]))
    return out


def host_sampling(backend: Any, requests: Sequence[SampleRequest]) -> tuple[float, float]:
    """The plugin's generation with its sampler on the model's device (as shipped) and with
    the logits copied to the CPU and sampled there (the wrapped forward, as before the
    decode loop ran unwrapped), one timing each in that order: tokens/s of both. The same
    where nothing is wrapped (float32 on the CPU)."""
    import contextlib

    from pytest_emergent.models.hf import placement

    rates = []
    for patched in (False, True):
        real = placement.unwrapped
        if patched:  # the wrapping stays on: float32 CPU logits at every step
            placement.unwrapped = contextlib.nullcontext  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            tokens = sum(len(row) for row in backend.generate_ids(requests))
            rates.append(tokens / (time.perf_counter() - start))
        finally:
            placement.unwrapped = real
    return rates[0], rates[1]
