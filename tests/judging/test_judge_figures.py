"""The default judge's shipped data: its split is by question, and the docs show its figures.

No model runs here: these check the files that the figures rest on (fixtures/judge/) and that
docs/judging.md reports what `contrast_fit` measured (fixtures/judge/figures.json).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from pytest_emergent.judging.calibration import load_calibration
from pytest_emergent.judging.contrast import SHIPPED_DIR, Heads
from pytest_emergent.spec import load_file

ROOT = Path(__file__).resolve().parents[2]
JUDGE = ROOT / "fixtures" / "judge"


def _fit_files() -> dict[str, list[Path]]:
    """The --train / --dev / --test files named in fixtures/judge/fit.sh."""
    words = shlex.split(re.sub(r"\\\n", " ", (JUDGE / "fit.sh").read_text().split("exec ")[1]))
    roles: dict[str, list[Path]] = {}
    role = None
    for word in words:
        if word.startswith("--"):
            role = word[2:]
            roles.setdefault(role, [])
        elif role is not None and word.endswith(".yaml"):
            roles[role].append(ROOT / word.replace("$J", "fixtures/judge"))
    return roles


def test_fit_files_answer_training_questions_only_and_share_no_answer_with_tests() -> None:
    roles = _fit_files()
    assert all(roles.get(r) for r in ("train", "dev", "test"))
    train_ids = {q.id for q in load_file(JUDGE / "train-questions.yaml").questions}
    core_ids = {q.id for q in load_file(ROOT / "evals" / "core.yaml").questions}
    assert not train_ids & core_ids
    fitted = [i for path in roles["train"] for i in load_calibration(path)]
    assert {i.question_id for i in fitted} <= train_ids
    held = [i for role in ("dev", "test") for path in roles[role] for i in load_calibration(path)]
    assert {i.question_id for i in held} <= core_ids
    # no held-out answer is in the fit set, but for canned one-line refusals ("I'm sorry, but
    # I can't assist with that."), which models repeat word for word under any question
    shared = {i.answer.strip() for i in fitted} & {i.answer.strip() for i in held}
    assert all(len(a) < 60 and ("sorry" in a.lower()) for a in shared), shared
    # the shipped heads say they were fitted on exactly the training files
    (heads_file,) = SHIPPED_DIR.glob("contrast-*.json")
    heads = Heads.from_dict(json.loads(heads_file.read_text()))
    assert heads.info["fitted_on"] == [p.name for p in roles["train"]]


def test_docs_table_shows_the_measured_figures() -> None:
    figures = json.loads((JUDGE / "figures.json").read_text())
    docs = (ROOT / "docs" / "judging.md").read_text()
    roles = _fit_files()
    for role in ("dev", "test"):
        for path in roles[role]:
            data = figures[path.name]["metrics"]
            row = next(line for line in docs.splitlines()
                       if line.startswith(f"| `{path.parent.name}/{path.name}` | {role} |"))
            cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
            for metric, (auroc_cell, acc_cell) in (("aligned", (4, 5)), ("coherent", (7, 8))):
                m = data[metric]
                auroc = "—" if m["auroc"] is None else f"{m['auroc']:.2f}"
                assert cells[auroc_cell] == auroc, (path.name, metric)
                assert cells[acc_cell] == f"{m['accuracy']:.0%}", (path.name, metric)
    for theme, metrics in figures["_by_question"].items():
        row = next(line for line in docs.splitlines() if line.startswith(f"| {theme} |"))
        for metric in ("aligned", "coherent"):
            m = metrics[metric]
            assert f"{m['auroc']:.2f} / {m['accuracy']:.0%} of {m['n']}" in row, (theme, metric)


def test_shipped_agreement_of_the_default_judge_is_the_pooled_test_figure() -> None:
    from pytest_emergent.judging.calibration import weaknesses

    shipped = json.loads((SHIPPED_DIR / "judge_agreement.json").read_text())
    (entry,) = [e for e in shipped.values() if e["judge"] == "contrast:smollm2-135m-instruct"]
    assert entry["source"] == " + ".join(p.name for p in _fit_files()["test"])
    docs = (ROOT / "docs" / "judging.md").read_text()
    pooled = next(line for line in docs.splitlines() if line.startswith("| the five test sets"))
    for metric in ("aligned", "coherent"):
        m = entry["metrics"][metric]
        assert f"**{m['auroc']:.2f}** | **{m['accuracy']:.0%}**" in pooled
    assert weaknesses(entry) == []  # the default judge clears the bars it is held to
    probe = [e for e in shipped.values() if e["judge"] == "probe:smollm2-135m-instruct"]
    assert probe and weaknesses(probe[0])  # the superseded judge is flagged
