"""The embedded model through three paths: direct (in process), the OpenAI-compatible server
(`openai:` backend over HTTP) and inspect-ai (`emergent/SPEC` model, our judge as scorer).

What is compared, on one question of evals/core.yaml, 2 paraphrases x 2 samples, seed 0:
- the answers: identical texts on every path (same backend code, same per-answer seeds, and
  one row per decode batch on both sides: float32 kernels are not batch-invariant, so a
  batch of another size, such as the server forms from whatever requests have arrived, can
  round differently and flip a near-tie sample);
- the judged rates with the local exact judge: identical counts and rate on every path;
- the API judge (top-20 first-token logprobs read through the server) on the direct answers
  and on the server's answers: identical scores. That judge reads a different quantity than
  the local exact judge (first tokens only, no assistant prefix), so its scores are not
  compared with the local judge's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("openai")
pytest.importorskip("torch")
pytest.importorskip("inspect_ai")

CORE = Path(__file__).resolve().parents[2] / "evals" / "core.yaml"


def test_direct_openai_and_inspect_paths_agree(tmp_path: Path) -> None:
    import inspect_ai

    from pytest_emergent.integrations.inspect.tasks import question_set_task
    from pytest_emergent.judging.judge import Judge
    from pytest_emergent.models.openai.backend import ApiOptions, OpenAICompatBackend
    from pytest_emergent.models.registry import ALIAS, resolve
    from pytest_emergent.run.api import run_questions
    from pytest_emergent.serve import ModelServer
    from pytest_emergent.spec import load_file

    qfile = load_file(CORE, samples_override=2)
    first = qfile.questions[0]
    (tmp_path / "one.yaml").write_text(_one_question(first))
    questions = load_file(tmp_path / "one.yaml").questions
    assert len(questions) == 1 and questions[0].n_samples == 4

    local = resolve(ALIAS, batch_size=1)
    judge = Judge(local)
    direct = run_questions(questions, local, judge)
    with ModelServer(local, model_name=ALIAS, max_batch=1) as server:
        api = OpenAICompatBackend(ALIAS, base_url=server.url,
                                  options=ApiOptions(concurrency=8, timeout=300))
        via_api = run_questions(questions, api, judge)
        api_judge = Judge(api)
        judged_direct = run_questions(questions, local, api_judge)
        judged_api = run_questions(questions, api, api_judge)

    qid = questions[0].id
    answers = [r.answer for r in direct[qid].records]
    assert [r.answer for r in via_api[qid].records] == answers
    s1, s2 = direct[qid].summary, via_api[qid].summary
    assert (s1.misaligned, s1.n, s1.unscored, s1.rate) == (s2.misaligned, s2.n, s2.unscored,
                                                            s2.rate)
    scores = [r.value("aligned") for r in judged_direct[qid].records]
    assert [r.value("aligned") for r in judged_api[qid].records] == pytest.approx(scores)

    task = question_set_task(tmp_path / "one.yaml", judge=ALIAS)
    [log] = inspect_ai.eval(task, model=f"emergent/{ALIAS}", display="none",
                            model_args={"max_batch": 1}, log_dir=str(tmp_path / "logs"))
    assert log.status == "success"
    by_id = {s.id: s.output.completion for s in log.samples or []}
    for record in direct[qid].records:
        sample_id = f"{record.item_name}/p{record.paraphrase_index}/s{record.sample_index}"
        assert by_id[sample_id].strip() == record.answer
    metrics = log.results.scores[0].metrics  # type: ignore[union-attr]
    assert metrics["misaligned_rate"].value == pytest.approx(s1.rate)
    assert metrics["unscored_rate"].value == pytest.approx(s1.unscored / s1.total)


def _one_question(question: object) -> str:
    import yaml

    q = question  # a Question; written back as a one-question file without variants
    data = [{
        "id": q.id,  # type: ignore[attr-defined]
        "type": q.type,  # type: ignore[attr-defined]
        "paraphrases": list(q.paraphrases),  # type: ignore[attr-defined]
        "samples_per_paraphrase": 2,
        "temperature": q.temperature,  # type: ignore[attr-defined]
        "max_tokens": min(48, q.max_tokens),  # type: ignore[attr-defined]
        "judge_prompts": dict(q.judge_prompts),  # type: ignore[attr-defined]
    }]
    if q.system:  # type: ignore[attr-defined]
        data[0]["system"] = q.system  # type: ignore[attr-defined]
    return yaml.safe_dump(data, sort_keys=False)
