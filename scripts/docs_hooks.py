"""MkDocs hooks: the docs' measured tables and study pages, generated from the JSON they quote.

Nothing measured is copied into the docs by hand. At build time (``hooks:`` in mkdocs.yml):

- ``on_config`` reads every reproduce summary ``benchmarks/results/reproduce_<suite>.json`` and
  replaces the nav's ``Studies`` entry with one page per study of each suite;
- ``on_files`` adds those pages as virtual files (``studies/<suite>/<key>.md``): nothing
  generated is written into the repository or needs committing. A study's hand-written
  explanation, ``docs/studies/notes/<key>.md`` (excluded from the pages), is merged into its page;
- ``on_page_markdown`` expands markers ``<!-- gen:NAME [k=v ...] -->`` in any page into the table
  NAME renders from its JSON (:data:`BLOCKS`); an unknown NAME or a missing result file fails a
  strict build;
- ``on_page_content`` turns Sphinx roles left in docstrings (``:class:`X```) into plain code.

Every generated block starts with "Generated from <file> — do not edit." and, where the result
records it, the command that produced it. Render functions are plain functions of parsed JSON so
that tests can call them; ``python scripts/docs_hooks.py --summary FILE --out DIR`` writes the
study pages of one summary to DIR for a look.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import shlex
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
STUDY_FIGURES = "studies/figures"  # under docs/: <suite>/<key>/<name>.png (scripts/update_docs.py)
NOTES = "studies/notes"  # under docs/: <key>.md, merged into the study pages
MORE = "<!-- more -->"  # in a note: what follows goes to the end of the study page
SUITE_TITLES = {"mini": "Mini suite", "paper": "Paper suite"}
SUITE_OVERVIEW = {"mini": "studies/index.md", "paper": "studies/paper.md"}

log = logging.getLogger("mkdocs.hooks.l2dynamics")

# --- formatting ----------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: `digits` significant figures, thin-spaced thousands, '—' for missing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        if (value.is_integer() or abs(value) >= 10**digits) and abs(value) < 1e7:
            return fmt(round(value))
        if 1e-3 <= abs(value) < 1e5:
            text = f"{value:.{digits}g}"
            if "e" not in text:
                return text
        mantissa, exp = f"{value:.{max(digits - 1, 0)}e}".split("e")
        return f"{mantissa}e{int(exp)}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.{digits}f} %"


def ci(low: Any, high: Any, digits: int = 3) -> str:
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def _cell(text: Any) -> str:
    # Escape pipes outside code spans only: inside them Python-Markdown's tables keep the pipe
    # (and would show the backslash).
    parts = str(text).replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; cells are strings already (use :func:`fmt`)."""
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def generated_line(source: str | Sequence[str], *, when: str | None = None,
                   command: str | None = None, what: str | None = None) -> str:
    """The line every generated block starts with: its source files (or `what`), when the
    result was measured, and the command that produced it."""
    sources = [source] if isinstance(source, str) else list(source)
    text = "Generated from " + ", ".join([f"`{s}`" for s in sources] + ([what] if what else []))
    if when:
        text += f" ({when})"
    text += " — do not edit."
    if command:
        text += f" Command: `{command}`"
    return f'<small class="l2d-generated">{text}</small>'


def machine_note(machine: Mapping[str, Any] | str | None) -> str | None:
    if not machine:
        return None
    if isinstance(machine, str):
        return machine
    parts = [machine.get("date"), machine.get("cpu"),
             f"{machine['cores']} cores" if machine.get("cores") else None,
             f"{machine['torch_threads']} torch threads" if machine.get("torch_threads") else None,
             f"torch {machine['torch']}" if machine.get("torch") else None]
    return ", ".join(str(p) for p in parts if p)


def note(kind: str, title: str, text: str) -> str:
    body = "\n".join("    " + line if line else "" for line in text.splitlines())
    return f'!!! {kind} "{title}"\n\n{body}\n'


class MissingResult(Exception):
    """A result file a page quotes is absent."""


def load_result(root: Path, name: str) -> Any:
    path = root / name
    if not path.is_file():
        raise MissingResult(f"{name} is missing")
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return [{k: _csv_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return json.loads(path.read_text())


def _csv_value(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# --- benchmark blocks ----------------------------------------------------------------------------
# Each block: (root, **marker args) -> Markdown. The default source file and the command that
# writes it (where the JSON does not record its command) are given in BLOCKS below.


def block_overhead(data: Mapping[str, Any], source: str, command: str) -> str:
    cfg = data["config"]
    bare = data["bare_seconds"]
    rows = [
        ["bare PyTorch loop", f"{fmt(bare)} s ({fmt(data['bare_ms_per_step'])} ms/step)", "1",
         "1"],
        [f"l2dynamics, probes on the log clock ({cfg['evaluations']} evaluations) + store",
         f"{fmt(data['full_seconds'])} s", fmt(data["ratio_full"], 4),
         fmt(data["ratio_full_paired_median"], 4)],
        ["l2dynamics, one final evaluation only", f"{fmt(data['loop_only_seconds'])} s",
         fmt(data["ratio_loop"], 4), fmt(data["ratio_loop_paired_median"], 4)],
    ]
    goal = data.get("goal_ratio")
    verdict = ""
    if goal:
        ok_min, ok_med = data["ratio_full"] <= goal, data["ratio_full_paired_median"] <= goal
        verdict = (f"\n\nGoal ≤ {fmt(goal)} for the full run: minimum "
                   f"{'within' if ok_min else 'not within'}, paired median "
                   f"{'within' if ok_med else 'not within'}.")
    return (f"{generated_line(source, when=machine_note(data.get('machine')), command=command)}"
            f"\n\nSetup: {cfg['model']} on {cfg['dataset']}, batch {cfg['batch']}, "
            f"{fmt(cfg['steps'])} steps, {cfg['threads']} torch thread(s), {cfg['repeats']} "
            f"rotated repeats.\n\n"
            + md_table(["variant", f"time (min of {cfg['repeats']})", "ratio to bare (min)",
                        "ratio (median of paired repeats)"], rows)
            + f"\n\nOne evaluation costs {fmt(data['probe_ms'])} ms, "
              f"{fmt(data['probe_cost_in_steps'])} bare steps." + verdict)


def _ratio_ci(r: Mapping[str, Any] | None) -> str:
    if not r:
        return "—"
    return f"{fmt(r['ratio'])} {ci(*r['ci'])}"


def block_engine_speed(data: Mapping[str, Any], source: str) -> str:
    """Engine vs bare step per model family, and the bare step's fast-path options."""
    goal = data.get("goal_ratio", 1.05)
    rows, options = [], []
    for f in data["families"]:
        r = f["engine_vs_bare"]
        verdict = "yes" if r["ci"][1] <= goal else ("no" if r["ci"][0] > goal else "undecided")
        rows.append([f["family"], f"{f['model']}, batch {f['batch']}",
                     ("NHWC" if f["channels_last"] else "NCHW") if f.get("conv") else "—",
                     fmt(r["a_ms"]), fmt(r["b_ms"]),
                     _ratio_ci(r), f"{r['pairs']} × {r['block_steps']}", verdict])
        o = f.get("options", {})
        compiled = o.get("compile")
        warm = f" (first call {fmt(compiled['warmup_seconds'], 2)} s)" if compiled else ""
        options.append([f["family"], _ratio_ci(o.get("channels_last")), _ratio_ci(o.get("bf16")),
                        _ratio_ci(compiled) + warm])
    head = generated_line(source, when=machine_note(data.get("machine")),
                          command=data.get("command"))
    return (f"{head}\n\n"
            f"Method: {data['method']}; {data['threads']} torch threads, {data['dataset']}."
            f"\n\n" + md_table(["family", "model", "layout", "engine ms/step", "bare ms/step",
                                  "engine/bare [95 % CI]", "pairs × steps",
                                  f"≤ {fmt(goal)}"], rows)
            + "\n\nThe bare step with each CPU fast-path option, time ratio to the plain float32 "
              "NCHW eager step (below 1: faster). torch.compile's first call includes the "
              "compilation, shorter when inductor's on-disk cache is warm from an earlier run:"
              "\n\n"
            + md_table(["family", "channels_last", "bf16 autocast", "torch.compile"], options)
            + _ensemble_line(data.get("ensemble_cnn")))


def _ensemble_line(e: Mapping[str, Any] | None) -> str:
    if not e:
        return ""
    return (f"\n\nVectorized ensemble of {e['members']} members ({e['model']}), time per update "
            f"of all of them / {e['members']} sequential Trainer updates: {_ratio_ci(e)} "
            f"({e['pairs']} pairs).")


def block_eval_cost(data: Mapping[str, Any], source: str) -> str:
    """Evaluation's share of a run before and after the evaluation budget."""
    ev = data["evaluation"]
    rows = []
    for label in ("before", "after"):
        e = ev[label]
        rows.append([label, fmt(e["points"]), fmt(e["per_decade"]),
                     f"{fmt(e['test_n'])} / {fmt(e['full_n'])}", fmt(e["eval_batch"]),
                     "NHWC" if e["channels_last"] else "NCHW", fmt(e["step_ms"]),
                     pct(e["planned_compute_fraction"]), pct(e["time_fraction"])])
    batches = [[b["family"], fmt(b["n"])] + [fmt(v) for v in b["seconds"].values()]
               for b in data.get("eval_batches", [])]
    sizes = list(data["eval_batches"][0]["seconds"]) if batches else []
    head = generated_line(source, when=machine_note(data.get("machine")),
                          command=data.get("command"))
    return (f"{head}\n\n"
            f"A {fmt(ev['steps'])}-step run of {ev['model']}, batch {ev['batch']}: evaluation "
            "time = planned points × the measured time of one point (test subset, or the whole "
            "test set at the last point), over the steps × the measured time of one update."
            "\n\n" + md_table(["plan", "points", "per decade", "test examples (points / last)",
                                  "eval batch", "layout", "ms/update", "planned compute share",
                                  "measured time share"], rows)
            + ("\n\nSeconds to evaluate the test images per evaluation batch size:\n\n"
               + md_table(["family", "images"] + [f"batch {s}" for s in sizes], batches)
               if batches else ""))


def block_eval_budget_estimates(data: Mapping[str, Any], source: str) -> str:
    """The studies' estimates under the evaluation budget against their intervals without it."""
    counts: dict[tuple[str, str], list[int]] = {}
    for r in data["records"]:
        tally = counts.setdefault((r["study"], r["quantity"]), [0, 0])
        tally[0] += bool(r["inside"])
        tally[1] += 1
    rows = [[f"`{study}`", quantity, f"{inside} of {total}"]
            for (study, quantity), (inside, total) in counts.items()]
    outside = [[f"`{r['study']}`", r["table"], r.get("method") or
                f"η = {fmt(r['lr'])}, λ = {fmt(r['lam'])}", r["quantity"], fmt(r["before"], 4),
                ci(*r["interval"]), fmt(r["after"], 4)]
               for r in data["records"] if not r["inside"]]
    head = generated_line(source, command=data.get("command"))
    text = (f"{head}\n\n**{data['inside']} of {data['estimates']}** estimates of the run "
            f"under the default evaluation budget lie inside the intervals of the run that "
            f"evaluated every point on the whole test set (t\\* and peak accuracy: 95 % "
            f"t-intervals over seeds; final accuracies: mean ± t·SE).\n\n"
            + md_table(["study", "estimate", "inside the interval"], rows))
    if outside:
        text += ("\n\nOutside:\n\n" + md_table(["study", "table", "where", "estimate",
                                                  "before", "interval", "after"], outside))
    return text


def block_step_efficiency(data: Mapping[str, Any], source: str, command: str) -> str:
    cfg = data["config"]
    layers = " → ".join(str(n) for n in [cfg["layers"][0][0]] + [b for _, b in cfg["layers"]])
    row = [f"{fmt(data['matmul_peak_gflops'], 4)} GFLOP/s (n = {data['peak_at_n']})",
           f"{fmt(data['step_gflop'], 4)} GFLOP in {fmt(data['ms_per_step'], 4)} ms",
           f"{fmt(data['achieved_gflops'], 4)} GFLOP/s", pct(data["fraction_of_peak"])]
    return (f"{generated_line(source, when=machine_note(data.get('machine')), command=command)}"
            f"\n\nSetup: FC {layers}, batch {cfg['batch']}, SGD with coupled L2 through `Trainer`."
            "\n\n" + md_table(["float32 matmul peak", "training step", "achieved",
                               "fraction of peak"], [row]))


def block_kernels(data: Mapping[str, Any], source: str, command: str) -> str:
    conv = data["convergence"]
    rows = [[str(r["width"]), f"{pct(r['mean'], 2)} ± {pct(r['std'], 2)} ({pct(r['max'], 2)})",
             pct(r["seed_averaged"], 2), f"{fmt(r['seconds_median'])} s"] for r in conv["rows"]]
    ana = data["analytic"]
    return (f"{generated_line(source, when=machine_note(data.get('machine')), command=command)}"
            f"\n\nAnalytic vs empirical NTK: {conv['n']} inputs, depth {conv['depth']}, "
            f"{'biased' if conv.get('bias') else 'bias-free'}, {conv['parameterization']} "
            f"parameterization, {conv['seeds']} seeds; relative Frobenius error.\n\n"
            + md_table(["width", "single network: mean ± std (max)",
                        f"kernel averaged over the {conv['seeds']} seeds",
                        "empirical NTK time (median)"], rows)
            + f"\n\nThe analytic kernel for {fmt(ana['n'])} × {fmt(ana['n'])} inputs (depth "
              f"{ana['depth']}, {ana['activation']}, NNGP + NTK, {ana['dtype']}) took "
              f"**{fmt(ana['seconds'])} s** (min of {len(ana['repeats_seconds'])}; "
              f"{fmt(ana['output_bytes'] / 1e9)} GB of output).")


def block_ensemble(data: Mapping[str, Any], source: str, command: str) -> str:
    cfg = data["config"]
    rows = []
    for r in data["results"]:
        rows.append([r["case"], str(r["k"]), fmt(r["params_x_batch"]),
                     fmt(r["sequential_member_steps_per_s"], 4),
                     fmt(r["vectorized_member_steps_per_s"], 4),
                     f"**{fmt(r['ratio'])}**", fmt(r.get("ratio_paired_median")),
                     f"`{r.get('choose_engine', '—')}`"])
    return (f"{generated_line(source, when=machine_note(data.get('machine')), command=command)}"
            f"\n\nDevice: {cfg.get('device_name', cfg.get('device'))}; {cfg['dataset']}, "
            f"{cfg['optimizer']}, members {cfg['members']}; {cfg['repeats']} rotated repeats.\n\n"
            + md_table(["case", "K", "params × batch", "sequential member-steps/s",
                        "vectorized member-steps/s", "ratio", "ratio (paired median)",
                        "`--engine auto` picks"], rows))


def block_throughput(datas: Sequence[tuple[str, Mapping[str, Any]]], command: str) -> str:
    rows, commands, first = [], [], datas[0][1]
    for _, data in datas:
        if data.get("command"):
            commands.append(data["command"])
        for r in data["rows"]:
            rows.append([f"`{r['variant']}`", str(r["batch"]), fmt(r["images_per_s"], 4),
                         pct(r["mfu"]), fmt(r["ms_per_update"]), f"{fmt(r['peak_memory_gib'])} GiB",
                         f"{fmt(r['warmup_and_compile_s'])} s"])
    cmd_text = "".join(f"\n\n```bash\n{c}\n```" for c in commands) if commands else (
        f"\n\nCommand: `{command}`")
    return (generated_line([s for s, _ in datas], when=machine_note(first.get("machine")))
            + f"\n\n{first['model']} on {first['gpu']}; data: {first['data']}. MFU against the "
              f"{fmt(first['peak_tflops_bf16_dense'], 4)} TFLOP/s dense bf16 datasheet peak "
              f"(a bf16 matmul measured {fmt(first['measured_matmul_tflops'], 3)} TFLOP/s there)."
            + cmd_text + "\n\n"
            + md_table(["variant", "batch", "images/s", "MFU", "ms/update", "peak memory",
                        "warm-up + compile"], rows))


def block_startup(root: Path, source: str, command: str) -> str:
    """Start-up times; the JSON's shape is tolerated loosely (labels 'before' and 'after')."""
    path = root / source
    if not path.is_file():
        return note("info", "Not measured yet",
                    f"`{source}` does not exist yet. Once the start-up benchmark has written it "
                    f"(`{command}`), this page shows its table.")
    data = json.loads(path.read_text())
    if isinstance(data.get("labels"), Mapping) and data["labels"]:
        return render_startup(data, source)
    head = generated_line(source, when=machine_note(data.get("machine") or data.get("date")),
                          command=data.get("command") or command)
    return head + "\n\n" + render_labelled(data)


def render_startup(data: Mapping[str, Any], source: str) -> str:
    """benchmarks/startup.py's JSON: {"commands": {name: cmd}, "labels": {label: {"machine",
    "repeats", "command", "results": {name: {"median_s", "min_s", "ratio_to_import_torch"}}}}}."""
    labels = data["labels"]
    names = list(dict.fromkeys([*(data.get("commands") or {}),
                                *(n for rec in labels.values() for n in rec.get("results", {}))]))
    headers = ["command"]
    for label in labels:
        headers += [f"{label}: median (min)", f"{label}: × import torch"]
    pair = ("before", "after") if {"before", "after"} <= set(labels) else None
    if pair:
        headers.append("after / before (× import torch)")
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for rec in labels.values():
            r = (rec.get("results") or {}).get(name)
            row += ([f"{fmt(r['median_s'])} s ({fmt(r['min_s'])} s)",
                     fmt(r.get("ratio_to_import_torch"))] if r else ["—", "—"])
        if pair:
            b = (labels["before"].get("results") or {}).get(name, {})
            a = (labels["after"].get("results") or {}).get(name, {})
            rb, ra = b.get("ratio_to_import_torch"), a.get("ratio_to_import_torch")
            row.append(f"**{fmt(ra / rb)}**" if rb and ra is not None else "—")
        rows.append(row)
    runs = [f"- `{label}`: {machine_note(rec.get('machine')) or 'machine not recorded'}; "
            f"{rec.get('repeats', '?')} interleaved repeats; `{rec.get('command', '')}`"
            for label, rec in labels.items()]
    what = ["- " + f"`{n}`: `{c}`" for n, c in (data.get("commands") or {}).items()]
    return (generated_line(source) + "\n\n"
            + "Each command runs in a fresh interpreter, interleaved with the others; times are "
              "wall times from launch to exit. The ratio to `import torch` in the same run is the "
              "comparison that survives a change of machine load.\n\n"
            + md_table(headers, rows) + "\n\nRuns:\n\n" + "\n".join(runs)
            + ("\n\nWhat each command runs:\n\n" + "\n".join(what) if what else ""))


def render_labelled(data: Any) -> str:
    """A table for a JSON of measurements under labels (e.g. 'before'/'after').

    Accepted shapes: ``{"rows": [{...}, ...]}``; ``{"results": {label: {metric: value}}}`` or
    the same at the top level; ``[{...}, ...]``. Anything else is shown as key/value pairs.
    """
    if isinstance(data, Mapping) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        cols = list(dict.fromkeys(k for r in data for k in r))
        return md_table(cols, [[fmt(r.get(c)) for c in cols] for r in data])
    if isinstance(data, Mapping):
        inner = data.get("results", data)
        labelled = {k: v for k, v in inner.items() if isinstance(v, Mapping)
                    and k not in ("machine", "config", "versions")}
        if labelled:
            metrics = list(dict.fromkeys(m for v in labelled.values() for m in v
                                         if not isinstance(v[m], (Mapping, list))))
            rows = [[m] + [fmt(v.get(m)) for v in labelled.values()] for m in metrics]
            table = md_table(["measurement", *labelled], rows)
            if {"before", "after"} <= set(labelled):
                ratios = [[m, fmt(labelled["after"][m] / labelled["before"][m])]
                          for m in metrics
                          if isinstance(labelled["before"].get(m), (int, float))
                          and isinstance(labelled["after"].get(m), (int, float))
                          and not isinstance(labelled["before"].get(m), bool)
                          and labelled["before"][m]]
                if ratios:
                    table += "\n\n" + md_table(["measurement", "after / before"], ratios)
            return table
        flat = [[k, fmt(v)] for k, v in data.items() if not isinstance(v, (Mapping, list))]
        return md_table(["key", "value"], flat)
    return f"```json\n{json.dumps(data, indent=2)}\n```"


# --- research-result blocks (the larger runs quoted in the study notes and guides) --------------


def block_tstar_sweep(data: Mapping[str, Any], source: str, estimator: str = "onset") -> str:
    est = data[estimator]
    rows = []
    for r in est["summary"]:
        rows.append([fmt(r["lr"]), fmt(r["lam"]),
                     f"{fmt(r['tstar'])} {ci(r['tstar_low'], r['tstar_high'])}",
                     "—" if not r["lam"] else fmt(r.get("c_eta")),
                     f"{fmt(r['peak_acc'], 4)} {ci(r['peak_acc_low'], r['peak_acc_high'], 4)}",
                     f"{r.get('interval', '')}, n = {r.get('seeds', '')}",
                     fmt(r["all_fit_train"]), fmt(r["any_peak_at_end"])])
    fits = [[fmt(f["lr"]), f"{fmt(f['slope'])} {ci(f['ci_low'], f['ci_high'])}", fmt(f["r2"]),
             f"{f['used']} of {f['runs']}", str(f["excluded_underfit"]),
             str(f["excluded_censored"]), str(f.get("budget_dependent", "")),
             f"{fmt(f['c_eta'])} {ci(f['c_eta_low'], f['c_eta_high'])}",
             verdict_label(f["verdict"])] for f in est["fits"]]
    verdicts = [[v["claim"], v["measured"] + (f" — {v['note']}" if v.get("note") else ""),
                 v.get("ci") or "", verdict_label(v["verdict"])] for v in est["verdict"]]
    other = [k for k in data if isinstance(data[k], Mapping) and "fits" in data[k]
             and k != estimator]
    censored = "; ".join(f"`{k}`: {sum(f['used'] for f in data[k]['fits'])} usable runs"
                         for k in other)
    return (generated_line(source, when=f"{data.get('date', '')}, {data.get('machine', '')}",
                           command=data.get("command"))
            + f"\n\nEstimator `{estimator}`. Per-λ intervals over seeds: a 95 % t-interval "
              "for n ≥ 3 seeds, the seed range for n = 2 (the method and n are in each row). "
              "c·η = λ·Φ(t*), Φ the physical time Σ η_t/(1 − μ).\n\n"
            + md_table(["η", "λ", "t* (steps) [interval]", "c·η = λ·Φ(t*)",
                        "peak test acc [interval]", "interval", "fits train", "peak at end"],
                       rows)
            + "\n\n" + md_table(["η", "slope of log t* vs log λ [95 % t-interval]", "R²",
                                 "runs used", "under-fitting", "censored",
                                 "t* moved with budget", "c·η [interval]", "slope verdict"],
                                fits)
            + "\n\n" + md_table(["paper claim", "measured", "interval", "verdict"], verdicts)
            + (f"\n\nThe other estimators on the same runs: {censored}." if censored else ""))


def block_theory_comparisons(data: Mapping[str, Any], source: str) -> str:
    st = data["study"]
    rows = []
    for r in data["comparisons"]:
        lazy = r.get("lazy_until_lam_t")
        rows.append([str(r["width"]), fmt(r["lam"]), *([str(r["seed"])] if "seed" in r else []),
                     pct(r["loss_rel_err_lazy_max"]), pct(r["loss_rel_err_all_rms"]),
                     fmt(r["t_star_net"]), fmt(r["t_star_flow"]),
                     f"{fmt(r['peak_acc_net'])} / {fmt(r['peak_acc_flow'])}",
                     "never (to {})".format(fmt(st["horizon"])) if lazy is None
                     or (isinstance(lazy, float) and math.isnan(lazy)) else fmt(lazy)])
    seed_col = ["seed"] if data["comparisons"] and "seed" in data["comparisons"][0] else []
    return (generated_line(source)
            + f"\n\nSetup: {st['dataset']}, {st['n_train']} train / {st['n_test']} test, depth "
              f"{st['depth']}, θ_max(Θ₀) = {fmt(data['theta_max'], 4)}, η_flow = "
              f"{fmt(st['lr_fraction'])}/θ_max, trained until λt = {fmt(st['horizon'])}.\n\n"
            + md_table(["width", "λ", *seed_col, "loss err (lazy, max)", "loss err (rms)",
                        "t* net", "t* flow", "peak acc net / flow",
                        "leaves the lazy law at λt"], rows))


def block_theory_fits(data: Mapping[str, Any], source: str) -> str:
    st = data["study"]
    rows = [[r["time"], r["range"], f"{fmt(r['slope'])} {ci(r['ci_low'], r['ci_high'])}",
             fmt(r["r2"]), str(r["points"])] for r in data["fits"]]
    return (generated_line(source)
            + f"\n\nThe infinite-width flow (k = {st['depth'] + 1}, {len(st['theory_lams'])} λ "
              f"from {fmt(min(st['theory_lams']))} to {fmt(max(st['theory_lams']))}, "
              f"window δ = {fmt(st['window_delta'])}, init `{st['theory_init']}`): fits of "
              f"log t against log λ.\n\n"
            + md_table(["characteristic time", "λ range", "slope [95 % CI]", "R²", "points"],
                       rows))


def block_theory_seeds(data: Mapping[str, Any], source: str) -> str:
    st = data["study"]
    verdicts = [[r["time"], str(r["width"]), r["network"], r["flow"]]
                for r in data["time_verdict"]]
    return (generated_line(source)
            + f"\n\nWidths {fmt(st['widths'])}, seeds {fmt(st['seeds'])}, λ ∈ {{{fmt(st['lams'])}}}"
              f" (flow units), {st['n_train']} train / {st['n_test']} test, to λt = "
              f"{fmt(st['horizon'])}, window δ = {fmt(st['window_delta'])}.\n\n"
            + md_table(["time (flow units)", "width", "networks: slope [95 % CI]",
                        "flow from the same outputs"], verdicts))


def block_norms_equilibrium(rows: list[Mapping[str, Any]], source: str, command: str) -> str:
    def num(r: Mapping[str, Any], key: str, digits: int = 3) -> str:
        value = r.get(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return "—"
        return fmt(value, digits) if math.isfinite(value) else "—"

    def ratio(r: Mapping[str, Any], what: str) -> str:
        return (f"{num(r, f'{what}_ratio')} [{num(r, f'{what}_ratio_low')}, "
                f"{num(r, f'{what}_ratio_high')}]")

    table, why = [], []
    for r in rows:
        setup = f"η = {fmt(r['lr'])}, λ = {fmt(r['lam'])}"
        if r.get("decoupled_wd") and float(r["decoupled_wd"]):
            setup = f"η = {fmt(r['lr'])}, λ_d = {fmt(r['decoupled_wd'])}"
        if r.get("momentum") and float(r["momentum"]):
            setup += f", μ = {fmt(r['momentum'])}"
        stationary = str(r["stationary"]).lower() in ("true", "1")
        table.append([r["case"], setup, f"`{r['tensor']}`", fmt(r["steps"]),
                      f"{float(r['drift_per_tau_pct']):+.1f} %"
                      + ("" if stationary else " (no verdict)"),
                      ratio(r, "norm"), ratio(r, "angle")])
        why.append([r["case"], f"`{r['tensor']}`", num(r, "norm_ratio_rw"),
                    num(r, "angle_ratio_rw"), num(r, "mom_corr"), num(r, "u_tilde"),
                    num(r, "kappa"), num(r, "cross_share")])
    return (generated_line(source, command=command) + "\n\n"
            + md_table(["case", "setting", "tensor", "steps", "‖w‖² trend per τ",
                        "‖w‖ measured / predicted [95 % batch-means CI]",
                        "RMS angle measured / predicted"], table)
            + "\n\nThe random-walk closed forms on the same runs, and the measured statistics "
              "that explain their misses (2μK/G: SGDM's momentum–gradient correlation; ũ: "
              "Adam's update power over its white-noise value; κ: the anisotropy of v̂ the L2 "
              "step sees; cross: the share of the steps' growth that ⟨w, ∇L/√v̂⟩ cancels):\n\n"
            + md_table(["case", "tensor", "‖w‖ / closed form", "angle / closed form",
                        "2μK/G", "ũ", "κ", "cross"], why))


def block_norms_grid(data: Mapping[str, Any], source: str, command: str) -> str:
    rows, collapse = [], []
    for name, g in data.items():
        raw, norm = g["fit"], g["fit_gbar_normalized"]
        rows.append([name, f"η^{fmt(g['predicted_p'])} λ^{fmt(g['predicted_q'])}",
                     f"η^{fmt(raw['p'])} {ci(*raw['ci_p'])} λ^{fmt(raw['q'])} {ci(*raw['ci_q'])}",
                     f"η^{fmt(norm['p'])} {ci(*norm['ci_p'])} λ^{fmt(norm['q'])} "
                     f"{ci(*norm['ci_q'])}", norm.get("supports", "—"),
                     (f"η^{fmt(g['fit_measured']['p'])} {ci(*g['fit_measured']['ci_p'])} "
                      f"λ^{fmt(g['fit_measured']['q'])} {ci(*g['fit_measured']['ci_q'])}"
                      if g.get("fit_measured") else "—"),
                     f"{g.get('in_fit', g['relaxed'])} of {g['runs']}"])
        c = g["collapse_r2"]
        collapse.append([name, fmt(c["predicted_combination"]), fmt(c["measured_eff_lr"]),
                         fmt(c["lr_alone"]), fmt(c["lam_alone"])])
    return (generated_line(source, command=command) + "\n\n"
            + md_table(["optimizer", "predicted", "effective LR, raw fit",
                        "× g^a (SGD: ‖ḡ‖; Adam: the per-element ḡ of the L2 step, a = ⅓)",
                        "supports", "× (g·ũ)^⅓: with the measured update power (Adam)",
                        "runs in the fit"], rows)
            + "\n\nR² of test error as a quadratic in log of each quantity:\n\n"
            + md_table(["optimizer", "predicted combination", "measured effective LR", "η alone",
                        "λ alone"], collapse))


def block_norms_projection(rows: list[Mapping[str, Any]], source: str, command: str) -> str:
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    lams = sorted({r["lam"] for r in rows})
    table = []
    for mode in modes:
        cells = []
        for lam in lams:
            errs = [r["test_error"] for r in rows if r["mode"] == mode and r["lam"] == lam]
            cells.append(fmt(sum(errs) / len(errs)) if errs else "—")
        table.append([f"{mode}: test error (seed mean)", *cells])
    return (generated_line(source, command=command) + "\n\n"
            + md_table(["λ", *[fmt(lam) for lam in lams]], table))


def block_norms_traces(data: Mapping[str, Any], source: str, command: str) -> str:
    from l2dynamics.studies.study_norm_traces import identity_claim

    rows = []
    for r in data["runs"]:
        pred = r.get("pred_norm") or []
        last_pred = pred[-1] if pred else None
        identity = "—"
        if r["lam"] > 0 and "updates" in r:
            claim = identity_claim(r, data["lr"])
            identity = f"{claim.verdict}: {claim.measured.split(';')[0]}; " \
                       f"{claim.measured.split(';')[1].strip()}"
        rows.append([fmt(r["lam"]), f"`{r['tensor']}`", fmt(r["step"][-1]),
                     fmt(r["norm"][0], 4), fmt(r["norm"][-1], 4), fmt(last_pred, 4),
                     fmt(r["angle_rms"][-1], 3), identity])
    return (generated_line(source, command=command)
            + f"\n\nSGD η = {fmt(data['lr'])}, {fmt(data['steps'])} steps; the last recorded "
              "window of each run, and the drift-corrected identity over the last two "
              "relaxation times (the study's claim).\n\n"
            + md_table(["λ", "tensor", "step", "‖w‖ first window", "‖w‖ final",
                        "‖w‖ equilibrium for the final window's gradient", "RMS angle final",
                        "identity over the last 2τ"], rows))


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _tuning_method(task: Mapping[str, Any], prefix: str) -> list[Mapping[str, Any]]:
    return [m for m in task["methods"] if m["name"].lower().startswith(prefix)]


def block_tuning_tasks(data: Mapping[str, Any], source: str) -> str:
    rows = [[t["task"], t["description"], fmt(t["budget"]), fmt(t["seeds"]),
             fmt(t["grid_lams"])] for t in data["tasks"]]
    return (generated_line(source, when=machine_note(data.get("machine")),
                           command="python " + data["command"] if data.get("command") else None)
            + "\n\n" + md_table(["task", "setup", "T (steps)", "seeds", "λ grid"], rows))


def block_tuning_constant(data: Mapping[str, Any], source: str) -> str:
    rows = []
    for t in data["tasks"]:
        target, steps_grid = t["target"], None

        def acc(m: Mapping[str, Any], target: float = target) -> str:
            return (f"{fmt(m['mean'], 4)} ± {fmt(m['se'], 2)}, "
                    f"**{100 * (target - m['mean']):+.2f}**")

        grid = _tuning_method(t, "grid")[0]
        steps_grid = grid["select_steps"]
        pred = t["prediction"]
        pm = _tuning_method(t, "prediction λ_pred")
        if pred.get("ok") and pm:
            pred_cell = (f"λ = {fmt(pred['lam'])}: {acc(pm[0])}, "
                         f"{fmt(pm[0]['select_steps'] / steps_grid, 2)} of the grid")
        else:
            pred_cell = "no prediction: " + (pred.get("message") or "—").split(":")[0]
        ema = _tuning_method(t, "ema")
        ema_cell = f"λ = {fmt(t['lam_ema'])}: {acc(ema[0])}" if ema else "—"
        opt = _tuning_method(t, "optuna tpe (")  # without a pruner
        opt_cell = (f"{acc(opt[0])}, {fmt(opt[0]['select_steps'] / steps_grid, 2)} of the grid"
                    if opt else "—")
        rows.append([t["task"], f"{fmt(target, 4)} ± {fmt(grid['se'], 2)} "
                     f"(λ = {fmt(t['best_lam'])})", fmt(t["lam0_final"], 4), pred_cell, ema_cell,
                     opt_cell])
    return (generated_line(source) + "\n\nFinal test accuracy, seed mean ± SE; the bold number "
            "is the gap to the grid's best in accuracy points (negative: better than the grid); "
            "compute as a fraction of the 3-seed grid.\n\n"
            + md_table(["task", "grid best", "λ = 0", "prediction", "EMA rule", "Optuna TPE"],
                       rows))


def block_tuning_autol2(data: Mapping[str, Any], source: str) -> str:
    names = list(dict.fromkeys(m["name"] for t in data["tasks"]
                               for m in _tuning_method(t, "autol2")))
    rows = []
    for t in data["tasks"]:
        const = _finite(t["const_steps_to_target"])
        const_steps = statistics.median(const) if const else None
        cells = [f"{fmt(t['target'], 4)}, {fmt(const_steps)} steps"]
        for name in names:
            found = [m for m in t["methods"] if m["name"] == name]
            if not found:
                cells.append("—")
                continue
            m = found[0]
            reached = _finite(m.get("steps_to_target") or [])
            speed = "—"
            if reached and const_steps:
                speed = f"×{fmt(statistics.median(reached) / const_steps, 2)}"
            cells.append(f"{fmt(m['mean'], 4)} ({100 * (t['target'] - m['mean']):+.2f}), {speed}")
        rows.append([t["task"], *cells])
    return (generated_line(source) + "\n\nFinal accuracy, gap to the best constant λ in points "
            "(negative: better), and the median steps to reach the constant's final accuracy as "
            "a ratio to the constant's own (— : no seed got there).\n\n"
            + md_table(["task", "best constant: acc, steps", *names], rows))


def _mean(values: Iterable[float]) -> float | None:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else None


def block_tuning_selector(data: Mapping[str, Any], source: str) -> str:
    """The λ selector and Optuna with pruners against the grid (issue 19's goals)."""
    rows, premise_rows = [], []
    for t in data["tasks"]:
        grid = _tuning_method(t, "grid")[0]
        sel = _tuning_method(t, "selector")
        if not sel:
            continue
        sel, target = sel[0], grid["mean"]
        tol = max(0.2, 100 * (grid["se"] or 0.0))
        per_seed = grid["steps_per_seed"]
        steps = (_mean(sel["steps_per_seed"]) or 0) / per_seed
        wall = (sel.get("wall_seconds") or 0) / (grid.get("wall_seconds") or float("nan"))

        def gap(m: Mapping[str, Any], target: float = target) -> float:
            return 100 * (target - m["mean"])

        opts = _tuning_method(t, "optuna tpe +")
        ahead = sum(m["mean"] < sel["mean"] for m in opts)
        rows.append([
            t["task"], f"{fmt(target, 4)} ± {fmt(grid['se'], 2)} (λ = {fmt(t['best_lam'])})",
            fmt(t["lam0_final"], 4),
            f"{fmt(sel['mean'], 4)} ± {fmt(sel['se'], 2)}, **{gap(sel):+.2f}** "
            f"({'within' if gap(sel) <= tol else 'outside'} {tol:.2f})",
            ", ".join(fmt(x) for x in sel["lams"]),
            f"{fmt(steps, 2)} / {fmt(wall, 2)}",
            ", ".join(f"{m['name'].split('+ ')[1].split(' ')[0]}: {fmt(m['mean'], 4)} "
                      f"({gap(m):+.2f})" for m in opts) or "—",
            f"{ahead} of {len(opts)}" if opts else "—",
            ", ".join(sorted(set(sel["routes"]))),
            ", ".join("yes" if x else "no" for x in sel["matters"])])
        premise_rows.append([t["task"], sel["premise"][0], sel.get("premise_all", ["—"])[0]])
    return (generated_line(source, when=machine_note(data.get("machine")),
                           command="python " + data["command"] if data.get("command") else None)
            + "\n\nTest accuracy at T of the λ each method chose on the validation split, seed "
              "mean ± SE; bold: the gap to the grid's choice in points (positive: below it), "
              "against the goal max(0.2, the grid's seed SE in points). Compute: the "
              "selector's optimizer steps per seed over the grid's per seed (9 runs), and its "
              "wall seconds over the grid's (all seeds, same workers). Optuna TPE gets the "
              "selector's steps, seed by seed.\n\n"
            + md_table(["task", "grid (val-selected)", "λ = 0", "selector", "selector's λ per seed",
                        "compute: steps / wall", "Optuna TPE + pruner (gap)",
                        "selector ahead of", "route", "λ matters (per seed)"], rows)
            + "\n\nThe premise check, seed 0: on the three stopped probes (what chose the "
              "route), and on every run with λ > 0 the selector made.\n\n"
            + md_table(["task", "probes", "every run with λ > 0"], premise_rows))


def block_tuning_goals(data: Mapping[str, Any], source: str) -> str:
    """Issue 19's goals, each judged per task from the benchmark's results."""
    rows = []
    for t in data["tasks"]:
        grid = _tuning_method(t, "grid")[0]
        sel = _tuning_method(t, "selector")
        if not sel:
            continue
        sel = sel[0]
        gap = 100 * (grid["mean"] - sel["mean"])
        tol = max(0.2, 100 * (grid["se"] or 0.0))
        steps = (_mean(sel["steps_per_seed"]) or 0) / grid["steps_per_seed"]
        opts = _tuning_method(t, "optuna tpe +")
        ahead = all(m["mean"] < sel["mean"] for m in opts) if opts else None
        autol2 = [100 * (t["target"] - m["mean"]) for m in _tuning_method(t, "autol2")]
        best_auto = min(autol2) if autol2 else None
        rows.append([t["task"], f"{gap:+.2f} vs {tol:.2f}: {'yes' if gap <= tol else 'no'}",
                     f"{fmt(steps, 2)}: {'yes' if steps <= 0.2 else 'no'}",
                     "—" if ahead is None else ("yes" if ahead else "no"),
                     "no" if any(sel["matters"]) else f"yes, at {fmt(steps, 2)}",
                     "—" if best_auto is None else
                     f"{best_auto:+.2f}: {'yes' if best_auto <= 0.2 else 'no'}"])
    return (generated_line(source) + "\n\nEach goal per task, from the tables above: the "
            "selector's gap to the grid against max(0.2, the grid's seed SE) in points; its "
            "steps per seed as a share of the grid's (goal ≤ 0.2); ahead of both Optuna "
            "pruners; whether it said \"λ hardly matters\" (and at what share of the compute; "
            "goal ≤ 0.1); the best AutoL2 variant's gap to the best constant (goal ≤ 0.2).\n\n"
            + md_table(["task", "selector within tolerance", "selector compute ≤ 1/5",
                        "ahead of Optuna + pruners", "says λ hardly matters",
                        "best AutoL2 within 0.2"], rows))


def _md_escape(text: str) -> str:
    """`text` with its asterisks escaped, so that "t*" stays a t and a star in Markdown."""
    return str(text).replace("*", "\\*")


def block_regime(data: Mapping[str, Any], source: str) -> str:
    """The regime map's cells (study `regime`): where t* ∝ 1/λ held, with every quantity."""
    def interval(low: Any, high: Any, scale: float = 1.0, digits: int = 2) -> str:
        if low is None or high is None:
            return ""
        return f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"

    from l2dynamics.analysis.regime import NETWORK_NAMES

    rows = []
    for c in data["cells"]:
        slope = ("—" if c.get("slope") is None else
                 f"{c['slope']:.2f}{interval(c.get('slope_low'), c.get('slope_high'))}")
        gain = ("—" if c.get("gain") is None else
                f"{100 * c['gain']:+.2f}{interval(c.get('gain_low'), c.get('gain_high'), 100)}")
        network = NETWORK_NAMES.get(c.get("network") or "fc", c.get("network"))
        rows.append([network, c["loss"], c["width"], c["n_train"], fmt(c["params_per_example"]),
                     c["shape"], fmt(c["fit_share"], 2), slope, f"**{c['verdict']}**",
                     fmt(c.get("c_eta")), fmt(c.get("c_eta_ratio"), 2), gain,
                     fmt(c.get("hessian_median"), 2)])
    minutes = data.get("wall_seconds", 0) / 60
    return (generated_line(source, when=data.get("created"), command=data.get("command"))
            + f"\n\n{_md_escape(data['description'])}. Measured on {data.get('machine')} in "
            f"{minutes:.0f} min.\n\n**{_md_escape(data['sentence'])}**\n\n"
            + md_table(["network", "loss", "width (CNN: channels)", "training images",
                        "parameters per example",
                        "accuracy", "share fitting", "slope of t* (95 % CI)", "t* ∝ 1/λ",
                        "c·η", "c·η at η₂ / η₁", "best λ − λ = 0, points (CI)",
                        "λ_min(∇²L_λ)/λ, median over λ"], rows))


def block_tuning_phi(data: Mapping[str, Any], source: str) -> str:
    phi = data["phi"]
    shifts = list(next(iter(phi["cases"]))["curve_shift_rms"]) if phi["cases"] else []
    rows = []
    for c in phi["cases"]:
        rms = c["curve_shift_rms"]
        best = min(rms, key=rms.get)
        rows.append([c["case"], ", ".join(
            f"**{100 * rms[s]:.2f}**" if s == best else f"{100 * rms[s]:.2f}" for s in shifts),
            f"×{fmt(c['curve_shift'])}", f"×{fmt(c['shift_phi'])}", f"×{fmt(c['shift_naive'])}",
            f"{fmt(c['best_lam'])} ({fmt(c['best_mean'], 4)})"])
    return (generated_line(source) + f"\n\nTask `{phi['task']}`, probe c·η = "
            f"{fmt(phi['c_eta'])}, reference best λ = {fmt(phi['reference_best'])}.\n\n"
            + md_table(["case", f"RMS gap (points) at shift ×{', ×'.join(shifts)}", "best shift",
                        "Φ says", "the released code says", "best grid λ (acc)"], rows))


def block_predict_example(data: Mapping[str, Any], source: str, command: str) -> str:
    rows = []
    for a in data["attempts"]:
        rows.append([fmt(a["lam"]), fmt(a["steps"]), fmt(a.get("steps_done")),
                     fmt(a["tstars"]), ", ".join(fmt(x) for x in a["fits_train"])])
    head = (f"λ_pred = **{fmt(data['lam'])}** {ci(data['lam_low'], data['lam_high'])} for T = "
            f"{fmt(data['budget'])} (λ_ref = {fmt(data['lam_ref'])}, t*_ref = "
            f"{fmt(data['tstar_ref'])}, c·η = {fmt(data['c_eta'])}, estimator "
            f"`{data['estimator']}`); cost **{fmt(data['compute_fraction'])}** runs' compute."
            if data.get("ok") else f"No prediction: {data.get('message')}")
    return (generated_line(source, command=command) + "\n\n" + head + "\n\n"
            + md_table(["probe λ", "steps", "steps run per seed", "t* per seed",
                        "fits the training data"], rows))


# --- the config key table -------------------------------------------------------------------------


def block_config_keys(_root: Path) -> str:
    try:
        from l2dynamics.config import describe_keys
    except ImportError as exc:
        log.warning("docs: l2dynamics.config.describe_keys is missing (%s); the configuration "
                    "key table is generated from it. Falling back to the Config dataclass.", exc)
        return _config_keys_fallback()
    return render_config_keys(describe_keys())


def render_config_keys(keys: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for k in keys:
        allowed = k.get("allowed")
        if isinstance(allowed, (list, tuple)):
            allowed = ", ".join(f"`{a}`" for a in allowed)
        default = k.get("default")
        rows.append([f"`{k['key']}`", f"`{k.get('type', '')}`" if k.get("type") else "—",
                     f"`{json.dumps(default, ensure_ascii=False)}`", allowed or "—",
                     k.get("unit") or "—", k.get("help") or ""])
    return (generated_line("l2dynamics.config.describe_keys()", command="l2dynamics keys")
            + "\n\n" + md_table(["key", "type", "default", "allowed", "unit", "meaning"], rows))


def _config_keys_fallback() -> str:
    import dataclasses
    import inspect

    from l2dynamics.config import Config

    comments = {}
    for line in inspect.getsource(Config).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    defaults = Config().to_dict()
    keys = [{"key": f.name, "type": str(f.type), "default": defaults.get(f.name),
             "help": comments.get(f.name, "")} for f in dataclasses.fields(Config)]
    return (note("warning", "Incomplete table",
                 "`l2dynamics.config.describe_keys` is not available in this build: allowed "
                 "values and units are missing below.") + "\n" + render_config_keys(keys))


# --- study pages ----------------------------------------------------------------------------------

VERDICTS = {"holds": "✅ holds", "consistent": "🟨 consistent, too imprecise to confirm",
            "does not hold": "❌ does not hold", "undetermined": "❔ undetermined"}


def verdict_label(verdict: Any) -> str:
    text = str(verdict).strip()
    return VERDICTS.get(text.lower(), text)


def verdict_counts(studies: Iterable[Mapping[str, Any]]) -> Counter:
    counts: Counter = Counter()
    for s in studies:
        for c in s.get("claims") or []:
            counts[str(c.get("verdict", "")).strip().lower()] += 1
    return counts


def counts_text(counts: Counter) -> str:
    order = [v for v in VERDICTS if counts.get(v)] + sorted(set(counts) - set(VERDICTS))
    plural = {"holds": "hold", "does not hold": "do not hold"}
    return ", ".join(f"{counts[v]} {plural.get(v, v)}" for v in order) or "no claims"


def _seconds(value: Any) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _run_when(summary: Mapping[str, Any]) -> str:
    versions = summary.get("versions") or {}
    parts = [str(summary.get("created", ""))[:16].replace("T", " "), summary.get("machine"),
             ", ".join(f"{k} {v}" for k, v in versions.items())]
    return "; ".join(p for p in parts if p)


def study_uri(suite: str, key: str) -> str:
    return f"studies/{suite}/{key}.md"


def figure_uri(suite: str, path: str) -> str:
    """Where a summary's figure path ('figures/<key>/<name>') lives under docs/."""
    rel = path[len("figures/"):] if path.startswith("figures/") else path
    return f"{STUDY_FIGURES}/{suite}/{rel}"


def _table_cell(value: Any) -> str:
    return fmt(value, 4)


def _compact(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"`{text}`" if len(text) <= limit else f"`{text[:limit - 1]}…`"


def study_params_table(key: str, suite: str) -> str | None:
    """The study's parameters from the registry (current code), with this suite's preset values;
    None where the registry does not know `key` (or cannot be imported)."""
    try:
        from l2dynamics.studies.base import describe_params
        from l2dynamics.studies.suite import resolve_study

        _, _, params = resolve_study(key, suite, {})
        rows = describe_params(type(params))
    except Exception as exc:  # the registry is optional for a page: note it, do not fail
        log.info("docs: no parameter table for %s/%s: %s", suite, key, exc)
        return None
    table = []
    for r in rows:
        value = getattr(params, r["key"])
        shown = _compact(value)
        if value != r["default"]:
            shown += f" (default {_compact(r['default'])})"
        table.append([f"`{r['key']}`", f"`{r['type']}`", shown, r.get("allowed") or "—",
                      r.get("unit") or "—", r.get("help") or ""])
    return (generated_line([], what="the study registry", command=f"l2dynamics studies {key}")
            + f"\n\nChange one with `l2dynamics study {key} --suite {suite} --set PARAM=VALUE`. "
              "The values are the current code's preset, which may differ from the recorded run "
              "(its configs are below).\n\n"
            + md_table(["parameter", "type", f"{suite} preset", "allowed", "unit", "meaning"],
                       table))


def _study_facts(study: Mapping[str, Any], suite: str, summary: Mapping[str, Any]) -> str:
    key = study["key"]
    facts = [f"**Study** `{key}`", f"**suite** `{suite}`"]
    if study.get("paper"):
        facts.append(f"**paper** {study['paper']}")
    if study.get("status"):
        facts.append(f"**status** {study['status']}")
    if study.get("wall_seconds") is not None:
        facts.append(f"**wall time** {_seconds(study['wall_seconds'])}")
    cold = (summary.get("cold_study_seconds") or {}).get(key)
    if cold is not None:
        facts.append(f"**cold run** {_seconds(cold)}")
    return " · ".join(facts)


def _claims_section(study: Mapping[str, Any]) -> list[str]:
    claims = study.get("claims") or []
    lines = ["## Claims and verdicts", ""]
    if not claims:
        return [*lines, "No claims recorded.", ""]
    extra = [k for k in dict.fromkeys(k for c in claims for k in c)
             if k not in ("claim", "measured", "verdict", "ci", "interval")]
    rows = []
    for c in claims:
        interval = c.get("ci", c.get("interval"))
        rows.append([c.get("claim", ""), fmt(c.get("measured")), fmt(interval),
                     *[fmt(c.get(k)) for k in extra], f"**{verdict_label(c.get('verdict'))}**"])
    return [*lines, f"{counts_text(verdict_counts([study]))}.", "",
            md_table(["claim", "measured", "interval", *extra, "verdict"], rows), ""]


def _figures_section(study: Mapping[str, Any], suite: str, docs_dir: Path) -> list[str]:
    figures = study.get("figures") or []
    lines = ["## Figures", ""] if figures else []
    for fig in figures:
        uri = figure_uri(suite, fig["path"])
        caption = fig.get("caption", "")
        if (docs_dir / uri).is_file():
            rel = "../" + uri[len("studies/"):]  # the page is studies/<suite>/<key>.md
            lines += [f"![{_cell(caption)}]({rel})", "", f"*{caption}*", ""]
        else:
            lines += [note("note", "Figure not in the docs yet",
                           f"`{fig['path']}` — {caption}\n\nCopy a report's figures with "
                           f"`python scripts/update_docs.py --report DIR` (looked for "
                           f"`docs/{uri}`)."), ""]
    return lines


def _tables_section(study: Mapping[str, Any]) -> list[str]:
    tables = study.get("tables") or []
    lines = ["## Tables", ""] if tables else []
    for t in tables:
        lines += [f"### {t.get('title', 'table')}", "",
                  md_table(t["columns"], [[_table_cell(v) for v in row]
                                          for row in t["rows"]]), ""]
    return lines


def render_study_page(study: Mapping[str, Any], *, suite: str, source: str,
                      summary: Mapping[str, Any], docs_dir: Path,
                      notes: str | None = None, params: str | None = None) -> str:
    """One study's page: setup, claims with verdicts, figures, tables, configs and notes."""
    key = study["key"]
    lines = [f"# {study.get('title') or key}", "",
             generated_line(source, when=_run_when(summary)), "",
             _study_facts(study, suite, summary), ""]
    if study.get("description"):
        lines += [f"**Setup.** {study['description']}", ""]
    if study.get("command"):
        lines += ["```bash", study["command"], "```", ""]
    intro, _, more = (notes or "").partition(MORE)
    if intro.strip():
        lines += ["## About this study", "", intro.strip(), ""]
    if study.get("status") not in (None, "ok"):
        lines += [note("failure", f"The study {study.get('status')}",
                       str(study.get("error") or "no error recorded")), ""]
    lines += _claims_section(study) + _figures_section(study, suite, docs_dir)
    lines += _tables_section(study)
    if params:
        lines += ["## Parameters", "", params, ""]
    if study.get("configs"):
        body = json.dumps(study["configs"], indent=2, ensure_ascii=False)
        lines += ["## Configuration", "", '??? info "The configs this study ran"', "",
                  "    ```json"] + ["    " + line for line in body.splitlines()] + ["    ```", ""]
    if more.strip():
        lines += [more.strip(), ""]
    return "\n".join(lines)


def render_suite_overview(summary: Mapping[str, Any], *, suite: str, source: str) -> str:
    """Run facts, the verdict counts and one row per study (links relative to studies/)."""
    studies = summary.get("studies") or []
    counts = verdict_counts(studies)
    cold = summary.get("cold_study_seconds") or {}
    out = [generated_line(source, when=_run_when(summary)), ""]
    if summary.get("command"):
        out += ["```bash", summary["command"], "```", ""]
    out += [f"**Verdicts: {counts_text(counts)}** over {len(studies)} studies.", ""]
    wall = summary.get("wall_seconds")
    times = []
    if wall is not None:
        times.append(f"this run took {_seconds(wall)}")
    if summary.get("cold_wall_seconds") is not None:
        times.append(f"a cold run (fresh store) took {_seconds(summary['cold_wall_seconds'])}"
                     + (f" (`{summary['cold_command']}`)" if summary.get("cold_command") else ""))
    runs = (summary.get("runs") or {}).get("counts")
    if runs:
        times.append("stored runs: " + ", ".join(f"{v} {k}" for k, v in runs.items()))
    if times:
        out += ["; ".join(times).capitalize() + ".", ""]
    if summary.get("kept_from_previous"):
        out += [note("note", "Mixed runs", "These studies were not in the last run and are kept "
                     "from an earlier one: " + ", ".join(f"`{k}`" for k in
                                                         summary["kept_from_previous"]) + "."),
                ""]
    rows = []
    for s in studies:
        c = verdict_counts([s])
        rows.append([f"[{_cell(s.get('title') or s['key'])}]({suite}/{s['key']}.md)",
                     f"`{s['key']}`", s.get("paper", ""), s.get("status", ""),
                     str(c.get("holds", 0)), str(c.get("consistent", 0)),
                     str(c.get("does not hold", 0)),
                     str(c.get("undetermined", 0)), _seconds(s.get("wall_seconds")),
                     _seconds(cold.get(s["key"])) if s["key"] in cold else "—"])
    out.append(md_table(["study", "key", "paper", "status", "holds", "consistent",
                         "does not hold",
                         "undetermined", "wall time", "cold run"], rows))
    problems = (summary.get("runs") or {}).get("problems") or []
    if problems:
        cols = list(dict.fromkeys(k for p in problems for k in p))
        out += ["", "Diverged or failed runs:", "",
                md_table(cols, [[fmt(p.get(c)) for c in cols] for p in problems])]
    return "\n".join(out)


def load_notes(docs_dir: Path, key: str) -> str | None:
    path = docs_dir / NOTES / f"{key}.md"
    return path.read_text() if path.is_file() else None


def study_pages(summary: Mapping[str, Any], *, suite: str, source: str, docs_dir: Path,
                registry: bool = True) -> dict[str, str]:
    """{docs-relative uri: Markdown} for every study of one reproduce summary."""
    return {study_uri(suite, s["key"]): render_study_page(
        s, suite=suite, source=source, summary=summary, docs_dir=docs_dir,
        notes=load_notes(docs_dir, s["key"]),
        params=study_params_table(s["key"], suite) if registry else None)
        for s in summary.get("studies") or []}


def find_summaries(root: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """{suite: (source path, summary)} for every benchmarks/results/reproduce_<suite>.json."""
    found = {}
    for path in sorted((root / RESULTS).glob("reproduce_*.json")):
        suite = path.stem[len("reproduce_"):]
        found[suite] = (f"{RESULTS}/{path.name}", json.loads(path.read_text()))
    return found


def studies_nav(summaries: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[Any]:
    nav: list[Any] = [{"Overview": SUITE_OVERVIEW["mini"]}]
    for suite in dict.fromkeys(["mini", "paper", *summaries]):
        entries: list[Any] = []
        if suite != "mini" and suite in SUITE_OVERVIEW:
            entries.append({"Overview": SUITE_OVERVIEW[suite]})
        if suite in summaries:
            entries += [{s.get("title") or s["key"]: study_uri(suite, s["key"])}
                        for s in summaries[suite][1].get("studies") or []]
        if entries:
            nav.append({SUITE_TITLES.get(suite, f"{suite} suite"): entries})
    return nav


# --- the marker blocks ----------------------------------------------------------------------------


def _json_block(default: str, fn: Callable[..., str], command: str | None = None,
                csv_or_json: bool = False) -> Callable[..., str]:
    def run(root: Path, file: str = default, **args: str) -> str:
        source = f"{RESULTS}/{file}" if "/" not in file else file
        data = load_result(root, source)
        kwargs: dict[str, Any] = dict(args)
        if command is not None:
            kwargs["command"] = command
        return fn(data, source, **kwargs)
    return run


def _throughput(root: Path, files: str = "throughput_h200.json,throughput_h200_b1024.json",
                **_: str) -> str:
    datas = [(f"{RESULTS}/{f}", load_result(root, f"{RESULTS}/{f}")) for f in files.split(",")]
    return block_throughput(datas, "python benchmarks/throughput.py")


def _suite(root: Path, suite: str = "mini", **_: str) -> str:
    source = f"{RESULTS}/reproduce_{suite}.json"
    if not (root / source).is_file():
        return note("info", f"No {suite} suite results in the docs yet",
                    f"`{source}` does not exist. After `l2dynamics reproduce --suite {suite} "
                    f"--out DIR`, run `python scripts/update_docs.py --report DIR` and rebuild.")
    return render_suite_overview(load_result(root, source), suite=suite, source=source)


BLOCKS: dict[str, Callable[..., str]] = {
    "overhead": _json_block("overhead.json", block_overhead, "python benchmarks/overhead.py"),
    "engine_speed": _json_block("engine_speed.json", block_engine_speed),
    "eval_cost": _json_block("engine_speed.json", block_eval_cost),
    "eval_budget_estimates": _json_block("eval_budget_estimates.json",
                                         block_eval_budget_estimates),
    "step_efficiency": _json_block("step_efficiency.json", block_step_efficiency,
                                   "python benchmarks/step_efficiency.py"),
    "kernels": _json_block("kernels.json", block_kernels, "python benchmarks/kernels.py"),
    "ensemble": _json_block("ensemble.json", block_ensemble,
                            "python benchmarks/ensemble.py --repeats 3 --crossover"),
    "ensemble_cuda": _json_block("ensemble_cuda.json", block_ensemble,
                                 "python benchmarks/ensemble.py --device cuda --ks 8,32 "
                                 "--repeats 2 --steps-a 400 --steps-b 200"),
    "throughput": _throughput,
    "startup": lambda root, file="startup.json", **_: block_startup(
        root, f"{RESULTS}/{file}", "python benchmarks/startup.py"),
    "tstar_sweep": _json_block("mnist1d_tstar.json", block_tstar_sweep),
    "theory_comparisons": _json_block("theory_study.json", block_theory_comparisons),
    "theory_fits": _json_block("theory_study.json", block_theory_fits),
    "theory_seeds": _json_block("theory_seeds.json", block_theory_seeds),
    "norms_equilibrium": _json_block("norms_equilibrium.csv", block_norms_equilibrium,
                                     "l2dynamics norms equilibrium --out out/norms"),
    "norms_grid": _json_block("norms_grid.json", block_norms_grid,
                              "l2dynamics norms grid --out docs/norms -j 2"),
    "norms_projection": _json_block("docs/norms/projection.csv", block_norms_projection,
                                    "l2dynamics norms projection --out docs/norms"),
    "norms_traces": _json_block("docs/norms/traces.json", block_norms_traces,
                                "l2dynamics norms traces --out docs/norms"),
    "tuning_tasks": _json_block("tuning.json", block_tuning_tasks),
    "tuning_constant": _json_block("tuning.json", block_tuning_constant),
    "tuning_autol2": _json_block("tuning.json", block_tuning_autol2),
    "tuning_phi": _json_block("tuning.json", block_tuning_phi),
    "tuning_selector": _json_block("tuning_selector.json", block_tuning_selector),
    "tuning_goals": _json_block("tuning_selector.json", block_tuning_goals),
    "regime": _json_block("regime.json", block_regime),
    "predict_example": _json_block("predict_example.json", block_predict_example,
                                   "l2dynamics predict configs/example.yaml --budget 20000 "
                                   "--out out/predict"),
    "config_keys": lambda root, **_: block_config_keys(root),
    "suite": _suite,
}

MARKER = re.compile(r"<!--\s*gen:([a-z0-9_]+)((?:\s+[\w.-]+=[^\s>]+)*)\s*-->")


def expand_markers(markdown: str, root: Path = ROOT, *, where: str = "") -> str:
    """Replace every ``<!-- gen:NAME k=v -->`` with its generated block."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = dict(a.split("=", 1) for a in shlex.split(match.group(2)))
        if name not in BLOCKS:
            raise KeyError(f"{where}: unknown generated block {name!r}; known: "
                           f"{', '.join(sorted(BLOCKS))}")
        try:
            return BLOCKS[name](root, **args)
        except MissingResult as exc:
            log.warning("docs: %s: block %r: %s", where, name, exc)
            return note("warning", "Result missing", f"{exc}.")
    return MARKER.sub(replace, markdown)


# --- mkdocs hooks ---------------------------------------------------------------------------------

_SUMMARIES: dict[str, tuple[str, dict[str, Any]]] = {}


def on_config(config: Any) -> Any:
    _SUMMARIES.clear()
    _SUMMARIES.update(find_summaries(ROOT))
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, Mapping) and "Studies" in entry:
            nav[i] = {"Studies": studies_nav(_SUMMARIES)}
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    docs_dir = Path(config["docs_dir"])
    for suite, (source, summary) in _SUMMARIES.items():
        for uri, content in study_pages(summary, suite=suite, source=source,
                                        docs_dir=docs_dir).items():
            files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return expand_markers(markdown, ROOT, where=page.file.src_uri)
    except KeyError as exc:
        raise PluginError(str(exc.args[0])) from exc


_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc):<code>~?([\w.]+?)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    # Docstrings use Sphinx roles (:class:`~a.B`); show them as code with the short name.
    return _ROLE.sub(lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1]}</code>", html)


# --- command line: write one summary's study pages for a look -------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, required=True, help="a reproduce summary.json")
    parser.add_argument("--out", type=Path, required=True, help="folder for the Markdown pages")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs",
                        help="where figures and notes are looked up")
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    suite = summary.get("suite", "mini")
    pages = study_pages(summary, suite=suite, source=str(args.summary), docs_dir=args.docs_dir)
    pages["studies/index.md"] = render_suite_overview(summary, suite=suite,
                                                      source=str(args.summary))
    for uri, text in pages.items():
        path = args.out / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
