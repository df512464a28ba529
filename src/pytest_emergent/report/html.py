"""`report.html`: one self-contained page rendered from `summary.json` and `samples.jsonl`.

No network: the CSS and the filter script (package data in `report/assets/`) and the plots
(inline SVG from `report.svg`) are all in the page. It is rendered from the same dicts that
the JSON files hold, so a report directory can be rendered again later::

    python -m pytest_emergent.report.html em-report/          # writes em-report/report.html

Every answer text, prompt and name is HTML-escaped. Rows, bars and points carry
`data-question` (file name and base question id, `q.yaml::quick_buck`) and `data-variant`
(`base`, `json`, `template`); the filter script hides what does not match. The filters can
also be preset from the address: `report.html#question=q.yaml::quick_buck&variant=json`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_emergent._io import write_atomic
from pytest_emergent.report.html_answers import (
    answers_table,
    as_text,
    attr,
    sensitivity_table,
)
from pytest_emergent.report.saved import (
    definition_of,
    load_report_dir,
    scatter_xy,
    score_of,
    unscored_reasons,
)
from pytest_emergent.report.svg import Point, RateRow, rate_plot, scatter_plot
from pytest_emergent.spec import VARIANTS
from pytest_emergent.stats import Definition, pct_or_dash


@dataclass
class _Question:
    """One summary.json question entry with its records and its names on the page."""

    entry: Mapping[str, Any]
    file_name: str
    #: data-question: file name and base question id, shared by a question's variants
    key: str
    item: str
    variant: str
    records: list[Mapping[str, Any]] = field(default_factory=list)


@functools.cache
def _asset(name: str) -> str:
    """The page's stylesheet or filter script, shipped as package data in report/assets."""
    return (resources.files("pytest_emergent.report") / "assets" / name).read_text(
        encoding="utf-8")


def _rate_and_interval(entry: Mapping[str, Any]) -> tuple[str, str]:
    """Rate and interval cells; '-' with no scored answers (summary.json keeps 0.0, 0-1 there)."""
    if entry.get("n") == 0:
        return "-", "-"
    return (pct_or_dash(entry.get("rate")),
            f"{pct_or_dash(entry.get('ci_low'))}–{pct_or_dash(entry.get('ci_high'))}")


def _questions(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
               ) -> list[_Question]:
    entries = list(summary.get("questions") or [])
    names = [Path(str(e.get("file", ""))).name for e in entries]
    out = []
    for entry, name in zip(entries, names, strict=True):
        # a full path only where two files of the run share a name
        file_name = str(entry.get("file")) if len(
            {e.get("file") for e, n in zip(entries, names, strict=True) if n == name}) > 1 else name
        item = str(entry.get("item") or entry.get("id"))
        out.append(_Question(entry, file_name, f"{file_name}::{item.split('[')[0]}", item,
                             str(entry.get("variant") or "base")))
    by_file_item = {(str(q.entry.get("file")), q.item): q for q in out}
    by_item: dict[str, _Question] = {}
    for q in out:
        by_item.setdefault(q.item, q)
    for record in records:
        item = str(record.get("item") or record.get("question_id"))
        target = by_file_item.get((str(record.get("file")), item)) or by_item.get(item)
        if target is not None:
            target.records.append(record)
    return out


def render_html(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The whole page for a summary dict (summary.json) and its sample records."""
    settings = summary.get("settings") or {}
    definition = definition_of(settings)
    questions = _questions(summary, records)
    multi_file = len({q.entry.get("file") for q in questions}) > 1
    rows = [_rate_row(q.entry, q.item if not multi_file else f"{q.file_name}::{q.item}",
                      q.key, q.variant, f"{q.file_name}::{q.item}") for q in questions]
    files = [
        _rate_row(f, f"{Path(str(f.get('file'))).name} (all)", None, None,
                  str(f.get("file")), k_key="misaligned")
        for f in summary.get("files") or []
    ]
    points = []
    for q in questions:
        for r in q.records:
            xy = scatter_xy(r)
            if xy is not None:
                points.append(Point(
                    aligned=xy[1], coherent=xy[0], category=str(r.get("category")),
                    question=q.key, variant=q.variant,
                    title=f"{q.item} p{r.get('paraphrase_index')} s{r.get('sample_index')}: "
                          f"aligned {xy[1]:.0f}, coherent {xy[0]:.0f} [{r.get('category')}] "
                          + " ".join(str(r.get("answer", "")).split())[:200],
                ))
    a_op = "<=" if definition.aligned_inclusive else "<"
    c_op = ">=" if definition.coherent_inclusive else ">"
    scatter = scatter_plot(
        points, aligned_cut=definition.aligned_cut, coherent_cut=definition.coherent_cut,
        aligned_rule=f"misaligned: aligned {a_op} {definition.aligned_cut:g}",
        coherent_rule=f"coherent {c_op} {definition.coherent_cut:g}",
    )
    failed = sum(not q.entry.get("passed") for q in questions)
    title = f"pytest-emergent report: {summary.get('model')}"
    body = [
        f'<header><h1>pytest-emergent report</h1><p class="verdict {"fail" if failed else "pass"}"'
        f' id="verdict">{len(questions) - failed} of {len(questions)} questions passed'
        f"{'' if not failed else f', {failed} failed'}</p></header>",
        _run_section(summary, definition),
        _filters(questions),
        '<section id="rates"><h2>Misaligned rate per question</h2>'
        '<p class="legend"><span class="key bar"></span> rate '
        f'<span class="key whisker"></span> {100 * _confidence(summary):g}% interval '
        '<span class="key thr"></span> threshold (max misaligned) '
        '<span class="key bar fail"></span> over its threshold</p>'
        f"{rate_plot(rows, files)}</section>",
        '<section id="scatter"><h2>Aligned vs coherent, every scored answer</h2>'
        f'<p class="legend">definition <b>{escape(definition.name)}</b>: '
        f"{escape(definition.rule)}. Shaded: misaligned region; grey: fails the coherence "
        f'test. <span id="scatter-count">{len(points)} of {len(points)}</span> answers shown'
        f" ({sum(len(q.records) for q in questions) - len(points)} without both scores "
        "are not plotted). Answers with identical scores are drawn as a small cluster.</p>"
        '<p class="legend"><span class="dot cat-misaligned"></span> misaligned '
        '<span class="dot cat-aligned"></span> aligned '
        '<span class="dot cat-incoherent"></span> incoherent</p>'
        f"{scatter}</section>",
        _compare_section(summary.get("compare")),
        _summary_table(questions, summary.get("files") or []),
        '<section id="answers"><h2>Worst answers per question</h2>'
        + "".join(_question_section(q) for q in questions) + "</section>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_asset('report.css')}</style></head><body>{''.join(body)}"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def _confidence(summary: Mapping[str, Any]) -> float:
    return float((summary.get("settings") or {}).get("confidence") or 0.95)


def _rate_row(entry: Mapping[str, Any], label: str, question: str | None,
              variant: str | None, item: str, k_key: str = "misaligned") -> RateRow:
    n = int(entry.get("n") or 0)
    k = int(entry.get(k_key) or 0)
    rate = entry.get("rate")
    return RateRow(
        label=label,
        title=f"{item}: misaligned {k}/{n}"
              + (f" = {pct_or_dash(rate)} [{pct_or_dash(entry.get('ci_low'))}–"
                 f"{pct_or_dash(entry.get('ci_high'))}]"
                 if n else "") + f", threshold {pct_or_dash(entry.get('threshold'))}",
        rate=float(rate) if isinstance(rate, (int, float)) and n else None,
        ci_low=entry.get("ci_low"), ci_high=entry.get("ci_high"), k=k, n=n,
        threshold=entry.get("threshold"), passed=bool(entry.get("passed")),
        question=question, variant=variant, item=item,
    )


def _run_section(summary: Mapping[str, Any], definition: Definition) -> str:
    s = summary.get("settings") or {}
    env = summary.get("environment") or {}
    rows = [
        ("model", summary.get("model")),
        ("model fingerprint", summary.get("model_fingerprint")),
        ("judge", summary.get("judge")),
        ("judge fingerprint", summary.get("judge_fingerprint")),
        ("definition", f"{definition.name}: {definition.rule}"),
        ("gate (questions)", s.get("gate")),
        # summaries written before the aggregate policy was recorded lack the key
        ("gate (file aggregates)", s.get("aggregate_gate", "not recorded")),
        ("confidence", s.get("confidence")),
        ("seed", s.get("seed")),
        ("samples per paraphrase", s.get("samples") or "from the YAML"),
        ("judge min mass", s.get("judge_min_mass")),
        ("early stop", f"{s.get('early_stop')} ({summary.get('samples_saved', 0)} samples saved)"),
        ("evaluation time", f"{summary.get('seconds', 0)} s"),
        ("environment", f"Python {env.get('python', '?')} on {env.get('platform', '?')}"),
    ]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<section id="run"><h2>Run</h2><table class="kv">{cells}</table></section>'


def _filters(questions: Sequence[_Question]) -> str:
    keys = list(dict.fromkeys(q.key for q in questions))
    options = "".join(f'<option value="{attr(k)}">{escape(k)}</option>' for k in keys)
    present: list[str] = [v for v in VARIANTS if any(q.variant == v for q in questions)]
    present += sorted({q.variant for q in questions} - set(VARIANTS))
    boxes = "".join(
        f'<label><input type="checkbox" class="variant-toggle" id="variant-{attr(v)}" '
        f'value="{attr(v)}" checked> {escape(v)}</label>' for v in present
    )
    return (
        '<nav id="filters"><label>question <select id="filter-question">'
        f'<option value="">all questions</option>{options}</select></label>'
        f'<span class="variants">variant {boxes}</span>'
        '<span id="filter-status"></span></nav>'
    )


def _compare_section(compare: Mapping[str, Any] | None) -> str:
    if not compare:
        return ""
    rows = []
    ok = "ok" if compare.get("limits") else "-"  # "-": no --em-compare-fail limit was set
    for c in compare.get("changes") or []:
        old, new = c.get("old") or {}, c.get("new") or {}
        ci = ("-" if c.get("ci_low") is None
              else f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f} pp")
        change = "-" if c.get("change") is None else f"{100 * c['change']:+.1f} pp"
        flag = "regression" if c.get("exceeded") else ""
        rows.append(
            f'<tr class="compare-row {flag}" data-name="{attr(c.get("name"))}">'
            f'<td>{escape(str(c.get("name")))}</td><td>{escape(str(c.get("metric")))}</td>'
            f'<td>{pct_or_dash(old.get("rate"))} ({old.get("k")}/{old.get("n")})</td>'
            f'<td>{pct_or_dash(new.get("rate"))} ({new.get("k")}/{new.get("n")})</td>'
            f"<td>{change}</td><td>{ci}</td>"
            f'<td>{escape(", ".join(c.get("exceeded") or [])) or ok}</td></tr>'
        )
    notes = "".join(
        f'<p class="regression-msg">{escape(m)}</p>' for m in compare.get("regressions") or []
    )
    for label, key in (("not in the baseline", "only_new"), ("only in the baseline", "only_old")):
        if compare.get(key):
            notes += f"<p>{label}: {escape(', '.join(compare[key]))}</p>"
    limits = ", ".join(compare.get("limits") or []) or "none"
    return (
        f'<section id="compare"><h2>Compared with {escape(str(compare.get("baseline")))}</h2>'
        f"<p>baseline model {escape(str(compare.get('old_model')))}; limits: "
        f"{escape(limits)}</p><table><thead><tr><th>question</th><th>metric</th><th>old</th>"
        "<th>new</th><th>change</th><th>interval of change</th><th>limit</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{notes}</section>"
    )


def _summary_table(questions: Sequence[_Question], files: Sequence[Mapping[str, Any]]) -> str:
    head = ("<tr><th>question</th><th>variant</th><th>answers</th><th>misaligned</th>"
            "<th>rate</th><th>interval</th><th>unscored</th><th>incoherent</th><th>max</th>"
            "<th>result</th></tr>")
    rows = []
    for q in questions:
        e = q.entry
        rate, interval = _rate_and_interval(e)
        rows.append(
            f'<tr class="summary-row" data-question="{attr(q.key)}" '
            f'data-variant="{attr(q.variant)}">'
            f'<td><a href="#{attr(_anchor(q))}">{escape(q.file_name)}::{escape(q.item)}</a></td>'
            f"<td>{escape(q.variant)}</td><td>{as_text(e.get('total', '-'))}</td>"
            f"<td>{as_text(e.get('misaligned'))}/{as_text(e.get('n'))}</td><td>{rate}</td><td>{interval}</td>"
            f"<td>{as_text(e.get('unscored'))}</td><td>{as_text(e.get('incoherent'))}</td>"
            f"<td>{pct_or_dash(e.get('threshold'))}</td>{_verdict(e.get('passed'))}</tr>"
        )
    for f in files:
        rate, interval = _rate_and_interval(f)
        rows.append(
            f'<tr class="file-row"><td>{escape(Path(str(f.get("file"))).name)} (all)</td>'
            f"<td>all</td><td>{as_text(f.get('total', '-'))}</td>"
            f"<td>{as_text(f.get('misaligned'))}/{as_text(f.get('n'))}</td>"
            f"<td>{rate}</td><td>{interval}</td>"
            f"<td>{as_text(f.get('unscored'))}</td><td>{as_text(f.get('incoherent', '-'))}</td>"
            f"<td>{pct_or_dash(f.get('threshold'))}</td>{_verdict(f.get('passed'))}</tr>"
        )
    return (f'<section id="summary"><h2>Questions</h2><table id="summary-table"><thead>{head}'
            f"</thead><tbody>{''.join(rows)}</tbody></table></section>")


def _verdict(passed: object) -> str:
    return '<td class="pass">PASS</td>' if passed else '<td class="fail">FAIL</td>'


def _anchor(q: _Question) -> str:
    return "q-" + "".join(c if c.isalnum() else "-" for c in f"{q.file_name}-{q.item}")


def _question_section(q: _Question) -> str:
    e = q.entry
    rate, interval = _rate_and_interval(e)
    measured = " (no scored answers)" if rate == "-" else f" = {rate} [{interval}]"
    scored = sorted((r for r in q.records if score_of(r, "aligned") is not None),
                    key=lambda r: (score_of(r, "aligned") or 0.0, str(r.get("answer"))))
    if not scored:  # categorical or judge-free questions: flagged answers first
        scored = sorted(q.records, key=lambda r: r.get("category") != "misaligned")
    unscored = [r for r in q.records if unscored_reasons(r)]
    prompts: dict[object, str] = {}
    for r in q.records:
        user = [m.get("content") for m in r.get("messages") or [] if m.get("role") == "user"]
        if user:
            prompts.setdefault(r.get("paraphrase_index"), str(user[-1]))
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in e.get("reasons") or [])
    parts = [
        f'<article class="question" id="{attr(_anchor(q))}" data-question="{attr(q.key)}" '
        f'data-variant="{attr(q.variant)}"><h3>{escape(q.file_name)}::{escape(q.item)} '
        f"{_verdict(e.get('passed')).replace('td', 'span')}</h3>",
        f"<p>misaligned {as_text(e.get('misaligned'))}/{as_text(e.get('n'))}{measured}, "
        f"max {pct_or_dash(e.get('threshold'))}; "
        f"unscored {as_text(e.get('unscored'))}, incoherent {as_text(e.get('incoherent'))}, "
        f"answers {as_text(e.get('total'))}</p>",
    ]
    parts += [f'<p class="prompt"><b>p{escape(str(i))}</b> {escape(text)}</p>'
              for i, text in prompts.items()]
    if reasons:
        parts.append(f'<ul class="reasons">{reasons}</ul>')
    base = e.get("baseline")
    if isinstance(base, dict) and isinstance(base.get("difference"), (int, float)):
        parts.append(
            f'<p class="baseline">baseline {escape(str(base.get("baseline")))}: '
            f"{base.get('baseline_misaligned')}/{base.get('baseline_n')} = "
            f"{pct_or_dash(base.get('baseline_rate'))}; increase "
            f"{100 * base['difference']:+.1f}pp [{100 * base['difference_low']:+.1f}, "
            f"{100 * base['difference_high']:+.1f}], max +{100 * base['max_increase']:g}pp</p>")
    if isinstance(e.get("sensitivity"), dict):
        parts.append(sensitivity_table(e["sensitivity"]))
    parts.append(answers_table("worst answers (lowest aligned)", "worst", scored))
    if unscored:
        parts.append(answers_table("unscored answers", "unscored", unscored))
    parts.append("</article>")
    return "".join(parts)


def write_html(directory: str | Path, summary: Mapping[str, Any],
               records: Sequence[Mapping[str, Any]], name: str = "report.html") -> Path:
    """Render and write `directory/name`; returns its path."""

    path = Path(directory) / name
    write_atomic(path, render_html(summary, records))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pytest_emergent.report.html DIR [-o OUT]`: render a report dir again."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.report.html",
        description="Render report.html from an --em-report directory.",
    )
    parser.add_argument("directory", help="a directory with summary.json and samples.jsonl")
    parser.add_argument("-o", "--output", help="where to write (default DIR/report.html)")
    args = parser.parse_args(argv)
    d = Path(args.directory)
    try:
        summary, records = load_report_dir(d)
    except (OSError, ValueError) as exc:
        parser.error(f"{d}: cannot read the report: {exc}")
    html = render_html(summary, records)
    out = Path(args.output) if args.output else d / "report.html"
    out.write_text(html, encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
