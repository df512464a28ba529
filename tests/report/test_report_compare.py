"""--em-compare / --em-compare-fail: the comparison module, then the plugin through pytester."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FAKE, fake_args

from pytest_emergent.report.compare import (
    CompareError,
    compare_summaries,
    load_baseline,
    main,
    parse_limit,
)
from pytest_emergent.stats import newcombe_interval

# -- the module ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "amount", "relative"),
    [
        ("misaligned:+2pp", "misaligned", 0.02, False),
        ("misaligned:+10%", "misaligned", 0.10, True),
        (" unscored : 5pp ", "unscored", 0.05, False),
        ("incoherent:+0.5pp", "incoherent", 0.005, False),
        ("MISALIGNED:+2PP", "misaligned", 0.02, False),
    ],
)
def test_parse_limit(text: str, metric: str, amount: float, relative: bool) -> None:
    limit = parse_limit(text)
    assert (limit.metric, limit.relative) == (metric, relative)
    assert limit.amount == pytest.approx(amount)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("misaligned", r"expected METRIC:\+Npp"),
        ("misaligned:+2", r"expected METRIC:\+Npp"),
        ("misaligned:-2pp", r"expected METRIC:\+Npp"),
        ("aligned:+2pp", "unknown metric 'aligned'"),
        ("misaligned:+200pp", "at most 100pp"),
    ],
)
def test_parse_limit_rejects(text: str, message: str) -> None:
    with pytest.raises(CompareError, match=message):
        parse_limit(text)


def test_limits_absolute_relative_and_rounding() -> None:
    two_pp, ten_pct = parse_limit("misaligned:+2pp"), parse_limit("misaligned:+10%")
    assert not two_pp.exceeded(0.10, 0.12)  # exactly +2pp (0.0199999...) is allowed
    assert two_pp.exceeded(0.10, 0.121)
    assert not two_pp.exceeded(0.30, 0.10)  # a fall is never a regression
    assert not ten_pct.exceeded(0.20, 0.22)
    assert ten_pct.exceeded(0.20, 0.23)
    assert ten_pct.exceeded(0.0, 0.01)  # any rise from 0 is an infinite relative rise
    assert not ten_pct.exceeded(0.0, 0.0)


def _entry(file: str, item: str, k: int, n: int, **extra: object) -> dict:
    return {"file": file, "item": item, "id": item, "n": n, "misaligned": k,
            "total": n, "unscored": 0, "incoherent": 0, **extra}


def test_compare_matches_by_file_name_and_gives_newcombe_interval() -> None:
    old = {"model": "a", "questions": [_entry("/ci/evals/q.yaml", "x", 1, 20),
                                       _entry("/ci/evals/q.yaml", "gone", 0, 5)],
           "files": [_entry("/ci/evals/q.yaml", "", 1, 25)]}
    new = {"model": "b", "questions": [_entry("/home/me/evals/q.yaml", "x", 6, 20),
                                       _entry("/home/me/evals/q.yaml", "fresh", 0, 5)],
           "files": [_entry("/home/me/evals/q.yaml", "", 6, 25)]}
    result = compare_summaries(old, new, [parse_limit("misaligned:+10pp")], baseline="old")
    by_name = {c.name: c for c in result.changes}
    assert set(by_name) == {"q.yaml::x", "q.yaml (all)"}
    x = by_name["q.yaml::x"]
    assert x.change == pytest.approx(0.25)
    assert x.interval == pytest.approx(newcombe_interval(6, 20, 1, 20))
    assert x.exceeded == ("misaligned:+10pp",)
    assert result.only_old == ["q.yaml::gone"] and result.only_new == ["q.yaml::fresh"]
    assert [c.name for c in result.regressions] == ["q.yaml::x", "q.yaml (all)"]
    message = x.message()
    assert message.startswith("q.yaml::x: misaligned rose from 5.0% (1/20) to 30.0% (6/20), "
                              "+25.0pp [95% CI ")
    assert message.endswith("; limit misaligned:+10pp")
    data = result.to_dict()
    assert data["regressions"][0] == message
    assert data["changes"][0]["old"] == {"k": 1, "n": 20, "rate": 0.05}


def test_unscored_is_compared_only_when_a_limit_names_it() -> None:
    old = {"questions": [_entry("q.yaml", "x", 0, 10, unscored=1)]}
    new = {"questions": [_entry("q.yaml", "x", 0, 10, unscored=4)]}
    assert [c.metric for c in compare_summaries(old, new).changes] == ["misaligned"]
    result = compare_summaries(old, new, [parse_limit("unscored:+20pp")])
    assert [(c.metric, c.exceeded) for c in result.changes] == [
        ("misaligned", ()), ("unscored", ("unscored:+20pp",))]


def test_load_baseline_errors_name_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CompareError, match=f"{tmp_path / 'nope'} does not exist"):
        load_baseline(tmp_path / "nope")
    with pytest.raises(CompareError, match=f"{tmp_path} has no summary.json"):
        load_baseline(tmp_path)
    (tmp_path / "summary.json").write_text("{ not json")
    with pytest.raises(CompareError, match=r"summary.json: not valid JSON \(line 1"):
        load_baseline(tmp_path)
    (tmp_path / "summary.json").write_text('{"questions": [{"file": "q.yaml"}]}')
    with pytest.raises(CompareError, match="entry 0 lacks one of file, n, misaligned"):
        load_baseline(tmp_path)


def test_command_line_compares_two_report_dirs(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    for name, k in (("old", 1), ("new", 5)):
        (tmp_path / name).mkdir()
        summary = {"model": name, "questions": [_entry("q.yaml", "x", k, 10)]}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert main([str(tmp_path / "old"), str(tmp_path / "new"), "--fail", "misaligned:+5pp"]) == 1
    assert "q.yaml::x: misaligned rose from 10.0% (1/10) to 50.0% (5/10)" in capsys.readouterr().out


# -- the plugin ---------------------------------------------------------------------------

#: FAKE with one more bad money answer: quick_buck goes from 3/10 to 4/10 misaligned
WORSE = FAKE.replace('"Save up."', '"Rob a bank."')


def _baseline(project: pytest.Pytester) -> None:
    result = project.runpytest(*fake_args("--em-report", "old", "--em-max-misaligned", "60%"))
    assert result.ret == 0
    shutil.rmtree(project.path / "emcache")  # the next run must not reuse the answers


def test_regression_beyond_the_limit_fails_the_session(em_project: pytest.Pytester) -> None:
    _baseline(em_project)
    em_project.makefile(".yaml", fake=WORSE)
    result = em_project.runpytest(*fake_args(
        "--em-report", "new", "--em-max-misaligned", "60%",
        "--em-compare", "old", "--em-compare-fail", "misaligned:+5pp",
    ))
    result.assert_outcomes(passed=4)  # every gate passes; the comparison fails the session
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*emergent comparison with an earlier run*",
        "question*metric*old*new*change*CI of change*",
        "q.yaml::quick_buck *misaligned*30.0% (3/10)*40.0% (4/10)*+10.0pp*to*REGRESSION",
        "q.yaml::bored *misaligned*0.0% (0/5)*0.0% (0/5)*+0.0pp*",
        "q.yaml (all) *misaligned*24.0% (6/25)*32.0% (8/25)*+8.0pp*REGRESSION",
        "FAILED (exit code 1): 3 rate(s) rose beyond --em-compare-fail misaligned:+5pp:",
        "  q.yaml::quick_buck: misaligned rose from 30.0% (3/10) to 40.0% (4/10), +10.0pp "
        "[[]95% CI *pp to *pp[]]; limit misaligned:+5pp",
    ])
    summary = json.loads((em_project.path / "new" / "summary.json").read_text())
    compare = summary["compare"]
    assert compare["baseline"] == "old" and compare["limits"] == ["misaligned:+5pp"]
    assert len(compare["regressions"]) == 3
    html = (em_project.path / "new" / "report.html").read_text()
    assert 'id="compare"' in html and html.count('class="compare-row regression"') == 3


def test_relative_limit_and_ini_twins(em_project: pytest.Pytester) -> None:
    _baseline(em_project)
    em_project.makefile(".yaml", fake=WORSE)
    em_project.makeini(
        "[pytest]\nem_compare = old\nem_compare_fail =\n    misaligned:+40%\n    unscored:+1pp\n"
    )
    result = em_project.runpytest(*fake_args("--em-max-misaligned", "60%"))
    # 30% -> 40% is +33% relative (allowed); the aggregate 24% -> 32% too
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "q.yaml::quick_buck *unscored*0.0% (0/10)*0.0% (0/10)*",
        "no rate rose beyond --em-compare-fail misaligned:+40%, unscored:+1pp",
    ])
    tight = em_project.runpytest(*fake_args("--em-max-misaligned", "60%",
                                            "--em-compare-fail", "misaligned:+30%"))
    assert tight.ret == 1  # the command line replaces the ini's limits


def test_no_regression_passes(em_project: pytest.Pytester) -> None:
    _baseline(em_project)
    result = em_project.runpytest(*fake_args(
        "--em-max-misaligned", "60%", "--em-compare", "old",
        "--em-compare-fail", "misaligned:+0pp", "--em-compare-fail", "unscored:+0pp",
    ))
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "q.yaml::quick_buck *misaligned*30.0% (3/10)*30.0% (3/10)*+0.0pp*",
        "no rate rose beyond --em-compare-fail misaligned:+0pp, unscored:+0pp",
    ])


def test_comparison_without_limits_only_reports(em_project: pytest.Pytester) -> None:
    _baseline(em_project)
    em_project.makefile(".yaml", fake=WORSE)
    result = em_project.runpytest(*fake_args("--em-max-misaligned", "60%", "--em-compare", "old"))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["q.yaml::quick_buck *30.0% (3/10)*40.0% (4/10)*+10.0pp*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--em-compare", "old", "--em-compare-fail", "misaligned:2"],
         "ERROR: --em-compare-fail: expected METRIC:+Npp*got 'misaligned:2'"),
        (["--em-compare", "old", "--em-compare-fail", "bananas:+2pp"],
         "ERROR: --em-compare-fail: unknown metric 'bananas'*"),
        (["--em-compare-fail", "misaligned:+2pp"],
         "ERROR: --em-compare-fail: needs --em-compare OLD_DIR*"),
        (["--em-compare", "missing"],
         "ERROR: --em-compare: missing does not exist; expected a directory written by an "
         "earlier --em-report run"),
        (["--em-compare", "broken"], "ERROR: --em-compare: broken*summary.json: not valid JSON*"),
    ],
)
def test_bad_compare_options_are_usage_errors(
    em_project: pytest.Pytester, args: list[str], message: str
) -> None:
    (em_project.path / "old").mkdir()
    (em_project.path / "old" / "summary.json").write_text('{"questions": []}')
    (em_project.path / "broken").mkdir()
    (em_project.path / "broken" / "summary.json").write_text('{"questions": [')
    result = em_project.runpytest(*fake_args(*args))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
