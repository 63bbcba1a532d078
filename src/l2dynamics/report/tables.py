"""The report's tables: the claims (with their verdict badges), a study's data tables, and the
overview that opens the verdicts, one row per study, so that the page's first screen is not a
table of every claim."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from l2dynamics.analysis.verdicts import VERDICT_LABELS, VERDICTS

# the verdicts and what each says on the page, defined once with the rules
# ("consistent": the paper's value is inside the interval, but the interval is wider than the
# stated margin, so the claim is not confirmed)
VERDICT_CLASS = {"holds": "holds", "consistent": "consistent", "does not hold": "fails",
                 "undetermined": "undetermined"}


def e(value: Any) -> str:
    """`value` as escaped HTML text (None: empty)."""
    return escape("" if value is None else str(value), quote=True)


def anchor(key: str) -> str:
    """The HTML id of a study's section."""
    return "study-" + re.sub(r"[^A-Za-z0-9_.-]", "-", key)


def cell(value: Any) -> tuple[str, bool]:
    """(escaped text, is numeric) of one table cell."""
    if value is None:
        return "—", False
    if isinstance(value, bool):
        return e(value), False
    if isinstance(value, int):
        return e(value), True
    if isinstance(value, float):
        return (f"{value:.4g}" if math.isfinite(value) else "—"), True
    return e(value), False


def badge(verdict: str) -> str:
    return f'<span class="badge {VERDICT_CLASS[verdict]}">{e(VERDICT_LABELS[verdict])}</span>'


def _study_link(study: Mapping[str, Any]) -> str:
    return f'<a href="#{e(anchor(study["key"]))}">{e(study.get("title") or study["key"])}</a>'


def claims_table(rows: Sequence[tuple[Mapping, Mapping]], with_study: bool) -> str:
    head = (["Study"] if with_study else []) + ["Paper claim", "Measured", "Interval", "Verdict"]
    out = ['<div class="table-wrap"><table class="claims"><thead><tr>']
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for study, claim in rows:
        out.append("<tr>")
        if with_study:
            out.append(f"<td>{_study_link(study)}</td>")
        ci = claim.get("ci")
        out.append(f"<td>{e(claim.get('claim'))}</td><td>{e(claim.get('measured'))}</td>"
                   f"<td>{e(ci) if ci else '—'}</td><td>{badge(claim['verdict'])}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def verdict_overview(studies: Sequence[Mapping[str, Any]]) -> str:
    """One row per study with claims: its paper and how many of its claims got each verdict
    (the claims themselves are in the study's section, and all together in a folded table)."""
    rows = [s for s in studies if s.get("claims")]
    out = ['<div class="table-wrap"><table class="overview"><thead><tr><th>Study</th>'
           "<th>Paper</th>"]
    out += [f'<th class="num">{badge(v)}</th>' for v in VERDICTS]
    out.append("</tr></thead><tbody>")
    for study in rows:
        counts = {v: sum(c.get("verdict") == v for c in study["claims"]) for v in VERDICTS}
        out.append(f"<tr><td>{_study_link(study)}</td><td>{e(study.get('paper'))}</td>")
        out += [f'<td class="num">{counts[v] if counts[v] else "·"}</td>' for v in VERDICTS]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    every = [(s, c) for s in rows for c in s["claims"]]
    out.append(f"<details><summary>All {len(every)} claims in one table</summary>"
               f"{claims_table(every, with_study=True)}</details>")
    return "".join(out)


def data_table(table: Mapping[str, Any]) -> str:
    out = []
    if table.get("title"):
        out.append(f"<h4>{e(table['title'])}</h4>")
    out.append('<div class="table-wrap"><table><thead><tr>')
    out += [f"<th>{e(c)}</th>" for c in table.get("columns", [])]
    out.append("</tr></thead><tbody>")
    for row in table.get("rows", []):
        out.append("<tr>")
        for value in row:
            text, numeric = cell(value)
            out.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


__all__ = ["VERDICT_CLASS", "anchor", "badge", "cell", "claims_table", "data_table", "e",
           "verdict_overview"]
