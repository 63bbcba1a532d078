"""The reproduction report: one self-contained HTML page plus a machine-readable summary.

:func:`render_report` turns the summary of a ``l2dynamics reproduce`` run into
``out_dir/index.html`` and ``out_dir/summary.json``. Both are written atomically (temporary
file in ``out_dir`` + :func:`os.replace`), so a crash never leaves half a page, and nothing is
written at all when the summary is invalid (e.g. a figure file is missing).

The page needs nothing but the files in ``out_dir``: CSS is inline, there is no JavaScript, no
web font and no CDN; every piece of text from the summary goes through :func:`html.escape`;
colours follow the reader's light/dark preference (``prefers-color-scheme``).

Schema of ``summary`` (a plain, JSON-able dict)::

    {
      "suite": "mini" | "paper",
      "created": str,                 # ISO 8601 time, e.g. "2025-01-31T12:00:00+00:00"
      "machine": str,                 # e.g. "2-core x86_64 CPU, Debian 12"
      "wall_seconds": float,          # wall time of the whole run
      "command": str,                 # the exact command that regenerates everything
      "versions": {"l2dynamics": str, "torch": str, "python": str},
      "studies": [{
        "key": str,                   # unique; used as the HTML anchor "study-<key>"
        "title": str,
        "paper": "Lewkowycz & Gur-Ari 2020" | "van Laarhoven 2017",
        "description": str,           # a paragraph: what was run, at what scale
        "status": "ok" | "failed" | "skipped",
        "error": str | None,          # shown prominently when status is "failed"
        "wall_seconds": float,
        "command": str,               # the exact command for this study alone
        "claims": [{"claim": str, "measured": str,
                    "verdict": "holds" | "consistent" | "does not hold" | "undetermined",
                    "ci": str | None}],
        "figures": [{"path": str,     # relative to out_dir, e.g. "figures/tstar.png"; must exist
                     "caption": str}],
        "tables": [{"title": str, "columns": [str],
                    "rows": [[str | float | int | None]]}],
        "configs": dict,              # JSON-able; shown as pretty JSON in a <details> block
        "design_source": str,         # optional: where the design is fixed (suite file, entry)
        "design_history": [{"date", "change", "why"}],  # optional: changes after looking
      }],
      "changelog": [{"date": str, "study": str, "change": str, "why": str}],  # optional
    }

Figure paths must be relative, stay inside ``out_dir`` and name existing files; otherwise
:func:`render_report` raises :class:`ReportError` (a ``ValueError``) listing every offending
path. In ``summary.json`` non-finite floats (NaN, inf) become ``null`` (strict JSON) and values
that JSON cannot hold (e.g. ``Path``) are written as strings.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from l2dynamics.analysis.verdicts import VERDICTS
from l2dynamics.errors import L2DynamicsError
from l2dynamics.report.style import CSS as _CSS
from l2dynamics.report.tables import anchor as _anchor
from l2dynamics.report.tables import cell as _cell
from l2dynamics.report.tables import claims_table, data_table, verdict_overview
from l2dynamics.report.tables import e as _e

__all__ = ["VERDICTS", "ReportError", "render_report", "verdict_counts"]

STATUSES = ("ok", "failed", "skipped")


class ReportError(L2DynamicsError, ValueError):
    """The summary cannot be rendered (missing figure, unknown verdict, bad field)."""


# ----------------------------------------------------------------------------- public API


def verdict_counts(summary: Mapping[str, Any]) -> dict[str, int]:
    """Count the claims of every study by verdict.

    Returns ``{"holds": n, "consistent": n, "does not hold": n, "undetermined": n, "total": n}``
    (every verdict key is always present). Unknown verdicts raise :class:`ReportError`.
    """
    counts = {v: 0 for v in VERDICTS}
    for study in summary.get("studies", []):
        for claim in study.get("claims", []):
            verdict = claim.get("verdict")
            if verdict not in counts:
                raise ReportError(
                    f"study {study.get('key')!r}: verdict {verdict!r} is not one of {VERDICTS}")
            counts[verdict] += 1
    counts["total"] = sum(counts[v] for v in VERDICTS)
    return counts


def render_report(summary: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/summary.json``; return the index path.

    Validates first (see the module docstring for the schema): a missing figure file, an
    absolute figure path, an unknown verdict or status, or a duplicate study key raises
    :class:`ReportError` and writes nothing.
    """
    out_dir = Path(out_dir)
    _validate(summary, out_dir)
    page = _render_page(summary, out_dir)
    data = json.dumps(_jsonable(summary), indent=2, ensure_ascii=False, allow_nan=False,
                      default=str)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / "summary.json", data + "\n")
    index = out_dir / "index.html"
    _write_atomic(index, page)
    return index


# ----------------------------------------------------------------------------- validation


def _validate(summary: Mapping[str, Any], out_dir: Path) -> None:
    if not isinstance(summary, Mapping):
        raise ReportError(f"summary must be a dict, got {type(summary).__name__}")
    missing_keys = [k for k in ("suite", "created", "machine", "wall_seconds", "command",
                                "versions", "studies") if k not in summary]
    if missing_keys:
        raise ReportError(f"summary lacks the keys {missing_keys}")
    studies = summary["studies"]
    if not isinstance(studies, list | tuple):
        raise ReportError("summary['studies'] must be a list")
    problems: list[str] = []
    missing_figures: list[str] = []
    seen: set[str] = set()
    for i, study in enumerate(studies):
        key = study.get("key")
        where = f"study {key!r}" if key else f"study #{i}"
        if not isinstance(key, str) or not key:
            problems.append(f"{where}: 'key' must be a non-empty string")
        elif _anchor(key) in seen:
            problems.append(f"{where}: duplicate key (or same anchor {_anchor(key)!r})")
        else:
            seen.add(_anchor(key))
        problems += _study_problems(study, where)
        figures, missing = _figure_problems(study, where, out_dir)
        problems += figures
        missing_figures += missing
    if missing_figures:
        problems.insert(0, f"{len(missing_figures)} figure file(s) missing: "
                        + ", ".join(missing_figures))
    if problems:
        raise ReportError("cannot render the report: " + "; ".join(problems))


def _study_problems(study: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    status = study.get("status", "ok")
    if status not in STATUSES:
        problems.append(f"{where}: status {status!r} is not one of {STATUSES}")
    for claim in study.get("claims", []) or []:
        if claim.get("verdict") not in VERDICTS:
            problems.append(f"{where}: verdict {claim.get('verdict')!r} is not one of {VERDICTS}")
    for table in study.get("tables", []) or []:
        ncol = len(table.get("columns", []))
        for row in table.get("rows", []):
            if len(row) != ncol:
                problems.append(f"{where}: table {table.get('title')!r} has a row of "
                                f"{len(row)} cells for {ncol} columns")
                break
    return problems


def _figure_problems(study: Mapping[str, Any], where: str, out_dir: Path
                     ) -> tuple[list[str], list[str]]:
    """(problems, missing files) of a study's figure paths."""
    problems, missing = [], []
    for fig in study.get("figures", []) or []:
        raw = str(fig.get("path", ""))
        rel = PurePosixPath(raw.replace("\\", "/"))
        if not raw or rel.is_absolute() or re.match(r"^[A-Za-z]:", raw) or ".." in rel.parts:
            problems.append(f"{where}: figure path {raw!r} must be relative to the report "
                            "folder and stay inside it")
        elif not (out_dir / rel).is_file():
            missing.append(str(out_dir / rel))
    return problems, missing


# ----------------------------------------------------------------------------- writing


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _jsonable(obj: Any) -> Any:
    """Copy with non-finite floats as None (strict JSON); other values left to json."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return _jsonable(obj.item())  # numpy / torch scalars
    return obj


# ----------------------------------------------------------------------------- rendering



def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return _e(seconds)
    if not math.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {sec:02d} s" if hours else f"{minutes} min {sec:02d} s"


def _figure(fig: Mapping[str, Any], out_dir: Path | None = None) -> str:
    """The figure, embedded as a data URI when its file can be read (so that index.html alone
    is the whole report), else linked."""
    rel = PurePosixPath(str(fig["path"]).replace("\\", "/")).as_posix()
    src = quote(rel, safe="/")
    if out_dir is not None and (out_dir / rel).is_file():
        import base64
        import mimetypes

        kind = mimetypes.guess_type(rel)[0] or "image/png"
        src = f"data:{kind};base64," + base64.b64encode((out_dir / rel).read_bytes()).decode()
    caption = fig.get("caption") or rel
    problems = _figure_checks(fig, out_dir)
    alert = ('<div class="alert" role="alert"><strong>This figure does not show what its '
             "caption names:</strong> " + "; ".join(_e(p) for p in problems) + "</div>"
             if problems else "")
    return (f'<figure><img src="{_e(src)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption>{alert}</figure>")


def _figure_checks(fig: Mapping[str, Any], out_dir: Path | None) -> list[str]:
    """:func:`~l2dynamics.report.inventory.inventory_problems` of a figure's PNG."""
    if out_dir is None:
        return []
    from l2dynamics.report.inventory import inventory_problems, read_inventory

    rel = PurePosixPath(str(fig["path"]).replace("\\", "/")).as_posix()
    if not (out_dir / rel).is_file():
        return []
    return inventory_problems(read_inventory(out_dir / rel), fig.get("series") or ())


def _study_section(study: Mapping[str, Any], out_dir: Path | None = None) -> str:
    status = study.get("status", "ok")
    out = [f'<section id="{_e(_anchor(study["key"]))}">',
           f"<h2>{_e(study.get('title') or study['key'])} "
           f'<span class="badge status-{status}">{_e(status)}</span></h2>',
           f'<p class="muted">{_e(study.get("paper"))} · key <code>{_e(study["key"])}</code>'
           f" · wall time {_duration(study.get('wall_seconds'))}</p>"]
    if status == "failed":
        out.append('<div class="alert" role="alert"><strong>This study failed.</strong> '
                   "Its claims could not be checked on this run."
                   f"<pre>{_e(study.get('error') or 'no error message recorded')}</pre></div>")
    elif status == "skipped":
        reason = study.get("error")
        out.append('<p class="note"><strong>Skipped.</strong>'
                   + (f" {_e(reason)}" if reason else "") + "</p>")
    if study.get("description"):
        out.append(f"<p>{_e(study['description'])}</p>")
    out.append(_design_block(study))
    claims = study.get("claims") or []
    if claims:
        out.append("<h3>Claims</h3>")
        out.append(claims_table([(study, c) for c in claims], with_study=False))
    figures = study.get("figures") or []
    if figures:
        out.append("<h3>Figures</h3>")
        out += [_figure(f, out_dir) for f in figures]
    tables = study.get("tables") or []
    if tables:
        out.append("<h3>Tables</h3>")
        out += [data_table(t) for t in tables]
    if study.get("configs"):
        configs = json.dumps(_jsonable(study["configs"]), indent=2, sort_keys=True,
                             ensure_ascii=False, default=str)
        out.append(f"<details><summary>Configs</summary><pre>{_e(configs)}</pre></details>")
    if study.get("command"):
        out.append("<h3>Regenerate this study</h3>"
                   f"<pre><code>{_e(study['command'])}</code></pre>")
    out.append("</section>")
    return "\n".join(out)


def _design_block(study: Mapping[str, Any]) -> str:
    """Where the study's design is fixed, and its changes made after looking at results."""
    if "design_source" not in study and "design_history" not in study:
        return ""
    out = ["<h3>Design</h3>"]
    if study.get("design_source"):
        out.append(f"<p>Fixed in {_e(study['design_source'])} (the resolved values are under "
                   "Configs).</p>")
    history = study.get("design_history") or []
    if history:
        out.append("<p>Changed after looking at results:</p><ul>")
        out += [f"<li>{_e(h.get('date', ''))}: {_e(h.get('change', ''))} — why: "
                f"{_e(h.get('why', ''))}</li>" for h in history]
        out.append("</ul>")
    else:
        out.append('<p class="muted">No change made after looking at results is recorded.</p>')
    return "\n".join(out)


def _runs_section(runs: Mapping[str, Any] | None) -> str:
    """Run counts by status, and a table of the runs that diverged (NaN/inf: step and cause)
    or failed, each row marked by its status. Empty when the summary has no run data."""
    if not runs or not runs.get("counts"):
        return ""
    counts = runs["counts"]
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    out = ['<section id="runs"><h2>Runs</h2>', f"<p>Runs in the store: {_e(tally)}.</p>"]
    problems = list(runs.get("problems") or [])
    if problems:
        out.append('<p>Diverged runs (a non-finite loss or parameter ended them) and failed '
                   "runs are kept, shown here, and left out of every fit.</p>")
        out.append('<div class="table-wrap"><table class="runs"><thead><tr>'
                   + "".join(f"<th>{h}</th>" for h in ("run", "status", "name", "optimizer",
                                                       "η", "λ", "seed", "step", "cause"))
                   + "</tr></thead><tbody>")
        for p in problems:
            status = str(p.get("status"))
            cells = [_e(p.get("id")), f'<span class="badge status-{_e(status)}">{_e(status)}'
                     "</span>"] + [_cell(p.get(k))[0] for k in ("name", "optimizer", "lr", "lam",
                                                            "seed", "step", "cause")]
            out.append(f'<tr class="run-{_e(status)}">' + "".join(f"<td>{c}</td>" for c in cells)
                       + "</tr>")
        out.append("</tbody></table></div>")
    out.append("</section>")
    return "\n".join(out)


def _changelog_section(changelog: list[Mapping[str, Any]] | None) -> str:
    """The suite's record of design changes made after looking at results."""
    out = ['<section id="changelog"><h2>Design changes after looking at results</h2>']
    if not changelog:
        out.append('<p class="muted">None recorded for this suite.</p></section>')
        return "\n".join(out)
    out.append("<table><thead><tr><th>date</th><th>study</th><th>change</th><th>why</th>"
               "</tr></thead><tbody>")
    for item in changelog:
        out.append("<tr>" + "".join(f"<td>{_e(item.get(k, ''))}</td>"
                                    for k in ("date", "study", "change", "why")) + "</tr>")
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _render_page(summary: Mapping[str, Any], out_dir: Path | None = None) -> str:
    studies = list(summary["studies"])
    counts = verdict_counts(summary)
    n_failed = sum(1 for s in studies if s.get("status") == "failed")
    n_skipped = sum(1 for s in studies if s.get("status") == "skipped")
    suite = summary.get("suite")
    title = f"l2dynamics reproduction report — {suite} suite"
    versions = summary.get("versions") or {}
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items())

    tally = (f"{counts['total']} claims: {counts['holds']} hold, {counts['consistent']} "
             f"consistent but too imprecise to confirm, {counts['does not hold']} do not hold, "
             f"{counts['undetermined']} undetermined")
    tally += f"; {len(studies)} studies"
    if n_failed:
        tally += f", {n_failed} failed"
    if n_skipped:
        tally += f", {n_skipped} skipped"

    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="color-scheme" content="light dark">',
           '<link rel="icon" href="data:,">',  # no favicon request, so no 404 in the console
           f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           "<header>", f"<h1>{_e(title)}</h1>",
           "<p>Regenerates the results of Lewkowycz &amp; Gur-Ari (2020), "
           "<em>On the training dynamics of deep networks with L2 regularization</em>, and "
           "van Laarhoven (2017), <em>L2 regularization versus batch and weight "
           "normalization</em>.</p>",
           '<dl class="meta">',
           f"<dt>Suite</dt><dd>{_e(suite)}</dd>",
           f"<dt>Date</dt><dd>{_e(summary.get('created'))}</dd>",
           f"<dt>Machine</dt><dd>{_e(summary.get('machine'))}</dd>",
           f"<dt>Wall time</dt><dd>{_duration(summary.get('wall_seconds'))}</dd>",
           f"<dt>Versions</dt><dd>{_e(version_text)}</dd>",
           f"<dt>Result</dt><dd>{_e(tally)}</dd>",
           "</dl>",
           "<h3>Regenerate everything</h3>",
           f"<pre><code>{_e(summary.get('command'))}</code></pre>",
           "</header>", "<main>"]

    unshown = [(s, f) for s in studies for f in (s.get("figures") or [])
               if _figure_checks(f, out_dir)]
    if unshown:
        names = ", ".join(f'<a href="#{_e(_anchor(s["key"]))}">{_e(f.get("path"))}</a>'
                          for s, f in unshown)
        out.append(f'<div class="alert" role="alert"><strong>{len(unshown)} figure(s) do not '
                   f"show what their captions name:</strong> {names}</div>")
    if n_failed:
        names = ", ".join(f'<a href="#{_e(_anchor(s["key"]))}">{_e(s.get("title") or s["key"])}'
                          "</a>" for s in studies if s.get("status") == "failed")
        out.append(f'<div class="alert" role="alert"><strong>{n_failed} '
                   f"{'study' if n_failed == 1 else 'studies'} failed:</strong> {names}</div>")

    from l2dynamics.report.plain import plain_summary

    out.append(plain_summary(studies))
    out.append('<section id="verdicts"><h2>Verdicts</h2>')
    if any(s.get("claims") for s in studies):
        out.append(verdict_overview(studies))
    else:
        out.append('<p class="muted">No claims were checked.</p>')
    out.append("</section>")

    out.append(_runs_section(summary.get("runs")))
    out.append(_changelog_section(summary.get("changelog")))

    if studies:
        out.append('<nav class="toc"><h2>Studies</h2><ul>')
        for s in studies:
            status = s.get("status", "ok")
            extra = "" if status == "ok" else f' <span class="badge status-{status}">' \
                                              f"{_e(status)}</span>"
            out.append(f'<li><a href="#{_e(_anchor(s["key"]))}">{_e(s.get("title") or s["key"])}'
                       f"</a> <span class=\"muted\">({_e(s.get('paper'))})</span>{extra}</li>")
        out.append("</ul></nav>")
    out += [_study_section(s, out_dir) for s in studies]
    out += ["</main>", '<footer><p class="muted">Machine-readable results: '
            '<a href="summary.json">summary.json</a>.</p></footer>', "</body>", "</html>", ""]
    return "\n".join(out)
