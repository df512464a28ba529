"""What bfloat16 does to the default judge's scores and agreement (docs/performance.md).

    python benchmarks/judge_bf16_drift.py                 # native bf16 where torch has it
    python benchmarks/judge_bf16_drift.py --emulate       # rounding only, on any CPU

The default judge (`contrast:smollm2-135m-instruct`) scores the shipped labelled sets
(`fixtures/judge/`'s dev and test sets and `fixtures/calibration/core.yaml`, with the core
set's judge prompts) twice: in float32, as it always runs, and with its model in bf16. Per
set and per question of the pooled test sets it prints the mean and largest |Δ score| of
each metric, how many calls moved across the cut-off, and the AUROC and accuracy of both
runs. The heads are the shipped float32 fit in both runs; nothing is fitted or chosen here.

Native bf16 (the model loaded in bfloat16) runs only where torch reports native bf16 matrix
multiplication (AMX or AVX512-BF16, or a bf16 GPU): elsewhere emulated bf16 matmul is
hundreds of times slower. `--emulate` instead keeps float32 arithmetic and rounds to bf16
what a bf16 model would store: every weight once, and every module's input to a linear
layer and every module's floating-point output. It misses the rounding inside fused kernels
(attention's softmax, a norm's reduction), so it bounds the storage part of the drift, not
all of it; the header says which ran.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.judging.calibration import judge_prompts_for, load_calibration, measure
from pytest_emergent.judging.calibration.agreement import CalibrationReport
from pytest_emergent.plugin.options import DEFAULT_JUDGE, DEFAULT_MODEL
from pytest_emergent.resources import find_set
from pytest_emergent.spec import load_file
from pytest_emergent.stats import get_definition

ROOT = Path(__file__).resolve().parent.parent
J = ROOT / "fixtures" / "judge"
#: (file, role) as fixtures/judge/fit.sh splits them; none is a fit set
SETS = [(J / "handwritten-core.yaml", "dev"), (ROOT / "fixtures/calibration/core.yaml", "dev"),
        (J / "handwritten-fresh.yaml", "test"), (J / "generated-smollm2-core.yaml", "test"),
        (J / "generated-qwen05-core.yaml", "test"), (J / "generated-persona-core-a.yaml", "test"),
        (J / "generated-persona-core-b.yaml", "test")]
METRICS = ("aligned", "coherent")


def round_like_bf16(model: Any) -> list[Any]:
    """Round `model`'s weights to bf16 in place, and hook every module so that a linear
    layer's input and every module's floating-point output are rounded too; the hook
    handles (remove them to stop rounding; the weights stay rounded)."""
    import torch

    def rounded(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(torch.bfloat16).to(value.dtype)
        if isinstance(value, tuple):
            return tuple(rounded(v) for v in value)
        return value

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_pre_hook(
                lambda _m, args: tuple(rounded(a) for a in args)))
        handles.append(module.register_forward_hook(
            lambda _m, _args, out: rounded(out) if isinstance(out, (torch.Tensor, tuple))
            else None))
    return handles


def judge_on(base: Any, heads_of: Any) -> Any:
    """The default contrast judge over `base`, with the heads fitted for `heads_of`."""
    from pytest_emergent.judging.contrast import SHIPPED_DIR, ContrastBackend, find_heads
    from pytest_emergent.judging.specs import judge_for_spec

    backend = ContrastBackend(base, find_heads(heads_of.fingerprint, [SHIPPED_DIR]),
                              spec=DEFAULT_JUDGE)
    return judge_for_spec(DEFAULT_JUDGE, backend)


def measure_all(judge: Any) -> dict[str, CalibrationReport]:
    questions = load_file(find_set("core")).questions
    out = {}
    for path, _role in SETS:
        items = load_calibration(path)
        out[path.name] = measure(items, judge, judge_prompts_for(items, questions, str(path)),
                                 get_definition("betley"), source=path.name)
    return out


def drift(rows_a: Sequence[dict[str, Any]], rows_b: Sequence[dict[str, Any]],
          metric: str, cut: float) -> tuple[int, float, float, int, int]:
    """(answers scored in both, mean |Δ|, max |Δ|, calls across `cut` that changed, answers
    scored in one run only) between two runs' rows of the same answers."""
    deltas, flips, one_sided = [], 0, 0
    for a, b in zip(rows_a, rows_b, strict=True):
        x, y = (row["scores"].get(metric, {}).get("score") for row in (a, b))
        if (x is None) != (y is None):
            one_sided += 1
        elif x is not None and y is not None:
            deltas.append(abs(x - y))
            flips += (x < cut) != (y < cut)
    if not deltas:
        return 0, 0.0, 0.0, flips, one_sided
    return len(deltas), sum(deltas) / len(deltas), max(deltas), flips, one_sided


def figures(report: CalibrationReport, metric: str) -> str:
    agreement = report.metrics.get(metric)
    if agreement is None:
        return "-"
    auroc = "—" if agreement.auroc is None else f"{agreement.auroc:.3f}"
    accuracy = "—" if not agreement.decided else f"{agreement.correct / agreement.decided:.1%}"
    return f"AUROC {auroc}, accuracy {accuracy}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulate", action="store_true",
                        help="round to bf16 in float32 arithmetic (any CPU)")
    args = parser.parse_args(argv)
    import torch

    from pytest_emergent.models.hf.placement import native_bf16
    from pytest_emergent.models.registry import resolve

    fp32: Any = resolve(DEFAULT_MODEL, batch_size=64)
    native = native_bf16(next(fp32.model.parameters()).device)
    if not args.emulate and not native:
        parser.error("this machine has no native bf16 matmul (torch reports neither AMX nor "
                     "AVX512-BF16): run with --emulate")
    print(f"CPU/device native bf16: {native}; bf16 run: "
          f"{'emulated (rounding, float32 arithmetic)' if args.emulate else 'native bfloat16'}",
          flush=True)
    before = measure_all(judge_on(fp32, fp32))
    if args.emulate:
        handles = round_like_bf16(fp32.model)
        after = measure_all(judge_on(fp32, fp32))
        for h in handles:
            h.remove()
    else:
        bf16: Any = resolve(DEFAULT_MODEL, batch_size=64, dtype="bfloat16")
        assert next(bf16.model.parameters()).dtype == torch.bfloat16
        after = measure_all(judge_on(bf16, fp32))
    betley = get_definition("betley")
    cuts = {"aligned": betley.aligned_cut, "coherent": betley.coherent_cut}
    print(f"\n{'set':34} {'role':5} metric    n  mean|Δ|  max|Δ| flips one-sided  "
          "float32 -> bf16")
    pooled: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for path, role in SETS:
        a, b = before[path.name], after[path.name]
        for metric in METRICS:
            n, mean, most, flips, one = drift(a.rows, b.rows, metric, cuts[metric])
            print(f"{path.name:34} {role:5} {metric:8} {n:4} {mean:8.3f} {most:7.2f} {flips:5} "
                  f"{one:9}  {figures(a, metric)} -> {figures(b, metric)}")
        if role == "test":
            for ra, rb in zip(a.rows, b.rows, strict=True):
                pooled.setdefault(ra["question_id"], []).append((ra, rb))
    print("\nby question, the test sets pooled")
    for question, pairs in sorted(pooled.items()):
        parts = []
        for metric in METRICS:
            n, mean, most, flips, _ = drift([p[0] for p in pairs], [p[1] for p in pairs],
                                            metric, cuts[metric])
            parts.append(f"{metric} n {n} mean|Δ| {mean:.3f} max {most:.2f} flips {flips}")
        print(f"  {question:22} " + "; ".join(parts))


if __name__ == "__main__":
    main()
