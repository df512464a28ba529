"""The answer tables of the report page: the lowest-aligned and the unscored answers of a
question, identical texts counted once, long answers folded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pytest_emergent.report.saved import score_of, unscored_reasons

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
            f"<td>p{r.get('paraphrase_index')}.s{r.get('sample_index')}</td>"
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
