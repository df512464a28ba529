"""The plugin's path against its peers on the embedded model, in one run; then a cached re-run.

    python benchmarks/bench_eval.py                      # 2 core questions x 16 answers
    python benchmarks/bench_eval.py --samples 64 --naive-samples 8 --dtype auto

Peers, on the same questions, samples, seed, model weights and dtype: batched Hugging Face
`generate` at the plugin's batch size (what a user writes by hand: left-padded batches,
sampling), a naive batch-1 `generate` loop, and llama.cpp on the same GGUF file when
`llama-cpp-python` is importable (not a dependency; see benchmarks/README.md). The header
names the CPU kind, whether it has native bf16 and the dtype. Prints answers/s, judgments/s,
tokens/s and the ratios, then the seconds of a second run whose answers and judgments all
come from the cache (the model is never loaded for it). Rates are per item, so the naive
generation loop times an evenly spaced subset of the answers (`--naive-samples`) to keep the
run short; the naive judge loop times every judgment of the run unless `--naive-judgments`
says fewer. The peers run the model's own forward; the plugin decodes and reads (contrast
judge) with the lean step of `models/hf/lean.py` where it applies (`--no-lean`: not at all,
to see what scheduling alone gives).
Figures belong in docs/performance.md; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.judging.judge import Judge, JudgeTask
from pytest_emergent.models.base import Backend, CandidateProbs, SampleRequest, ScoreRequest
from pytest_emergent.models.cache import CachedBackend, Store
from pytest_emergent.plugin.options import DEFAULT_JUDGE, DEFAULT_MODEL
from pytest_emergent.resources import find_set
from pytest_emergent.run.evaluate import evaluate
from pytest_emergent.run.plan import judge_tasks, plan_samples
from pytest_emergent.run.records import EvalOptions
from pytest_emergent.spec import Question, load_file, render_judge_prompt
from pytest_emergent.stats import get_definition

CORE = find_set("core")


class Timed:
    """A backend proxy that adds up the seconds spent in generate / candidate_probs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec, self.fingerprint, self.is_local = inner.spec, inner.fingerprint, True
        self.gen_s = self.judge_s = 0.0
        self.tokens = 0

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        start = time.perf_counter()
        ids = self.inner.generate_ids(requests)
        self.gen_s += time.perf_counter() - start
        self.tokens += sum(len(row) for row in ids)
        tok = self.inner.tokenizer
        return [str(tok.decode(row, skip_special_tokens=True)).strip() for row in ids]

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        start = time.perf_counter()
        out = self.inner.candidate_probs(requests)
        self.judge_s += time.perf_counter() - start
        return list(out)

    def close(self) -> None:
        return None


def linear_peak(backend: Any, rows: int, repeats: int = 5) -> float:
    """Tokens/s of the model's linear layers alone (lm_head included) at batch `rows`: the
    best of `repeats` sweeps of one matrix product per layer, as a decode step does them.
    The faster of two kernels counts: `F.linear` on every `nn.Linear`, and the lean decode
    step's fused, prepacked products (`models/hf/lean.py`) where it applies."""
    import torch

    weights = [m.weight for m in backend.model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights}
    maps: list[Any] = [lambda w=w: torch.nn.functional.linear(inputs[w.shape[1]], w)
                       for w in weights]
    sweeps = [maps]
    lean = backend.lean_decoder()
    if lean is not None:
        from pytest_emergent.models.hf.lean import Packed

        packed = [p for layer in lean.layers for p in layer if isinstance(p, Packed)]
        rows_in = {p.in_features: torch.randn(rows, p.in_features) for p in packed}
        sweeps.append([lambda p=p: p(rows_in[p.in_features]) for p in [*packed, lean.lm_head]])
    best = float("inf")
    with torch.inference_mode():
        for sweep in sweeps:
            for _ in range(repeats):
                start = time.perf_counter()
                for run in sweep:
                    run()
                best = min(best, time.perf_counter() - start)
    return rows / best


def middle_layout(template: str) -> str:
    """The judge template with question and answer moved up after its first paragraph."""
    paras = template.split("\n\n")
    return "\n\n".join([paras[0], paras[-2], paras[-1], *paras[1:-2]])


def spread(items: list[Any], count: int) -> list[Any]:
    """`count` items evenly spaced over `items` (all of them for 0 or more than there are):
    the first few answers of a run are not a fair sample of its lengths."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def naive_generate(backend: Any, request: SampleRequest) -> int:
    """One `model.generate` call for one sample (batch 1); returns the new token count."""
    import torch

    ids = backend.encode(backend.render_prompt(request.messages))
    torch.manual_seed(request.seed)
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
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
        with torch.inference_mode():
            out = backend.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True,
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


def time_judge(name: str, judge: Judge, tasks: list[JudgeTask],
               expect: dict[tuple[str, str], float | None], count: int, plugin_s: float,
               lean: bool) -> None:
    """Print the naive judge loop (one `Judge.score` call per judgment, through the model's
    own forward) against the plugin's rate `len(tasks) / plugin_s` (its lean step where
    `lean`), and the largest score difference between the two."""
    sample = spread(tasks, count)
    # the contrast judge keeps the readings of the answers it has seen (both metrics come
    # from one reading); the naive loop starts from nothing at every judgment
    memo = getattr(judge.backend, "_memo", None)
    # and it runs the model's own forward, as a script would (no lean step: models/hf/lean.py)
    local: list[Any] = [b for b in (judge.backend, getattr(judge.backend, "base", None))
             if hasattr(b, "lean_decode")]
    naive = []
    for b in local:
        b.lean_decode = False
    try:
        start = time.perf_counter()
        for t in sample:  # one judge call per judgment
            if memo is not None:
                memo.clear()
            naive.append(judge.score([t])[0])
        naive_s = time.perf_counter() - start
    finally:
        for b in local:
            b.lean_decode = lean
    diff = max((abs((s.score or 0) - (expect[(t.metric, t.prompt)] or 0))
                for t, s in zip(sample, naive, strict=True)), default=0.0)
    rate, naive_rate = len(tasks) / plugin_s, len(sample) / naive_s
    print(f"judging     {name}")
    print(f"  naive  {naive_rate:7.3f} judgments/s  ({len(sample)} timed)")
    print(f"  plugin {rate:7.3f} judgments/s")
    print(f"  speed-up {rate / naive_rate:.2f}x (largest score difference {diff:.2e} points)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2, help="core questions (base ones)")
    parser.add_argument("--samples", type=int, default=16, help="answers per question")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                        help="precision of the model (the peers use the same weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-samples", type=int, default=8,
                        help="naive answers timed (evenly spaced over the run's answers)")
    parser.add_argument("--naive-judgments", type=int, default=0,
                        help="naive judgments timed (evenly spaced; 0 = all of them)")
    parser.add_argument("--judge", action="append", default=None, metavar="SPEC",
                        help=f"judge to time, repeatable (default: the default judge "
                             f"{DEFAULT_JUDGE} and the logprob judge {DEFAULT_MODEL})")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of plugin and batched HF generation on all "
                             "the run's answers (the generation ratio's medians)")
    parser.add_argument("--no-lean", action="store_true",
                        help="decode with the model's own forward, not models/hf/lean.py")
    parser.add_argument("--compare-layout", action="store_true",
                        help="also judge with question/answer in the middle of the template")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: at least 1 (the generation ratio is taken from the rounds)")

    from pytest_emergent.judging.contrast import resolve_contrast
    from pytest_emergent.judging.probe import is_probe_spec, resolve_probe
    from pytest_emergent.judging.specs import judge_for_spec
    from pytest_emergent.models.registry import resolve

    start = time.perf_counter()
    backend: Any = resolve(DEFAULT_MODEL, batch_size=args.batch_size, dtype=args.dtype)
    backend.lean_decode = not args.no_lean
    from pytest_emergent.models.hf.placement import native_bf16

    param = next(backend.model.parameters())
    lean = backend.lean_decoder()
    print(f"CPU: {cpu_kind()}; native bf16: {native_bf16(param.device)}; dtype "
          f"{str(param.dtype).removeprefix('torch.')} on {param.device}; decode step: "
          f"{'lean (fused, prepacked)' if lean is not None else 'the model forward'}",
          flush=True)
    specs = args.judge or [DEFAULT_JUDGE, DEFAULT_MODEL]
    known = (DEFAULT_MODEL, f"probe:{DEFAULT_MODEL}", f"contrast:{DEFAULT_MODEL}")
    bad = [s for s in specs if s not in known]
    if bad:
        parser.error(f"--judge: this benchmark times judges on {DEFAULT_MODEL} only, not {bad}")
    # local judges run in float32 (docs/performance.md), whatever the model's --dtype
    judge_base = backend if args.dtype == "float32" else resolve(
        DEFAULT_MODEL, batch_size=args.batch_size)
    judge_backends = {
        s: resolve_probe(DEFAULT_MODEL, judge_base, None) if is_probe_spec(s)
        else resolve_contrast(DEFAULT_MODEL, judge_base, None) if s.startswith("contrast:")
        else judge_base for s in specs}
    print(f"model loaded in {time.perf_counter() - start:.1f}s; batch size {args.batch_size}",
          flush=True)
    bases = [q for q in load_file(CORE).questions if q.variant == "base"][: args.questions]
    questions: list[Question] = []
    for q in bases:
        per = max(1, args.samples // len(q.paraphrases))
        questions.append(dataclasses.replace(q, samples_per_paraphrase=per,
                                             max_tokens=args.max_tokens))
    options = EvalOptions(definition=get_definition("betley"), seed=args.seed)
    # warm-up outside the timings: thread pools, the scorer's vocabulary tables
    warm = SampleRequest((("user", "Hi"),), 1.0, 4, 0)
    backend.generate([warm])
    naive_generate(backend, warm)
    for spec, judge_backend in judge_backends.items():
        judge_for_spec(spec, judge_backend).score(
            judge_tasks(questions[0], plan_samples(questions[0], 0)[0]))

    # -- the plugin's path with the first judge, through the cache wrapper so that a second
    # run can read everything back -------------------------------------------------------------
    first = specs[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "records.sqlite")
        timed, timed_judge = Timed(backend), Timed(judge_backends[first])

        def wrap(factory: Any, inner: Any) -> CachedBackend:
            return CachedBackend(factory, store, spec=inner.spec, fingerprint=inner.fingerprint,
                                 is_local=True, chunk_size=max(args.batch_size, 8))

        model = wrap(lambda: timed, backend)
        judged_by = model if judge_backends[first] is backend else wrap(
            lambda: timed_judge, judge_backends[first])
        if judged_by is model:
            timed_judge = timed
        start = time.perf_counter()
        results = evaluate(questions, model, judge_for_spec(first, judged_by), options,
                           progress=lambda m: print(f"  plugin: {m}", flush=True))
        plugin_s = time.perf_counter() - start
        records = [r for res in results.values() for r in res.records]

        def refuse() -> Backend:
            raise RuntimeError("the cached re-run tried to load the model")

        again = [wrap(refuse, backend), wrap(refuse, judge_backends[first])]
        start = time.perf_counter()
        evaluate(questions, again[0], judge_for_spec(first, again[1]), options)
        cached_s = time.perf_counter() - start
        assert again[0].misses == again[1].misses == 0, (again[0].misses, again[1].misses)
        store.close()

    # -- the peers on the same samples ----------------------------------------------------------
    every = [SampleRequest(r.messages, q.temperature, q.max_tokens, r.seed)
             for q in questions for r in plan_samples(q, args.seed)]
    rounds = alternate(backend, every, args.batch_size, args.rounds)
    llama = llama_cpp_generate(spread(every, args.naive_samples))
    reqs = spread(every, args.naive_samples)
    start = time.perf_counter()
    naive_tokens = sum(naive_generate(backend, r) for r in reqs)
    naive_gen_s = time.perf_counter() - start

    answers = len(records)
    gen_rate, naive_gen_rate = answers / timed.gen_s, len(reqs) / naive_gen_s
    print(f"\n{len(questions)} questions, {answers} answers (max_tokens {args.max_tokens}), "
          f"seed {args.seed}")
    print(f"generation  naive  {naive_gen_rate:7.3f} answers/s  "
          f"{naive_tokens / naive_gen_s:6.1f} tokens/s  ({len(reqs)} answers timed)")
    in_run = timed.tokens / timed.gen_s
    print(f"generation  plugin, inside evaluate {gen_rate:7.3f} answers/s  {in_run:6.1f} "
          f"tokens/s")
    for index, (plugin_rate, hf_rate) in enumerate(rounds):
        print(f"generation  round {index + 1}: plugin {plugin_rate:6.1f} tokens/s, batched HF "
              f"generate {hf_rate:6.1f} tokens/s (batch {args.batch_size}, all {len(every)} "
              f"answers): {plugin_rate / hf_rate:.2f}x")
    tok_s = statistics.median(p for p, _ in rounds)
    hf_rate = statistics.median(h for _, h in rounds)
    peak = linear_peak(backend, args.batch_size)
    print(f"generation  plugin {tok_s:6.1f} tokens/s = {100 * tok_s / peak:.0f}% of "
          f"{peak:.0f} tokens/s, the linear layers alone at batch {args.batch_size}")
    if llama is not None:
        print(f"generation  llama.cpp {llama[0] / llama[1]:6.1f} tokens/s  "
              f"({len(reqs)} answers, one at a time, same GGUF)")
    else:
        print("generation  llama.cpp: not installed (pip install llama-cpp-python)")
    naive_tok_s = naive_tokens / naive_gen_s
    print(f"generation  plugin / batched HF {tok_s / hf_rate:.2f}x tokens/s (medians of the "
          f"rounds); plugin / naive {tok_s / naive_tok_s:.2f}x tokens/s"
          + ("" if llama is None else
             f"; plugin / llama.cpp {tok_s / (llama[0] / llama[1]):.2f}x tokens/s"))
    print(f"plugin path total {plugin_s:.1f}s; fully cached re-run {1000 * cached_s:.0f} ms",
          flush=True)

    by_q = {q.id: q for q in questions}
    for spec in specs:
        judge = judge_for_spec(spec, judge_backends[spec])
        tasks = [t for r in records for t in judge_tasks(by_q[r.question_id], r)]
        if spec == first:  # timed inside evaluate above
            scores, judge_s = [s for r in records for s in r.scores.values()], timed_judge.judge_s
        else:  # the plugin's scheduling: every judgment of the run in one call
            start = time.perf_counter()
            scores = judge.score(tasks)
            judge_s = time.perf_counter() - start
        expect = {(t.metric, t.prompt): s.score for t, s in zip(tasks, scores, strict=True)}
        label = f"{spec} (default judge)" if spec == DEFAULT_JUDGE else spec
        time_judge(label, judge, tasks, expect, args.naive_judgments, judge_s,
                   backend.lean_decode)
        if args.compare_layout:
            middle = [dataclasses.replace(t, prompt=render_judge_prompt(
                middle_layout(by_q[r.question_id].judge_prompts[t.metric]),
                by_q[r.question_id].paraphrases[r.paraphrase_index], r.answer))
                for r in records for t in judge_tasks(by_q[r.question_id], r)]
            middle.sort(key=lambda t: (t.metric, t.prompt))
            start = time.perf_counter()
            judge.score(middle)
            middle_s = time.perf_counter() - start
            print(f"  plugin, question/answer mid-template {len(middle) / middle_s:7.3f} "
                  f"judgments/s; template order speed-up {middle_s / judge_s:.2f}x", flush=True)


if __name__ == "__main__":
    main()
