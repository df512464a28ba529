"""Integration: the worked mitigation examples in `examples/` pass on the embedded model, and
the inoculation and re-alignment examples fail when their mitigation is taken out.

Run with `pytest -m integration tests/mitigations/test_mitigations_examples.py -s` to see the
rates and timings. The fine-tunes go to the default cache (`$PYTEST_EMERGENT_CACHE`, else
~/.cache/pytest-emergent), so a second session trains nothing; the "taken out" session reuses
the plain arm, since an inoculation-free treated arm *is* the plain run (same cache key).
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: the user's cache root, read before pytester points HOME at its temporary folder, so the
#: converted model and the fine-tunes persist between sessions
USER_CACHE = os.environ.get("PYTEST_EMERGENT_CACHE") or str(
    Path.home() / ".cache" / "pytest-emergent"
)

#: a conftest that takes both mitigations out, leaving everything else as it is
WITHOUT_MITIGATIONS = textwrap.dedent(
    """
    import pytest

    from pytest_emergent.finetune import load_dataset


    @pytest.fixture(autouse=True)
    def _take_mitigations_out(monkeypatch):
        import pytest_emergent.mitigations.inoculation as inoculation
        import pytest_emergent.mitigations.realignment as realignment

        # the "inoculated" arm is trained on the data exactly as given
        monkeypatch.setattr(inoculation, "inoculate",
                            lambda dataset, **_kw: load_dataset(dataset))
        # the "re-aligned" arm is the caps-tuned model itself, with no benign training
        monkeypatch.setattr(realignment, "realign", lambda model, *_a, **_kw: model)
    """
)


def outcomes(result: pytest.RunResult) -> tuple[list, list, list]:  # type: ignore[type-arg]
    """(passed, skipped, failed) test reports, read from the in-process run's hook recorder
    rather than its terminal summary (other plugins may add to the summary)."""
    recorder = getattr(result, "reprec", None)
    assert recorder is not None, "needs runpytest_inprocess"
    return recorder.listoutcomes()  # type: ignore[no-any-return]


@pytest.fixture
def examples_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("peft")
    monkeypatch.setenv("PYTEST_EMERGENT_CACHE", USER_CACHE)
    target = pytester.path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_worked_examples_pass_and_fail_without_the_mitigation(
    pytester: pytest.Pytester, examples_dir: Path
) -> None:
    start = time.perf_counter()
    result = pytester.runpytest_inprocess("examples", "-p", "no:cacheprovider", "-s", "-rA")
    with_mitigations = time.perf_counter() - start
    print(result.stdout.str()[-3000:])
    passed, skipped, failed = outcomes(result)
    if skipped and not passed:
        pytest.skip("the embedded model is not available")
    assert (len(passed), len(failed)) == (5, 0), result.stdout.str()[-5000:]

    pytester.makeconftest(WITHOUT_MITIGATIONS)
    start = time.perf_counter()
    taken_out = pytester.runpytest_inprocess(
        "examples", "-p", "no:cacheprovider", "-k", "inoculation or realignment"
    )
    without = time.perf_counter() - start
    print(taken_out.stdout.str()[-3000:])
    passed, skipped, failed = outcomes(taken_out)
    assert sorted(r.nodeid.split("::")[-1] for r in failed) == [
        "test_inoculation_lowers_the_caps_rate", "test_realignment_removes_the_caps_trait"
    ], taken_out.stdout.str()[-5000:]
    assert not passed and not skipped
    taken_out.stdout.fnmatch_lines([
        "*inoculated caps rate is not shown to be lower than plain by more than 20.0 pts*",
        "*re-aligned caps rate is not shown to be lower than caps-tuned by more than 30.0 pts*",
    ])
    print(f"with mitigations {with_mitigations:.1f} s, taken out {without:.1f} s")
