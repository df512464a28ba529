"""Fit probe-judge heads on labelled answers: `python -m pytest_emergent.judging.probe_fit`.

For each metric: the hidden state at the end of every labelled answer's judge prompt (the
answers whose band lies wholly on one side of the definition's cut-off), an L2-regularised
logistic regression on them, and honest figures from a split by *theme*: the heads are
fitted on the answers to half of the base questions (with their variants) and measured on
the other half, then swapped. Those out-of-fold judgments are run through
`calibration.measure` like any judge's, and stored as the probe judge's measured agreement
(see `calibrate.known_agreement`). The heads written to disk are then fitted on every
answer.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.judging.calibrate import DEFAULT_SET, cache_root, default_questions
from pytest_emergent.judging.calibration import (
    CalibrationItem,
    CalibrationReport,
    expected_side,
    format_report,
    judge_prompts_for,
    load_calibration,
    measure,
)
from pytest_emergent.judging.probe import (
    PREFIX,
    Head,
    Heads,
    ProbeBackend,
    ProbeJudge,
    hidden_at_end,
)
from pytest_emergent.models.base import CandidateProbs, ScoreRequest
from pytest_emergent.spec import load_file, render_judge_prompt
from pytest_emergent.stats import Definition, get_definition

METRICS = ("aligned", "coherent")


def theme(question_id: str) -> str:
    return question_id.removesuffix("_json").removesuffix("_template")


def fit_head(x: Any, y: Any, layer: int, l2: float) -> Head:
    """Logistic regression on standardised features (LBFGS, float64)."""
    import torch

    x, y = x.double(), y.double()
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Head(layer, tuple(mean.tolist()), tuple(std.tolist()), tuple(w.detach().tolist()),
                float(b.detach().item()))


class _Replay:
    """A probe-shaped backend that answers from precomputed probabilities (prompt -> P)."""

    is_local = True

    def __init__(self, table: dict[tuple[str, str], float], spec: str) -> None:
        self.table, self.spec, self.fingerprint = table, spec, "replay"

    def generate(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        out = []
        for r in requests:
            p = self.table[(r.candidates[0], r.messages[-1][1])]
            out.append(CandidateProbs(probs={"0": p, "100": 1.0 - p}, exact=True, top={}))
        return out

    def close(self) -> None:
        return None


def fit(
    base: Any, items: Sequence[CalibrationItem], prompts: dict[str, Any], d: Definition, *,
    layer: int, l2: float, source: str,
) -> tuple[Heads, CalibrationReport]:
    """Heads fitted on every answer, and the held-out-theme report."""
    import torch

    themes = sorted({theme(i.question_id) for i in items})
    folds = [set(themes[: len(themes) // 2]), set(themes[len(themes) // 2:])]
    heads: dict[str, Head] = {}
    replay: dict[tuple[str, str], float] = {}
    counts: dict[str, int] = {}
    for metric in METRICS:
        sides = {i.id: expected_side(metric, i.expected[metric], d)
                 for i in items if metric in i.expected}
        labelled = [(i, sides[i.id] == "positive") for i in items
                    if sides.get(i.id) in ("positive", "negative")]
        texts = {i.id: render_judge_prompt(prompts[i.question_id][metric], i.question, i.answer)
                 for i in items if metric in i.expected}
        feats = {k: torch.tensor(hidden_at_end(
            base, base.render_prompt((("user", t),)) + PREFIX, layer)) for k, t in texts.items()}
        counts[metric] = len(labelled)
        for test in folds:
            train = [(i, y) for i, y in labelled if theme(i.question_id) not in test]
            head = fit_head(torch.stack([feats[i.id] for i, _ in train]),
                            torch.tensor([float(y) for _, y in train]), layer, l2)
            for i in items:
                if i.id in feats and theme(i.question_id) in test:
                    replay[(f"probe:{metric}", texts[i.id])] = head.probability(
                        feats[i.id].tolist())
        heads[metric] = fit_head(torch.stack([feats[i.id] for i, _ in labelled]),
                                 torch.tensor([float(y) for _, y in labelled]), layer, l2)
    judge = ProbeJudge(_Replay(replay, f"probe:{base.spec} (held-out themes)"))
    report = measure(items, judge, prompts, d, source=source)
    info = {"fitted_on": source, "answers": counts, "layer": layer, "l2": l2,
            "definition": d.label, "held_out": {m: a.to_dict() for m, a in
                                                report.metrics.items()}}
    return Heads(base.fingerprint, heads, info), report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_emergent.judging.probe_fit",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=DEFAULT_SET, help="labelled answers")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=Path, action="append")
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--definition", default="betley")
    parser.add_argument("--out", type=Path, help="directory for the heads (default: "
                        "<cache root>/probes)")
    parser.add_argument("--agreement", type=Path, help="also merge the held-out figures "
                        "into this agreement file (the package's data/judge_agreement.json)")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args(argv)
    from pytest_emergent.judging.calibrate import save_agreement
    from pytest_emergent.models.registry import resolve

    root = cache_root(args.cache_dir)
    base = resolve(args.model, cache_dir=root / "models")
    items = load_calibration(args.file)
    questions = [q for p in (args.questions or [default_questions()])
                 for q in load_file(p).questions]
    prompts = judge_prompts_for(items, questions, str(args.file))
    heads, report = fit(base, items, prompts, get_definition(args.definition),
                        layer=args.layer, l2=args.l2, source=Path(args.file).name)
    out = args.out or root / "probes"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"probe-{base.fingerprint[:16]}.json"
    path.write_text(json.dumps(heads.to_dict()) + "\n", encoding="utf-8")
    # stored under the fingerprint the real probe judge will have
    real = ProbeJudge(ProbeBackend(base, heads, spec=f"probe:{args.model}"))
    report.judge, report.judge_fingerprint = f"probe:{args.model}", real.fingerprint
    save_agreement(report, root)
    if args.agreement is not None:
        data = json.loads(args.agreement.read_text()) if args.agreement.exists() else {}
        entry = report.to_dict()
        entry["note"] = (f"held-out themes: heads fitted on half of the questions, measured on "
                         f"the other half; layer {args.layer}, l2 {args.l2}")
        data[real.fingerprint] = entry
        args.agreement.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print("\n".join(format_report(report)))
    print(f"heads: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
