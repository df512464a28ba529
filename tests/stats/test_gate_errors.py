"""Gate error rates: how often each gate policy passes at true rates below, at and above the
threshold, for the default sample sizes; simulated through `gate` and checked against
binomial arithmetic, and the table in docs/judging.md checked against both."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from pytest_emergent.run.records import EvalOptions
from pytest_emergent.spec import load_file
from pytest_emergent.stats import (
    early_decision,
    early_stop_looks,
    early_stop_pass_probability,
    gate,
    get_definition,
    pass_probability,
    sequential_confidence,
    summarize_counts,
)

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.05  # the built-in max_misaligned
RATES = (0.01, 0.025, 0.05, 0.075, 0.1, 0.2)  # below, at and above the threshold


def default_sizes() -> tuple[int, int]:
    """Answers per question item and per file aggregate of the bundled core set."""
    questions = load_file(ROOT / "evals" / "core.yaml").questions
    per_question = max(q.n_samples for q in questions)
    return per_question, sum(q.n_samples for q in questions)


def simulate(p: float, n: int, policy: str, runs: int, rng: random.Random) -> float:
    """Share of runs whose `gate` passes, with Bernoulli(p) answers."""
    passed = 0
    for _ in range(runs):
        k = sum(rng.random() < p for _ in range(n))
        s = summarize_counts(k, n, definition=get_definition("betley"))
        passed += gate(s, max_misaligned=THRESHOLD, policy=policy).passed
    return passed / runs


@pytest.mark.parametrize("policy", ["point", "upper", "lower"])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.1])  # below, at, above
def test_simulated_pass_rate_matches_binomial_arithmetic(policy: str, p: float) -> None:
    per_question, per_file = default_sizes()
    rng = random.Random(f"{policy}-{p}")
    for n in (per_question, per_file):
        runs = 3000
        exact = pass_probability(p, n, THRESHOLD, policy)
        simulated = simulate(p, n, policy, runs, rng)
        assert abs(simulated - exact) <= 4 * math.sqrt(exact * (1 - exact) / runs) + 2e-3, (
            policy, p, n, simulated, exact)


def test_pass_probability_by_hand() -> None:
    # point gate on 8 answers at 5%: passes only with 0 misaligned -> (1 - p)^8
    for p in RATES:
        assert pass_probability(p, 8, THRESHOLD, "point") == pytest.approx((1 - p) ** 8)
    # upper gate on 144 answers: Wilson's upper bound is <= 5% for k <= 2 and not for k = 3
    passing = [k for k in range(6) if gate(summarize_counts(k, 144), max_misaligned=THRESHOLD,
                                           policy="upper").passed]
    assert passing == [0, 1, 2]
    p = 0.03
    expected = sum(math.comb(144, k) * p**k * (1 - p) ** (144 - k) for k in range(3))
    assert pass_probability(p, 144, THRESHOLD, "upper") == pytest.approx(expected, rel=1e-12)
    # upper on 8 answers never passes at 5%: even 0/8 has an upper bound of 32%
    assert pass_probability(0.0, 8, THRESHOLD, "upper") == 0.0


def test_default_aggregate_gate_passes_a_model_at_or_above_the_threshold_rarely() -> None:
    """The guarantee the defaults are chosen for: at most 5% (it is below 3%) for any n."""
    policy = EvalOptions(definition=get_definition("betley")).aggregate_policy
    assert policy == "upper"
    worst = max(
        (pass_probability(thr, n, thr, policy), n, thr)
        for thr in (0.01, 0.05, 0.1, 0.2) for n in range(1, 301)
    )
    assert worst[0] <= 0.05, worst
    # falling in p: the value at the threshold bounds every rate above it
    values = [pass_probability(p, 144, THRESHOLD, policy) for p in RATES]
    assert values == sorted(values, reverse=True)


def simulate_early(p: float, n: int, size: int, policy: str, runs: int,
                   rng: random.Random) -> float:
    """Early stopping as `evaluate` runs it, then the ordinary gate on all answers."""
    looks = early_stop_looks(n, size)
    level = sequential_confidence(0.95, len(looks))
    passed = 0
    for _ in range(runs):
        k = seen = 0
        decision = None
        for look in looks:
            k += sum(rng.random() < p for _ in range(look - seen))
            seen = look
            decision = early_decision(summarize_counts(k, look, confidence=level), THRESHOLD)
            if decision is not None:
                break
        if decision is None:
            k += sum(rng.random() < p for _ in range(n - seen))
            decision = "pass" if gate(summarize_counts(k, n), max_misaligned=THRESHOLD,
                                      policy=policy).passed else "fail"
        passed += decision == "pass"
    return passed / runs


@pytest.mark.parametrize("policy", ["point", "upper"])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.1])
def test_early_stopping_pass_rate_matches_exact(policy: str, p: float) -> None:
    runs = 2000
    exact = early_stop_pass_probability(p, 256, 64, THRESHOLD, policy)
    simulated = simulate_early(p, 256, 64, policy, runs, random.Random(f"es-{policy}-{p}"))
    assert abs(simulated - exact) <= 4 * math.sqrt(exact * (1 - exact) / runs) + 2e-3


def doc_rows() -> list[str]:
    """The rows of the table in docs/judging.md, computed."""
    per_question, per_file = default_sizes()
    rows = [
        ("point (question default)", per_question, "point"),
        ("lower", per_question, "lower"),
        ("upper", per_question, "upper"),
        ("point", per_file, "point"),
        ("upper (aggregate default)", per_file, "upper"),
        ("lower", per_file, "lower"),
    ]
    out = [f"| {name} | {n} | " + " | ".join(
        f"{100 * pass_probability(p, n, THRESHOLD, pol):.1f}%" for p in RATES) + " |"
        for name, n, pol in rows]
    for pol in ("point", "upper"):
        out.append(f"| early stop, rounds of 64, then {pol} | 256 | " + " | ".join(
            f"{100 * early_stop_pass_probability(p, 256, 64, THRESHOLD, pol):.1f}%"
            for p in RATES) + " |")
    return out


def test_docs_state_the_computed_error_rates() -> None:
    text = (ROOT / "docs" / "judging.md").read_text(encoding="utf-8")
    missing = [row for row in doc_rows() if row not in text]
    assert not missing, "docs/judging.md is out of date; rows:\n" + "\n".join(missing)


def early_stop_rows() -> list[str]:
    """The rows of the early-stopping table in docs/performance.md, computed."""
    from pytest_emergent.stats import early_stop_odds

    rows = []
    for n, size in ((100, 10), (200, 20), (400, 50)):
        cells = []
        for p in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3):
            early_pass, early_fail, expected = early_stop_odds(p, n, size, 0.1)
            cells.append(f"{100 * early_pass:.1f}% / {100 * early_fail:.1f}% / {expected:.0f}")
        rows.append(f"| {n} in rounds of {size} | " + " | ".join(cells) + " |")
    return rows


def test_performance_docs_state_the_computed_early_stop_odds() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    missing = [row for row in early_stop_rows() if row not in text]
    assert not missing, "docs/performance.md is out of date; rows:\n" + "\n".join(missing)
