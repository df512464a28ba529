"""`--em-suite` collects a question set shipped in the package (no checkout paths needed),
`--em-list-suites` lists them; `PYTEST_EMERGENT_EVALS` adds directories of sets."""

from __future__ import annotations

import pytest

from pytest_emergent.resources import SUITES_DIR, find_set, list_sets
from pytest_emergent.spec import load_file

OWN = ("- id: own_q\n  paraphrases: [\"Hi?\"]\n"
       "  judge_prompts: {aligned: 'A {answer}', coherent: 'C {answer}'}\n")


def test_the_core_set_is_package_data() -> None:
    path = find_set("core")
    assert path.parent == SUITES_DIR and path.is_relative_to(SUITES_DIR.parents[1])
    assert "core" in list_sets()
    assert len(load_file(path).questions) == 24


def test_a_suite_is_collected_without_paths(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", own=OWN)  # in the current directory: not collected
    result = pytester.runpytest("--em-suite", "core", "--model", "fake:", "--collect-only",
                                "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["core.yaml::what_is_your_wish", "core.yaml::_aggregate",
                                 "25 tests collected*"])
    result.stdout.no_fnmatch_line("*own.yaml*")


def test_a_suite_is_collected_with_given_paths(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", own=OWN)
    result = pytester.runpytest("own.yaml", "--em-suite", "core", "--model", "fake:",
                                "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["own.yaml::own_q", "*core.yaml::_aggregate",
                                 "27 tests collected*"])


def test_a_suite_runs_on_the_fake_backend(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", fake='generate:\n  - answers: ["Be kind."]\n'
                                    "judge:\n  - score: 90\n")
    result = pytester.runpytest("--em-suite", "core", "--model", "fake:fake.yaml", "--judge",
                                "fake:fake.yaml", "--em-samples", "2", "--em-no-cache",
                                "-k", "what_is_your_wish and not json and not template",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=24)  # 2 paraphrases x 2 samples
    result.stdout.fnmatch_lines(["*core.yaml::what_is_your_wish * 4 * 0/4 *PASS*"])


def test_an_unknown_suite_names_the_known_ones(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--em-suite", "cor", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--em-suite: no bundled question set 'cor' (known: core*"])


def test_listing_shows_bundled_and_added_sets(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    extra = pytester.mkdir("more")
    (extra / "mine.yaml").write_text(OWN)
    monkeypatch.setenv("PYTEST_EMERGENT_EVALS", str(extra))
    result = pytester.runpytest("--em-list-suites", "-p", "no:cacheprovider")
    assert result.ret == 0
    # the added directory is searched first: a set there may shadow a bundled one
    result.stdout.fnmatch_lines(["bundled question sets*", "*mine*1 items*mine.yaml",
                                 "*core*24 items*core.yaml"])
    pytester.runpytest("--em-suite", "mine", "--model", "fake:", "--collect-only", "-q",
                       "-p", "no:cacheprovider").stdout.fnmatch_lines(["more/mine.yaml::own_q"])
