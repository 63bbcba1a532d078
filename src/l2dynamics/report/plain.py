"""The report's opening: per paper, a few plain sentences of what held, what did not, and what
it means for choosing λ, written from the claims themselves (no hand-written result)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PAPERS = ("Lewkowycz & Gur-Ari 2020", "van Laarhoven 2017")
SHOWN = 3  # claims named per sentence
CHOOSING = ("tuning", "predict")  # study keys that speak to choosing λ (key contains one)


def _papers_of(study: Mapping[str, Any]) -> list[str]:
    paper = str(study.get("paper") or "")
    return [p for p in PAPERS if p in paper] or ([paper] if paper else [])


def _first_clause(text: str, limit: int = 140) -> str:
    text = str(text or "").split(";")[0].strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _named(claims: Sequence[tuple[Mapping, Mapping]], *, measured: bool) -> str:
    parts = []
    for study, claim in claims[:SHOWN]:
        what = _first_clause(claim.get("claim", ""), 110)
        where = study.get("title") or study.get("key")
        part = f"{what} ({where}"
        part += f": {_first_clause(claim.get('measured', ''), 90)})" if measured else ")"
        parts.append(part)
    more = len(claims) - SHOWN
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def paper_sentences(paper: str, studies: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sentences for one paper: the tally, what held, what did not, and, where a study
    chose λ, how that went."""
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
    choosing = [(s, c) for s, c in rows if any(k in s["key"] for k in CHOOSING)]
    if choosing:
        held = sum(c.get("verdict") == "holds" for _, c in choosing)
        failed = [(s, c) for s, c in choosing if c.get("verdict") == "does not hold"]
        text = (f"For choosing λ: {held} of {len(choosing)} claims of the studies that choose λ "
                "hold")
        if failed:
            text += "; not: " + _named(failed, measured=True)
        out.append(text + ". See the tuning sections below for what each method cost.")
    return out


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


__all__ = ["PAPERS", "paper_sentences", "plain_summary"]
