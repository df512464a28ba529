"""The tables of a question's section on the report page: the lowest-aligned and the unscored
answers (identical texts counted once, long answers folded), and the rate's sensitivity to
the definition and its cut-offs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pytest_emergent.report.saved import score_of, unscored_reasons


def as_text(value: Any) -> str:
    """A value of a saved report as HTML text: a report directory re-rendered may hold
    anything where a number is expected."""
    return escape(str(value))

#: answers listed per question: the lowest aligned ones, and the unscored ones
WORST_SHOWN = 5
#: answer characters shown before the rest is folded into a <details>
ANSWER_PREVIEW = 600


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def num(x: object) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:.0f}"


def answers_table(caption: str, kind: str, records: Sequence[Mapping[str, Any]]) -> str:
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
            f"{m}={num(s.get('score')) if s.get('label') is None else s.get('label')}"
            for m, s in (r.get("scores") or {}).items() if m not in ("aligned", "coherent")
        ] + [f"{m}={v:.2f}" for m, v in (r.get("scorers") or {}).items()]
        category = str(r.get("category"))
        body.append(
            f'<tr class="answer-row {kind}" data-category="{attr(category)}">'
            f"<td>p{as_text(r.get('paraphrase_index'))}.s{as_text(r.get('sample_index'))}</td>"
            f"<td>{num(score_of(r, 'aligned'))}</td><td>{num(score_of(r, 'coherent'))}</td>"
            f'<td class="cat-{attr(category)}">{escape(category)}</td>'
            f"<td>{escape('; '.join(unscored_reasons(r) + others))}</td>"
            f"<td>{shown}</td></tr>"
        )
    return (
        f'<table class="answers {kind}"><caption>{escape(caption)}{more}</caption><thead><tr>'
        "<th>sample</th><th>aligned</th><th>coherent</th><th>category</th>"
        "<th>unscored / other</th><th>answer</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def sensitivity_table(data: Mapping[str, Any]) -> str:
    """The rate under each shipped definition and under moved cut-offs; a verdict that a
    5-point move would flip is flagged."""
    def rate(entry: Mapping[str, Any]) -> str:
        value = entry.get("rate")
        share = "-" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"
        return f"{share} ({entry.get('misaligned')}/{entry.get('n')})"

    cells = [f"<th>{escape(str(name))}</th><td>{rate(entry)}</td>"
             for name, entry in (data.get("definitions") or {}).items()]
    cells += [f"<th>{as_text(e.get('cut'))} cut {int(e.get('shift', 0)):+d}</th>"
              f"<td>{rate(e)}</td>" for e in data.get("shifts") or []]
    near = data.get("near_cut") or {}
    flips = list(data.get("flips") or [])
    flag = (f'<p class="flip">verdict flips with the {escape(", ".join(map(str, flips)))}</p>'
            if flips else "")
    return (
        f'<table class="kv sensitivity"{" data-flips" if flips else ""}>'
        "<caption>rate under each definition and with the cut-offs moved</caption>"
        + "".join(f"<tr>{c}</tr>" for c in cells)
        + f"<tr><th>scores within {data.get('near_within', 2)} points of a cut</th><td>"
        f"aligned {near.get('aligned', 0)}, coherent {near.get('coherent', 0)}</td></tr>"
        + f"</table>{flag}"
    )
