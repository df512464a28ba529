"""Loading question files: YAML text -> validated `QuestionFile`.

Two shapes are read. The published emergent-misalignment files are a YAML list of question
mappings and load unchanged (anchors and aliases included). Our extended shape is a mapping
``{questions: [...], defaults: {...}, thresholds: {...}, definition: ..., vars: {...}}``.
Every problem becomes a `QuestionError` whose message names the file, the question and the
field, says what was expected and what was found. See ``docs/yaml-format.md``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec.judge_files import JudgePromptSource
from pytest_emergent.spec.schema import (
    BASE_VARIANT,
    DEFINITIONS,
    FILE_ANSWERS_FACTOR,
    FILE_FIELDS,
    MAX_ANSWERS,
    QUESTION_FIELDS,
    QUESTION_TYPES,
    REMOTE_PREFIXES,
    Question,
    QuestionFile,
)
from pytest_emergent.spec.templates import _render
from pytest_emergent.spec.validate import (
    _check_id,
    _check_keys,
    _Ctx,
    _got,
    _is_int,
    _is_number,
    _judge_prompts,
    _label_map,
    _options,
    _paraphrases,
    _scorers,
    _tags,
    _thresholds,
    _variant_names,
    _vars,
    _yaml_message,
)
from pytest_emergent.spec.variants import _SUFFIXES, _derive
from pytest_emergent.spec.yaml_loader import read_bounded, safe_load_lines


def load_file(path: str | Path, *, samples_override: int | None = None,
              max_answers: int = MAX_ANSWERS,
              metrics: tuple[str, ...] | None = None,
              judge_prompts_file: Path | None = None) -> QuestionFile:
    """Read and validate a question file; `samples_override` replaces every sample count;
    a question planning more than `max_answers` answers is refused; with `metrics`, only those
    judge metrics are judged and the others are recorded as skipped. A question without judge
    prompts takes them from `judge_prompts_file`, else a `judges.yaml` beside the file or in
    the folder above (`spec.judge_files`)."""
    try:
        text = read_bounded(path)
    except FileNotFoundError:
        raise QuestionError("file not found", path=path) from None
    except IsADirectoryError:
        raise QuestionError("is a directory, expected a YAML file", path=path) from None
    except UnicodeDecodeError as exc:
        raise QuestionError(f"file is not valid UTF-8 ({exc.reason})", path=path) from None
    return load_text(text, path, samples_override=samples_override, max_answers=max_answers,
                     metrics=metrics,
                     judge_source=JudgePromptSource(Path(path), judge_prompts_file))


def load_text(text: str, path: str | Path, *, samples_override: int | None = None,
              max_answers: int = MAX_ANSWERS,
              metrics: tuple[str, ...] | None = None,
              judge_source: JudgePromptSource | None = None) -> QuestionFile:
    """Like `load_file`, from YAML text; `path` is used in messages and as `source`."""
    file_ctx = _Ctx(path)
    if samples_override is not None and (not _is_int(samples_override) or samples_override < 1):
        file_ctx.fail(f"samples override must be a positive integer (got {_got(samples_override)})")
    try:
        data, lines = safe_load_lines(text)
    except yaml.YAMLError as exc:
        file_ctx.fail(_yaml_message(exc))

    entries: Any = data
    top: dict[str, Any] = {}
    if isinstance(data, dict):
        top = data
        _check_keys(top, FILE_FIELDS, file_ctx, "top-level")
        entries = top.get("questions")
        if not isinstance(entries, list) or not entries:
            file_ctx.fail(
                f"must be a non-empty list of questions (got {_got(entries)})", "questions"
            )
    elif not isinstance(data, list):
        file_ctx.fail(
            f"expected a list of questions, or a mapping with a 'questions' list (got {_got(data)})"
        )
    if not entries:
        file_ctx.fail("expected at least one question (got an empty list)")

    definition = top.get("definition")
    if definition is not None and definition not in DEFINITIONS:
        file_ctx.fail(
            f"must be one of {_options(DEFINITIONS)} (got {_got(definition)})", "definition"
        )
    file_thresholds = _thresholds(top.get("thresholds"), file_ctx, "thresholds")
    file_vars = _vars(top.get("vars"), file_ctx)
    baseline = top.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        file_ctx.fail(f"must be a model spec string, e.g. 'path/to/base-model' (got "
                      f"{_got(baseline)})", "baseline")
    if isinstance(baseline, str) and baseline.strip().startswith(REMOTE_PREFIXES):
        file_ctx.fail(f"{baseline!r} is a remote model: a question file may name only a local "
                      "baseline (a checkpoint or an embedded model), so that a file from "
                      "elsewhere cannot spend your API credit; pass it as --em-baseline instead",
                      "baseline")
    defaults = top.get("defaults")
    if defaults is None:  # `defaults:` with nothing after it
        defaults = {}
    if not isinstance(defaults, dict):
        file_ctx.fail(f"must be a mapping of question fields (got {_got(defaults)})", "defaults")
    defaults_ctx = _Ctx(path, "defaults")
    _check_keys(defaults, tuple(f for f in QUESTION_FIELDS if f != "id"), defaults_ctx, "question")

    source = Path(path)
    questions: list[Question] = []
    origin: dict[str, str] = {}  # id or item name -> how it came to exist, for messages
    planned = 0  # answers the file plans so far
    # a lowered per-question limit does not lower the file's below the default one
    file_limit = FILE_ANSWERS_FACTOR * max(max_answers, MAX_ANSWERS)
    for index, entry in enumerate(entries, start=1):
        built = _build(entry, index, defaults, file_vars, samples_override, source, path,
                       judge_source)
        chosen = metrics if metrics is not None else _yaml_metrics(entry, defaults, path)
        if chosen is not None:
            built = [_select_metrics(q, chosen, path) for q in built]
        if baseline is not None:
            built = [replace(q, baseline=baseline) for q in built]
        for q in built:
            if q.n_samples > max_answers:
                _Ctx(path, q.id).fail(
                    f"plans {q.n_samples} answers ({len(q.paraphrases)} paraphrases x "
                    f"{q.samples_per_paraphrase} samples), more than the limit of {max_answers} "
                    "per question; lower the sample count (or --em-samples), or raise the "
                    "limit with --em-max-answers",
                    "samples_per_paraphrase",
                )
            line = lines.get(id(entry))
            at = f" (entry {index}, line {line})" if line else f" (entry {index})"
            how = ("written in the file" if q is built[0]
                   else f"derived from {built[0].id!r}") + at
            for name in dict.fromkeys((q.id, q.item_name)):
                if name in origin:
                    _Ctx(path, q.id).fail(
                        f"duplicate question name {name!r}: this one is {how}, the other is "
                        f"{origin[name]}; names must be unique in a file",
                        "id",
                    )
                origin[name] = how
            questions.append(q)
            planned += q.n_samples
            if planned > file_limit:
                _Ctx(path, q.id).fail(
                    f"brings the file's plan to {planned} answers, more than the limit of "
                    f"{file_limit} per file ({FILE_ANSWERS_FACTOR} x --em-max-answers, at "
                    f"least {FILE_ANSWERS_FACTOR * MAX_ANSWERS}); lower the sample counts (or "
                    "--em-samples), split the file, or raise --em-max-answers",
                    "samples_per_paraphrase")
    return QuestionFile(
        path=source,
        questions=tuple(questions),
        thresholds=file_thresholds,
        definition=definition,
        baseline=baseline,
    )


# --------------------------------------------------------------------------- building


def _yaml_metrics(entry: dict[str, Any], defaults: dict[str, Any], path: str | Path
                  ) -> tuple[str, ...] | None:
    """A question's (or the file defaults') `metrics:` list, checked; None when absent."""
    value = {**defaults, **entry}.get("metrics")
    if value is None:
        return None
    ctx = _Ctx(path, str(entry.get("id")) if "metrics" in entry else "defaults")
    if (not isinstance(value, list) or not value
            or not all(isinstance(m, str) and m.strip() for m in value)):
        ctx.fail(f"must be a non-empty list of judge metric names (got {_got(value)})",
                 "metrics")
    return tuple(value)


def _select_metrics(q: Question, metrics: tuple[str, ...], path: str | Path) -> Question:
    """`q` judged on the chosen metrics only; the others are recorded as skipped."""
    keep = {m: p for m, p in q.judge_prompts.items() if m in metrics}
    if not keep and not q.scorers:
        _Ctx(path, q.id).fail(
            f"none of its judge metrics ({', '.join(q.judge_prompts)}) is among the chosen "
            f"metrics ({', '.join(metrics)}), so nothing would score it; add one to "
            "--em-metrics (or the file's defaults: metrics)",
            "judge_prompts",
        )
    return replace(
        q, judge_prompts=keep,
        judge_labels={m: v for m, v in q.judge_labels.items() if m in keep},
        flagged_labels={m: v for m, v in q.flagged_labels.items() if m in keep},
        skipped_metrics=tuple(m for m in q.judge_prompts if m not in keep),
    )


def _build(
    entry: Any,
    index: int,
    defaults: dict[str, Any],
    file_vars: dict[str, Any],
    samples_override: int | None,
    source: Path,
    path: str | Path,
    judge_source: JudgePromptSource | None = None,
) -> list[Question]:
    """One file entry -> its question plus any derived variants."""
    if not isinstance(entry, dict):
        _Ctx(path, f"#{index}").fail(f"must be a mapping of fields (got {_got(entry)})")
    raw_id = entry.get("id")
    ctx = _Ctx(path, raw_id if isinstance(raw_id, str) and raw_id else f"#{index}")
    qid = _check_id(raw_id, ctx)
    _check_keys(entry, QUESTION_FIELDS, ctx, "question")
    raw = {**defaults, **entry}
    ctx_vars = {
        **file_vars,
        **_vars(defaults.get("vars"), _Ctx(path, "defaults")),
        **_vars(entry.get("vars"), ctx),
    }

    qtype = raw.get("type", QUESTION_TYPES[0])
    if qtype not in QUESTION_TYPES:
        ctx.fail(f"must be one of {_options(QUESTION_TYPES)} (got {_got(qtype)})", "type")
    if "question" in raw:  # Model Organisms' technical files: one question, one paraphrase
        if "paraphrases" in raw:
            ctx.fail("give either 'question' (one paraphrase) or 'paraphrases', not both",
                     "question")
        if not isinstance(raw["question"], str) or not raw["question"].strip():
            ctx.fail(f"must be a non-empty string (got {_got(raw['question'])})", "question")
        raw["paraphrases"] = [raw["question"]]
    paraphrases = _paraphrases(raw.get("paraphrases"), ctx, ctx_vars)
    system = raw.get("system")
    if system is not None:
        if not isinstance(system, str):
            ctx.fail(f"must be a string (got {_got(system)})", "system")
        system = _render(system, ctx_vars, ctx, "system")
    samples = raw.get("samples_per_paraphrase", 1)
    if not _is_int(samples) or samples < 1:
        ctx.fail(
            f"must be an integer of at least 1 (got {_got(samples)})", "samples_per_paraphrase"
        )
    if samples_override is not None:
        samples = samples_override
    temperature = raw.get("temperature", 1.0)
    if not _is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
        ctx.fail(f"must be a finite number of at least 0 (got {_got(temperature)})",
                 "temperature")
    max_tokens = raw.get("max_tokens", 256)
    if not _is_int(max_tokens) or max_tokens < 1:
        ctx.fail(f"must be an integer of at least 1 (got {_got(max_tokens)})", "max_tokens")
    judge = raw.get("judge")
    if judge is not None and not isinstance(judge, str):
        ctx.fail(f"must be a model name string (got {_got(judge)})", "judge")
    judge_prompts = _judge_prompts(raw.get("judge_prompts"), ctx)
    found = (judge_source.prompts() if judge_source is not None and not judge_prompts
             and not raw.get("scorers") else None)
    if found is not None:
        judge_prompts = found
    scorers = _scorers(raw.get("scorers"), ctx, judge_prompts)
    if not judge_prompts and not scorers:
        ctx.fail(
            f"a {qtype} question needs judge prompts or scorers (got neither); give "
            "judge_prompts here or in the file's defaults, put a judges.yaml beside the file, "
            "or name one with --em-judge-prompts", "judge_prompts"
        )
    labels = _label_map(raw.get("judge_labels"), ctx, "judge_labels", judge_prompts, {})
    flagged = _label_map(raw.get("flagged_labels"), ctx, "flagged_labels", judge_prompts, labels)
    for metric, marks in flagged.items():
        if metric not in labels:
            # without labels the judge's reply is read as its one most likely token, and any
            # token but a flagged label (a split "HARM", "I", "Harmful") would count as a pass
            ctx.fail(
                f"flags labels of metric {metric!r}, which has no judge_labels, so every "
                "reply that is not exactly a flagged label would count as a pass; list the "
                f"labels the judge may answer, e.g. judge_labels: {{{metric}: "
                f"[{', '.join(marks)}, SAFE]}}", f"flagged_labels.{metric}"
            )
    thresholds = _thresholds(entry.get("thresholds"), ctx, "thresholds").merged_over(
        _thresholds(defaults.get("thresholds"), _Ctx(path, "defaults"), "thresholds")
    )
    tags = _tags(raw.get("tags"), ctx)

    base_id, variant = qid, BASE_VARIANT
    for suffix, name in _SUFFIXES.items():
        if qid.endswith(suffix) and len(qid) > len(suffix):
            base_id, variant = qid[: -len(suffix)], name
    variants = _variant_names(raw.get("variants"), ctx)
    if variants and variant != "base":
        ctx.fail(
            f"variants can only be derived from a base question, and {qid!r} is "
            f"already the {variant} variant of {base_id!r}",
            "variants",
        )

    question = Question(
        id=qid,
        base_id=base_id,
        variant=variant,
        type=qtype,
        paraphrases=paraphrases,
        system=system,
        samples_per_paraphrase=samples,
        temperature=float(temperature),
        max_tokens=max_tokens,
        judge=judge,
        judge_prompts=judge_prompts,
        judge_labels=labels,
        flagged_labels=flagged,
        thresholds=thresholds,
        tags=tags,
        scorers=scorers,
        source=source,
    )
    out = [question]
    for derived in variants:
        out.append(_derive(question, derived))
    return out


