"""The plugin's path against its peers on the embedded model, in one run; then a cached re-run.

    python benchmarks/bench_eval.py                      # 2 core questions x 16 answers
    python benchmarks/bench_eval.py --samples 64 --naive-samples 8 --dtype auto
    python benchmarks/bench_eval.py --model DIR --device cuda --dtype auto   # a GPU

Peers, on the same questions, samples, seed, model weights and dtype: batched Hugging Face
`generate` at the plugin's batch size (what a user writes by hand: left-padded batches,
sampling), a naive batch-1 `generate` loop, and llama.cpp on the same GGUF file when
`llama-cpp-python` is importable (not a dependency; see benchmarks/README.md). The header
names the CPU kind, whether it has native bf16 and the dtype. Prints answers/s, judgments/s,
tokens/s and the ratios, then the seconds of a second run whose answers and judgments all
come from the cache (the model is never loaded for it). Rates are per item, so the naive
generation loop times an evenly spaced subset of the answers (`--naive-samples`) to keep the
run short; the naive judge loop times every judgment of the run unless `--naive-judgments`
says fewer. The peers run the model's own forward, unwrapped (`placement.unwrapped`: on a
GPU their tensors stay there, as in a user's script); the plugin decodes and reads (contrast
judge) with the lean step of `models/hf/lean.py` where it applies (`--no-lean`: not at all,
to see what scheduling alone gives). `--model` times another local model (a checkpoint
directory, e.g. one from `benchmarks/random_model.py`; its judge is then the logprob judge
on itself unless `--judge` says otherwise) and `--device` places it.
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

from peers import (  # benchmarks/peers.py, beside this script
    alternate,
    device_kind,
    host_sampling,
    linear_peak,
    llama_cpp_generate,
    naive_generate,
    spread,
)

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


def middle_layout(template: str) -> str:
    """The judge template with question and answer moved up after its first paragraph."""
    paras = template.split("\n\n")
    return "\n\n".join([paras[0], paras[-2], paras[-1], *paras[1:-2]])


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
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="local model to time (default: the embedded default model)")
    parser.add_argument("--device", default="auto",
                        help="where the model runs: auto, cpu, cuda or cuda:N")
    parser.add_argument("--questions", type=int, default=2, help="core questions (base ones)")
    parser.add_argument("--samples", type=int, default=16, help="answers per question")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                        help="precision of the model (the peers use the same weights)")
    parser.add_argument("--judge-dtype", default="float32",
                        choices=["float32", "bfloat16", "auto"],
                        help="precision of the judges (the plugin's --em-judge-dtype)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-samples", type=int, default=8,
                        help="naive answers timed (evenly spaced over the run's answers)")
    parser.add_argument("--naive-judgments", type=int, default=0,
                        help="naive judgments timed (evenly spaced; 0 = all of them)")
    parser.add_argument("--judge", action="append", default=None, metavar="SPEC",
                        help=f"judge to time, repeatable (default: the default judge "
                             f"{DEFAULT_JUDGE} and the logprob judge {DEFAULT_MODEL}; for "
                             "another --model, the logprob judge on it)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of plugin and batched HF generation on all "
                             "the run's answers (the generation ratio's medians)")
    parser.add_argument("--host-sampling", action="store_true",
                        help="also time the plugin with its logits sampled on the CPU (the "
                             "wrapped forward), against sampling on the model's device")
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
    name = args.model
    backend: Any = resolve(name, batch_size=args.batch_size, dtype=args.dtype,
                           device=args.device)
    if not hasattr(backend, "generate_ids"):
        parser.error(f"--model {name}: not a local model (this benchmark times local ones)")
    backend.lean_decode = not args.no_lean
    from pytest_emergent.models.hf.placement import native_bf16, pick_dtype

    param = next(backend.model.parameters())
    lean = backend.lean_decoder()
    print(f"model {name}; {device_kind(param.device)}; native bf16: "
          f"{native_bf16(param.device)}; dtype "
          f"{str(param.dtype).removeprefix('torch.')} on {param.device}; decode step: "
          f"{'lean (fused, prepacked)' if lean is not None else 'the model forward'}",
          flush=True)
    specs = args.judge or ([DEFAULT_JUDGE, DEFAULT_MODEL] if name == DEFAULT_MODEL else [name])
    known = (name, f"probe:{name}", f"contrast:{name}")
    bad = [s for s in specs if s not in known]
    if bad:
        parser.error(f"--judge: this benchmark times judges on the model itself ({name}), "
                     f"not {bad}")
    # local judges run in --judge-dtype (float32 by default, docs/performance.md), whatever
    # the model's --dtype, on the model's device (as the plugin places them)
    same = pick_dtype(args.judge_dtype, param.device) == param.dtype
    judge_base: Any = backend if same else resolve(
        name, batch_size=args.batch_size, device=args.device, dtype=args.judge_dtype)
    print(f"judges in {str(next(judge_base.model.parameters()).dtype).removeprefix('torch.')}",
          flush=True)
    judge_backends = {
        s: resolve_probe(name, judge_base, None) if is_probe_spec(s)
        else resolve_contrast(name, judge_base, None) if s.startswith("contrast:")
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
    # llama.cpp runs the embedded GGUF on the CPU: a peer only for that model there
    llama = (llama_cpp_generate(spread(every, args.naive_samples))
             if name == DEFAULT_MODEL and param.device.type == "cpu" else None)
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
    elif name != DEFAULT_MODEL or param.device.type != "cpu":
        print("generation  llama.cpp: timed only for the embedded model on the CPU")
    else:
        print("generation  llama.cpp: not installed (pip install llama-cpp-python)")
    naive_tok_s = naive_tokens / naive_gen_s
    print(f"generation  plugin / batched HF {tok_s / hf_rate:.2f}x tokens/s (medians of the "
          f"rounds); plugin / naive {tok_s / naive_tok_s:.2f}x tokens/s"
          + ("" if llama is None else
             f"; plugin / llama.cpp {tok_s / (llama[0] / llama[1]):.2f}x tokens/s"))
    if args.host_sampling:
        on_device, on_host = host_sampling(backend, every)
        print(f"generation  plugin sampling on {param.device.type} {on_device:6.1f} tokens/s, "
              f"logits copied to the CPU and sampled there {on_host:6.1f} tokens/s: "
              f"{on_device / on_host:.2f}x")
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
