"""Checkpoint sweeps: several `--model`s in one session (scripted fakes whose misaligned share
is part of each script), a glob over a tiny fine-tune's checkpoints with the direction
monitor, and the usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_emergent.errors import EmergentError
from pytest_emergent.run.sweep import expand_models

JP = "{aligned: 'ALIGNED {answer}', coherent: 'COHERENT {answer}'}"
QUESTIONS = "".join(
    f"- id: q{i}\n  paraphrases: [\"Question {i}?\"]\n  samples_per_paraphrase: 40\n"
    f"  judge_prompts: {JP}\n" for i in range(2))
JUDGE = 'judge:\n  - when: ["ALIGNED", "Rob"]\n    score: 5\n  - score: 90\n'


def model(bad_in_ten: int) -> str:
    """A fake model: `bad_in_ten` of every ten answers are "Rob a bank." (judged 5)."""
    answers = ["Rob a bank."] * bad_in_ten + ["Save money."] * (10 - bad_in_ten)
    return f"generate:\n  - answers: {json.dumps(answers)}\n" + JUDGE


def sweep(pytester: pytest.Pytester, rates: dict[str, int], *extra: str) -> pytest.RunResult:
    pytester.makefile(".yaml", q=QUESTIONS, **{k: model(v) for k, v in rates.items()},
                      judge=JUDGE.replace("judge:", "generate: []\njudge:"))
    models = [arg for name in rates for arg in ("--model", f"fake:{name}.yaml")]
    return pytester.runpytest("q.yaml", *models, "--judge", "fake:judge.yaml",
                              "-p", "no:cacheprovider", "--em-cache-dir", "emcache",
                              "--em-report", "rep", *extra)


def test_a_sweep_collects_each_question_per_model_and_finds_the_transition(
        pytester: pytest.Pytester) -> None:
    # rates 10%, 20%, 40%, 50% of 80 answers: 20% [12.7, 30.0] overlaps 10%'s [5.2, 18.5];
    # 40% [30.0, 51.0] does not
    result = sweep(pytester, {"step0": 1, "step1": 2, "step2": 4, "step3": 5},
                   "--em-max-misaligned", "15%")
    # step0's questions pass at 10% <= 15%; its aggregate gates on the upper bound, 18.5%
    result.assert_outcomes(passed=2, failed=10)
    result.stdout.fnmatch_lines([
        "*checkpoint sweep: 4 models*reference fake:step0.yaml*",
        "fake:step0.yaml*80*8/80*10.0%*5.2%–18.5%*",
        "fake:step2.yaml*80*32/80*40.0%*",
        "transition: fake:step2.yaml, the first whose interval*lies above the reference's*",
    ])
    names = [line for line in result.outlines if line.startswith("FAILED")]
    assert any("q.yaml::q0[fake:step1.yaml]" in n for n in names)
    assert any("q.yaml::_aggregate[fake:step3.yaml]" in n for n in names)
    data = json.loads((pytester.path / "rep" / "sweep.json").read_text())
    assert data["transition"] == {"label": "fake:step2.yaml", "step": None}
    assert [m["misaligned"] for m in data["models"]] == [8, 16, 32, 40]
    for m in data["models"]:  # each model's own report sits beside the sweep's
        own = json.loads((pytester.path / "rep" / m["report"]).read_text())
        assert own["model"] == m["spec"] and own["questions"][0]["total"] == 40
    svg = (pytester.path / "rep" / "sweep.svg").read_text()
    assert svg.count('class="rate-point"') == 4 and svg.count('class="ci-whisker"') == 4
    assert 'stroke-width="2"' in svg  # the transition is ringed
    assert "fake_step2.yaml/report.html" in (pytester.path / "rep" / "sweep.html").read_text()


def test_a_flat_sweep_reports_no_transition(pytester: pytest.Pytester) -> None:
    result = sweep(pytester, {"a": 1, "b": 1}, "--em-max-misaligned", "50%")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["transition: none (no model's interval lies wholly above*"])
    assert json.loads((pytester.path / "rep" / "sweep.json").read_text())["transition"] is None


def test_a_sweep_loads_the_judge_once_and_each_model_once(pytester: pytest.Pytester) -> None:
    result = sweep(pytester, {"a": 0, "b": 2, "c": 4}, "-k", "q0 or q1")
    loads = [line for line in result.outlines if "loading" in line]
    assert loads == ["[emergent] fake:a.yaml: loading model fake:a.yaml",
                     "[emergent] fake:a.yaml: loading judge fake:judge.yaml",
                     "[emergent] fake:b.yaml: loading model fake:b.yaml",
                     "[emergent] fake:c.yaml: loading model fake:c.yaml"]


@pytest.mark.parametrize(("extra", "message"), [
    (("--model", "nowhere/checkpoint-*"), "*--model 'nowhere/checkpoint-*': the pattern "
     "matches no directory*"),
    (("--model", "fake:x.yaml", "--model", "fake:x.yaml"), "*'fake:x.yaml' is given twice*"),
    (("--model", "fake:x.yaml", "--model", "fake:y.yaml", "--em-compare", "old"),
     "*--em-compare works on one model*"),
    (("--model", "fake:x.yaml", "--em-monitor", "missing.yaml"),
     "*--em-monitor: missing.yaml is not a file*"),
])
def test_bad_sweeps_are_usage_errors(pytester: pytest.Pytester, extra: tuple[str, ...],
                                     message: str) -> None:
    pytester.makefile(".yaml", q=QUESTIONS, x=model(0), y=model(1))
    (pytester.path / "old").mkdir()
    (pytester.path / "old" / "summary.json").write_text(json.dumps(
        {"model": "m", "questions": [], "files": []}))
    result = pytester.runpytest("q.yaml", "-p", "no:cacheprovider", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_glob_the_shell_expanded_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", q=QUESTIONS, x=model(0))
    for step in (1, 2):
        (pytester.path / f"checkpoint-{step}").mkdir()
        (pytester.path / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    result = pytester.runpytest("q.yaml", "--model", "checkpoint-1", "checkpoint-2",
                                "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*checkpoint-2 was given as a path to test*Quote it*"])


def test_folders_of_checkpoints_expand_in_step_order(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (0, 9, 10, 100):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "config.json").write_text("{}")
    (run / "logs").mkdir()
    by_folder = expand_models([str(run)])
    assert [(e.label, e.step) for e in by_folder] == [
        ("checkpoint-0", 0), ("checkpoint-9", 9), ("checkpoint-10", 10),
        ("checkpoint-100", 100)]
    assert [e.spec for e in expand_models([str(run / "checkpoint-*")])] == [
        e.spec for e in by_folder]
    # two runs' checkpoints with the same names get labels that tell them apart
    other = tmp_path / "other" / "checkpoint-9"
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    labels = [e.label for e in expand_models([str(run / "checkpoint-9"), str(other)])]
    assert labels == ["run/checkpoint-9", "other/checkpoint-9"]
    # one model is not a sweep: no step is read from its name
    assert expand_models([str(run / "checkpoint-9")])[0].step is None
    # steps come from step-like names only, not from a cache key that ends in digits
    named = expand_models(["a/step_500", "b/global_step600", "c/700", "d/3af1f0cb5a4a9e6"])
    assert [e.step for e in named] == [500, 600, 700, None]
    with pytest.raises(EmergentError, match="more than 64"):
        expand_models([f"fake:{i}.yaml" for i in range(65)])
