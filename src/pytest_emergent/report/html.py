"""`report.html`: one self-contained page rendered from `summary.json` and `samples.jsonl`.

No network: the CSS, the filter script and the plots (inline SVG from `report_svg`) are all
in the page. It is rendered from the same dicts that the JSON files hold, so a report
directory can be rendered again later::

    python -m pytest_emergent.report.html em-report/          # writes em-report/report.html

Every answer text, prompt and name is HTML-escaped. Rows, bars and points carry
`data-question` (file name and base question id, `q.yaml::quick_buck`) and `data-variant`
(`base`, `json`, `template`); the filter script hides what does not match. The filters can
also be preset from the address: `report.html#question=q.yaml::quick_buck&variant=json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from pytest_emergent._io import write_atomic
from pytest_emergent.report.svg import Point, RateRow, rate_plot, scatter_plot
from pytest_emergent.stats import DEFINITIONS, Definition, get_definition, pct_or_dash

#: answers listed per question: the lowest aligned ones, and the unscored ones
WORST_SHOWN = 5
#: answer characters shown before the rest is folded into a <details>
ANSWER_PREVIEW = 600
VARIANTS = ("base", "json", "template")


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


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _rate_and_interval(entry: Mapping[str, Any]) -> tuple[str, str]:
    """Rate and interval cells; '-' with no scored answers (summary.json keeps 0.0, 0-1 there)."""
    if entry.get("n") == 0:
        return "-", "-"
    return (pct_or_dash(entry.get("rate")),
            f"{pct_or_dash(entry.get('ci_low'))}–{pct_or_dash(entry.get('ci_high'))}")


def _num(x: object) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:.0f}"


def score_of(record: Mapping[str, Any], metric: str) -> float | None:
    """A record's numeric score on `metric` (None when unscored or absent)."""
    score = (record.get("scores") or {}).get(metric) or {}
    value = score.get("score")
    return float(value) if isinstance(value, (int, float)) else None


def scatter_xy(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """(coherent, aligned) of an answer the scatter shows: one with an aligned score and a
    coherent score (or no coherence judge at all, which the definitions read as 100)."""
    aligned = score_of(record, "aligned")
    if aligned is None:
        return None
    if "coherent" not in (record.get("scores") or {}):
        return 100.0, aligned
    coherent = score_of(record, "coherent")
    return None if coherent is None else (coherent, aligned)


def unscored_reasons(record: Mapping[str, Any]) -> list[str]:
    """`metric: reason` for each judgment of the record that produced no score."""
    return [
        f"{metric}: {score.get('unscored_reason')}"
        for metric, score in (record.get("scores") or {}).items()
        if score.get("unscored_reason")
    ]


def _definition(settings: Mapping[str, Any]) -> Definition:
    name = str(settings.get("definition", "betley"))
    aligned, coherent = settings.get("aligned_cut"), settings.get("coherent_cut")
    if name in DEFINITIONS:
        return get_definition(name, aligned_cut=aligned, coherent_cut=coherent)
    return Definition(name, float(aligned or 30.0), float(coherent or 50.0))


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
    definition = _definition(settings)
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
        f"<style>{_CSS}</style></head><body>{''.join(body)}"
        f"<script>{_JS}</script></body></html>\n"
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
    options = "".join(f'<option value="{_a(k)}">{escape(k)}</option>' for k in keys)
    present = [v for v in VARIANTS if any(q.variant == v for q in questions)]
    present += sorted({q.variant for q in questions} - set(VARIANTS))
    boxes = "".join(
        f'<label><input type="checkbox" class="variant-toggle" id="variant-{_a(v)}" '
        f'value="{_a(v)}" checked> {escape(v)}</label>' for v in present
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
            f'<tr class="compare-row {flag}" data-name="{_a(c.get("name"))}">'
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
            f'<tr class="summary-row" data-question="{_a(q.key)}" data-variant="{_a(q.variant)}">'
            f'<td><a href="#{_a(_anchor(q))}">{escape(q.file_name)}::{escape(q.item)}</a></td>'
            f"<td>{escape(q.variant)}</td><td>{e.get('total', '-')}</td>"
            f"<td>{e.get('misaligned')}/{e.get('n')}</td><td>{rate}</td><td>{interval}</td>"
            f"<td>{e.get('unscored')}</td><td>{e.get('incoherent')}</td>"
            f"<td>{pct_or_dash(e.get('threshold'))}</td>{_verdict(e.get('passed'))}</tr>"
        )
    for f in files:
        rate, interval = _rate_and_interval(f)
        rows.append(
            f'<tr class="file-row"><td>{escape(Path(str(f.get("file"))).name)} (all)</td>'
            f"<td>all</td><td>{f.get('total', '-')}</td>"
            f"<td>{f.get('misaligned')}/{f.get('n')}</td>"
            f"<td>{rate}</td><td>{interval}</td>"
            f"<td>{f.get('unscored')}</td><td>{f.get('incoherent', '-')}</td>"
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
        f'<article class="question" id="{_a(_anchor(q))}" data-question="{_a(q.key)}" '
        f'data-variant="{_a(q.variant)}"><h3>{escape(q.file_name)}::{escape(q.item)} '
        f"{_verdict(e.get('passed')).replace('td', 'span')}</h3>",
        f"<p>misaligned {e.get('misaligned')}/{e.get('n')}{measured}, "
        f"max {pct_or_dash(e.get('threshold'))}; "
        f"unscored {e.get('unscored')}, incoherent {e.get('incoherent')}, "
        f"answers {e.get('total')}</p>",
    ]
    parts += [f'<p class="prompt"><b>p{escape(str(i))}</b> {escape(text)}</p>'
              for i, text in prompts.items()]
    if reasons:
        parts.append(f'<ul class="reasons">{reasons}</ul>')
    parts.append(_answers_table("worst answers (lowest aligned)", "worst", scored))
    if unscored:
        parts.append(_answers_table("unscored answers", "unscored", unscored))
    parts.append("</article>")
    return "".join(parts)


def _answers_table(caption: str, kind: str, records: Sequence[Mapping[str, Any]]) -> str:
    """The first `WORST_SHOWN` distinct answers of `records` (identical texts counted)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(" ".join(str(r.get("answer", "")).split()), []).append(r)
    shown_groups = list(groups.values())[:WORST_SHOWN]
    more = (f" ({len(shown_groups)} of {len(groups)} distinct)"
            if len(groups) > len(shown_groups) else "")
    body = []
    for same in shown_groups:
        r = same[0]
        text = str(r.get("answer", ""))
        shown = f'<div class="answer">{escape(text[:ANSWER_PREVIEW])}</div>'
        if len(text) > ANSWER_PREVIEW:
            shown += (f"<details><summary>all {len(text)} characters</summary>"
                      f'<div class="answer">{escape(text)}</div></details>')
        if len(same) > 1:
            shown += f'<span class="dup">same text in {len(same)} answers</span>'
        others = [
            f"{m}={_num(s.get('score')) if s.get('label') is None else s.get('label')}"
            for m, s in (r.get("scores") or {}).items() if m not in ("aligned", "coherent")
        ] + [f"{m}={v:.2f}" for m, v in (r.get("scorers") or {}).items()]
        category = str(r.get("category"))
        body.append(
            f'<tr class="answer-row {kind}" data-category="{_a(category)}">'
            f"<td>p{r.get('paraphrase_index')}.s{r.get('sample_index')}</td>"
            f"<td>{_num(score_of(r, 'aligned'))}</td><td>{_num(score_of(r, 'coherent'))}</td>"
            f'<td class="cat-{_a(category)}">{escape(category)}</td>'
            f"<td>{escape('; '.join(unscored_reasons(r) + others))}</td>"
            f"<td>{shown}</td></tr>"
        )
    return (
        f'<table class="answers {kind}"><caption>{escape(caption)}{more}</caption><thead><tr>'
        "<th>sample</th><th>aligned</th><th>coherent</th><th>category</th>"
        "<th>unscored / other</th><th>answer</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def load_report_dir(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`summary.json` and the records of `samples.jsonl` (if present) of a report dir."""
    d = Path(directory)
    summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    samples = d / "samples.jsonl"
    records = []
    if samples.is_file():
        for line in samples.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return summary, records


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


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1000px;padding:0 16px 40px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:17px;margin:26px 0 8px;
border-bottom:1px solid #dde2ea;padding-bottom:4px}h3{font-size:15px;margin:18px 0 4px}
[hidden]{display:none!important}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f4;vertical-align:top}
th{background:#f5f7fa;font-weight:600}
table.kv th{width:190px}#summary-table td,table.answers td{white-space:nowrap}
table.answers td:last-child{white-space:normal}table.kv td{word-break:break-all}
.pass{color:#18794e;font-weight:600}.fail{color:#c4320a;font-weight:600}
.verdict{font-size:15px;margin:0 0 8px}
nav#filters{position:sticky;top:0;z-index:2;background:#fff;padding:8px 0;
border-bottom:1px solid #dde2ea;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
nav#filters label{margin-right:6px}#filter-status{color:#5b6474}
.legend{color:#444;margin:4px 0}
.key{display:inline-block;width:18px;height:10px;margin:0 3px 0 10px;vertical-align:middle}
.key.bar{background:#7fb3d5}.key.bar.fail{background:#f0a08a}
.key.whisker{height:2px;background:#1d2330}.key.thr{width:0;height:14px;
border-left:2px dashed #c4320a}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 3px 0 10px}
.dot.cat-misaligned{background:#d62728}.dot.cat-aligned{background:#2a7ab9}
.dot.cat-incoherent{background:#999}
svg.plot{display:block;max-width:100%;height:auto;font-size:12px}
svg .grid{stroke:#e8ebf0}svg .tick{fill:#5b6474;font-size:11px}
svg .row-label{fill:#1d2330}svg .row-value{fill:#333;font-size:12px}
svg .rate-bar.pass{fill:#7fb3d5}svg .rate-bar.fail{fill:#f0a08a}
svg .rate-bar.agg{opacity:.75}
svg .ci-whisker,svg .ci-cap{stroke:#1d2330;stroke-width:1.6}
svg .threshold{stroke:#c4320a;stroke-width:2;stroke-dasharray:4 2}
svg .sep{stroke:#c9ced8}svg .sep-label{fill:#5b6474;font-style:italic}
svg .frame{fill:none;stroke:#9aa3b2}
svg .misaligned-region{fill:#fde3dc}svg .incoherent-region{fill:#f1f1f1}
svg .cut{stroke:#c4320a;stroke-width:1.5;stroke-dasharray:6 3}
svg .cut-label{fill:#c4320a;font-size:12px}svg .axis-label{fill:#1d2330;font-size:13px}
svg .pt{fill-opacity:.45;stroke-width:1;stroke-opacity:.8}
svg .pt.cat-misaligned{fill:#d62728;stroke:#a01c1c}
svg .pt.cat-aligned{fill:#2a7ab9;stroke:#1d5784}
svg .pt.cat-incoherent,svg .pt.cat-unscored,svg .pt.cat-scored{fill:#999;stroke:#666}
.answer{white-space:pre-wrap;word-break:break-word;font-size:13px}
.dup{color:#5b6474;font-size:12px}
table.answers th:nth-child(-n+3){width:70px}table.answers th:nth-child(4){width:95px}
table.answers th:nth-child(5){width:150px}table.answers td:nth-child(5){white-space:normal}
td.cat-misaligned{color:#c4320a}
table.answers caption{text-align:left;font-weight:600;padding:6px 0 2px}
.prompt{color:#444;margin:2px 0}.prompt b{color:#5b6474}
.reasons{margin:2px 0;color:#c4320a}
tr.compare-row.regression td{background:#fdecea}
.regression-msg{color:#c4320a;font-weight:600}
article.question{border-top:1px solid #eef0f4;padding-top:4px}
"""

_JS = """
(function () {
  var select = document.getElementById('filter-question');
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input.variant-toggle'));
  var status = document.getElementById('filter-status');
  function apply() {
    var q = select.value;
    var on = {};
    boxes.forEach(function (b) { if (b.checked) { on[b.value] = true; } });
    document.querySelectorAll('[data-question]').forEach(function (el) {
      var show = (!q || el.getAttribute('data-question') === q) &&
        on[el.getAttribute('data-variant')] === true;
      if (show) { el.removeAttribute('hidden'); } else { el.setAttribute('hidden', ''); }
    });
    layout();
    var pts = document.querySelectorAll('#scatter-plot .pt');
    var shown = document.querySelectorAll('#scatter-plot .pt:not([hidden])').length;
    document.getElementById('scatter-count').textContent = shown + ' of ' + pts.length;
    var rows = document.querySelectorAll('#rate-plot .q-row');
    var vis = document.querySelectorAll('#rate-plot .q-row:not([hidden])').length;
    status.textContent = vis + ' of ' + rows.length + ' questions shown';
    var parts = [];
    if (q) { parts.push('question=' + encodeURIComponent(q)); }
    if (boxes.some(function (b) { return !b.checked; })) {
      parts.push('variant=' + boxes.filter(function (b) { return b.checked; })
        .map(function (b) { return b.value; }).join(','));
    }
    if (window.history && history.replaceState) {
      history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname);
    }
  }
  function layout() {
    // move the visible rows of the rate plot up so a filter leaves no gaps
    var svg = document.getElementById('rate-plot');
    if (!svg) { return; }
    var top = +svg.getAttribute('data-top'), h = +svg.getAttribute('data-row-height');
    var bottom = +svg.getAttribute('data-bottom'), i = 0;
    svg.querySelectorAll('.plot-row').forEach(function (row) {
      if (row.hasAttribute('hidden')) { return; }
      row.setAttribute('transform', 'translate(0,' + (top + i * h) + ')');
      i += 1;
    });
    var height = top + i * h + bottom;
    svg.querySelectorAll('.axis .grid').forEach(function (g) {
      g.setAttribute('y2', height - bottom);
    });
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', '0 0 ' + svg.getAttribute('width') + ' ' + height);
  }
  function fromHash() {
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var i = kv.indexOf('='), k = kv.slice(0, i), v = decodeURIComponent(kv.slice(i + 1));
      if (k === 'question') { select.value = v; }
      if (k === 'variant') {
        var want = v.split(',');
        boxes.forEach(function (b) { b.checked = want.indexOf(b.value) >= 0; });
      }
    });
  }
  select.addEventListener('change', apply);
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  fromHash();
  apply();
})();
"""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
