"""Naive loop against the plugin's path on the embedded model, in one run; then a cached re-run.

    python benchmarks/bench_eval.py                      # 2 core questions x 16 answers
    python benchmarks/bench_eval.py --samples 64 --naive-samples 8

Same questions, samples and seed for both paths. Prints answers/s, judgments/s, tokens/s and
the ratios, then the seconds of a second run whose answers and judgments all come from the
cache (the model is never loaded for it). Rates are per item, so the naive generation loop
times an evenly spaced subset of the answers (`--naive-samples`) to keep the run short; the
naive judge loop times every judgment of the run unless `--naive-judgments` says fewer.
Figures belong in docs/performance.md; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.cache import CachedBackend, Store
from pytest_emergent.evaluate import EvalOptions, evaluate, judge_tasks, plan_samples
from pytest_emergent.judge import Judge
from pytest_emergent.models.base import Backend, CandidateProbs, SampleRequest, ScoreRequest
from pytest_emergent.questions import Question, load_file, render_judge_prompt
from pytest_emergent.stats import get_definition

CORE = Path(__file__).resolve().parent.parent / "evals" / "core.yaml"
#: measured peak of the embedded model's linear layers on 2 CPU cores (docs/performance.md)
PEAK_TOKENS_PER_S = 345.0


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2, help="core questions (base ones)")
    parser.add_argument("--samples", type=int, default=16, help="answers per question")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-samples", type=int, default=8,
                        help="naive answers timed (evenly spaced over the run's answers)")
    parser.add_argument("--naive-judgments", type=int, default=0,
                        help="naive judgments timed (evenly spaced; 0 = all of them)")
    parser.add_argument("--compare-layout", action="store_true",
                        help="also judge with question/answer in the middle of the template")
    args = parser.parse_args(argv)

    from pytest_emergent.models.registry import resolve

    start = time.perf_counter()
    backend: Any = resolve("smollm2-135m-instruct", batch_size=args.batch_size)
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
    Judge(backend).score(judge_tasks(questions[0], plan_samples(questions[0], 0)[0]))

    # -- the plugin's path, through the cache wrapper so a second run can read it back ------
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "records.sqlite")
        timed = Timed(backend)
        cached = CachedBackend(lambda: timed, store, spec=backend.spec,
                               fingerprint=backend.fingerprint, is_local=True,
                               chunk_size=max(args.batch_size, 8))
        start = time.perf_counter()
        results = evaluate(questions, cached, Judge(cached), options,
                           progress=lambda m: print(f"  plugin: {m}", flush=True))
        plugin_s = time.perf_counter() - start
        records = [r for res in results.values() for r in res.records]
        answers = len(records)
        judgments = sum(len(r.scores) for r in records)

        def refuse() -> Backend:
            raise RuntimeError("the cached re-run tried to load the model")

        again = CachedBackend(refuse, store, spec=backend.spec, fingerprint=backend.fingerprint,
                              is_local=True)
        start = time.perf_counter()
        evaluate(questions, again, Judge(again), options)
        cached_s = time.perf_counter() - start
        assert again.misses == 0, again.misses
        store.close()

    # -- the naive loops on the same samples --------------------------------------------------
    reqs = spread([
        SampleRequest(r.messages, q.temperature, q.max_tokens, r.seed)
        for q in questions for r in plan_samples(q, args.seed)
    ], args.naive_samples)
    start = time.perf_counter()
    naive_tokens = sum(naive_generate(backend, r) for r in reqs)
    naive_gen_s = time.perf_counter() - start

    judge = Judge(backend)
    by_q = {q.id: q for q in questions}
    tasks = [t for r in records for t in judge_tasks(by_q[r.question_id], r)]
    expect = {(t.metric, t.prompt): r.scores[t.metric] for r in records
              for t in judge_tasks(by_q[r.question_id], r)}
    sample = spread(tasks, args.naive_judgments)
    start = time.perf_counter()
    naive_scores = [judge.score([t])[0] for t in sample]  # one judge call per judgment
    naive_judge_s = time.perf_counter() - start
    diff = max((abs((s.score or 0) - (expect[(t.metric, t.prompt)].score or 0))
                for t, s in zip(sample, naive_scores, strict=True)), default=0.0)

    gen_rate, naive_gen_rate = answers / timed.gen_s, len(reqs) / naive_gen_s
    judge_rate, naive_judge_rate = judgments / timed.judge_s, len(sample) / naive_judge_s
    print(f"\n{len(questions)} questions, {answers} answers (max_tokens {args.max_tokens}), "
          f"{judgments} judgments, seed {args.seed}")
    print(f"generation  naive  {naive_gen_rate:7.3f} answers/s  "
          f"{naive_tokens / naive_gen_s:6.1f} tokens/s  ({len(reqs)} answers timed)")
    tok_s = timed.tokens / timed.gen_s
    print(f"generation  plugin {gen_rate:7.3f} answers/s  {tok_s:6.1f} tokens/s  "
          f"({100 * tok_s / PEAK_TOKENS_PER_S:.0f}% of {PEAK_TOKENS_PER_S:.0f} tokens/s)")
    print(f"generation  speed-up {gen_rate / naive_gen_rate:.2f}x answers/s, "
          f"{tok_s / (naive_tokens / naive_gen_s):.2f}x tokens/s")
    print(f"judging     naive  {naive_judge_rate:7.3f} judgments/s  ({len(sample)} timed)")
    print(f"judging     plugin {judge_rate:7.3f} judgments/s")
    print(f"judging     speed-up {judge_rate / naive_judge_rate:.2f}x "
          f"(largest score difference {diff:.2e} points)")
    print(f"plugin path total {plugin_s:.1f}s; fully cached re-run {cached_s:.2f}s")

    if args.compare_layout:
        middle = [dataclasses.replace(t, prompt=render_judge_prompt(
            middle_layout(by_q[r.question_id].judge_prompts[t.metric]),
            by_q[r.question_id].paraphrases[r.paraphrase_index], r.answer))
            for r in records for t in judge_tasks(by_q[r.question_id], r)]
        middle.sort(key=lambda t: (t.metric, t.prompt))
        start = time.perf_counter()
        judge.score(middle)
        middle_s = time.perf_counter() - start
        print(f"judging     plugin, question/answer mid-template {len(middle) / middle_s:7.3f} "
              f"judgments/s; template order speed-up {middle_s / timed.judge_s:.2f}x")


if __name__ == "__main__":
    main()
