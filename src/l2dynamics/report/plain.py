"""The report's opening: per paper, a few plain sentences of what held, what did not, and what
it means for choosing λ, written from the claims themselves (no hand-written result)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PAPERS = ("Lewkowycz & Gur-Ari 2020", "van Laarhoven 2017")
SHOWN = 3  # claims named per sentence


def _papers_of(study: Mapping[str, Any]) -> list[str]:
    paper = str(study.get("paper") or "")
    return [p for p in PAPERS if p in paper] or ([paper] if paper else [])


def _first_clause(text: str, limit: int = 140) -> str:
    text = str(text or "").split(";")[0].strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _short_claim(text: str) -> str:
    """A claim without its leading "(qualifier)" labels, cut to one clause of ≤ 70 chars."""
    return _first_clause(re.sub(r"^(\([^)]*\)\s*)+", "", str(text or "")), 70)


def _short_measure(text: str) -> str:
    """A measurement's first clause, before any parenthesis or semicolon."""
    return _first_clause(re.split(r" \(|;", str(text or ""))[0], 60)


def _named(claims: Sequence[tuple[Mapping, Mapping]], *, measured: bool) -> str:
    parts: list[str] = []
    for _, claim in claims:
        part = _short_claim(claim.get("claim", ""))
        if measured:
            part += f" ({_short_measure(claim.get('measured', ''))})"
        if part not in parts:
            parts.append(part)
    more = len(parts) - SHOWN
    return "; ".join(parts[:SHOWN]) + (f"; and {more} more" if more > 0 else "")


# what the studies that choose λ claim, recognized by their wording, and how to say it
CHOICES = (("beats λ = 0", "a λ > 0 beat λ = 0 beyond the noise"),
           ("one short run", "the one-short-run prediction matched the grid's best"),
           ("selector", "the λ selector matched the grid's best"),
           ("AutoL2", "AutoL2 matched the best constant λ"),
           ("EMA rule", "the EMA rule matched the grid's best"))


def choosing_sentences(rows: Sequence[tuple[Mapping, Mapping]]) -> list[str]:
    """What the claims say for choosing λ: per kind of claim, how many held; then what the
    L2-versus-λ = 0 comparisons mean, from their counts alone."""
    parts, gain = [], None
    for pattern, said in CHOICES:
        found = [c for _, c in rows if pattern in str(c.get("claim", ""))
                 or (pattern == "beats λ = 0" and "L2 helps" in str(c.get("claim", "")))]
        if not found:
            continue
        held = sum(c.get("verdict") == "holds" for c in found)
        parts.append(f"{said} in {held} of {len(found)}")
        if pattern == "beats λ = 0":
            gain = (held, len(found))
    if not parts:
        return []
    out = ["For choosing λ: " + "; ".join(parts) + " (the rest did not hold or could not be "
           "decided)."]
    if gain is not None and gain[0] == 0:
        out.append("In these runs a tuned λ bought no measurable accuracy over λ = 0.")
    elif gain is not None:
        out.append(f"A tuned λ beat λ = 0 in {gain[0]} of {gain[1]} comparisons; the study "
                   "sections show by how much.")
    return out


def paper_sentences(paper: str, studies: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sentences for one paper: the tally, what held, what did not, and what the claims
    of choosing λ say."""
    rows = [(s, c) for s in studies if paper in _papers_of(s) for c in (s.get("claims") or [])]
    if not rows:
        return [f"No claim of {paper} was checked in this run."]
    by = {v: [(s, c) for s, c in rows if c.get("verdict") == v]
          for v in ("holds", "consistent", "does not hold", "undetermined")}
    n_studies = len({s["key"] for s, _ in rows})
    out = [f"{len(rows)} claims in {n_studies} {'study' if n_studies == 1 else 'studies'}: "
           f"{len(by['holds'])} hold, {len(by['consistent'])} are consistent but too imprecise "
           f"to confirm, {len(by['does not hold'])} do not hold, {len(by['undetermined'])} "
           "could not be decided."]
    if by["holds"]:
        out.append("Held: " + _named(by["holds"], measured=False) + ".")
    if by["does not hold"]:
        out.append("Did not hold: " + _named(by["does not hold"], measured=True) + ".")
    return out + choosing_sentences(rows)


def plain_summary(studies: Sequence[Mapping[str, Any]]) -> str:
    """The HTML section "What this run says": one paragraph per paper."""
    papers = [p for p in PAPERS if any(p in _papers_of(s) for s in studies)]
    if not papers:
        return ""
    out = ['<section id="summary"><h2>What this run says</h2>']
    for paper in papers:
        sentences = " ".join(escape(x) for x in paper_sentences(paper, studies))
        out.append(f"<p><strong>{escape(paper)}.</strong> {sentences}</p>")
    out.append('<p class="muted">Each sentence is written from the verdicts in the table below; '
               "“holds” means the interval lies inside the stated tolerance of the paper's "
               "value.</p></section>")
    return "\n".join(out)


__all__ = ["PAPERS", "choosing_sentences", "paper_sentences", "plain_summary"]
