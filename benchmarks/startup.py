"""Start-up time: ``import l2dynamics`` and the light commands against ``import torch``.

Each command runs in a fresh interpreter (``sys.executable``), its wall time measured from
launch to exit. The commands are interleaved — every repeat runs each once, in a rotated order,
after one unrecorded warm-up round — so that load on the machine weighs on all of them alike;
the table gives the median and minimum over repeats and the ratio to ``import torch`` (the median
of the per-repeat ratios). The CLI is entered through ``l2dynamics.cli.main`` whether ``cli`` is
a module or a package.

Results go to ``benchmarks/results/startup.json`` (or ``--out``) under ``--label``; other labels
already in that file are kept, so a ``before`` and an ``after`` run sit side by side.

Usage: python benchmarks/startup.py --label after [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.common import RESULTS, machine, print_table
except ImportError:  # run as a script
    from common import RESULTS, machine, print_table


def _cli(*argv: str) -> list[str]:
    argv_ = ["l2dynamics", *argv]
    code = f"import sys; sys.argv = {argv_!r}; from l2dynamics.cli import main; main()"
    return [sys.executable, "-c", code]


def commands(data_dir: str) -> dict[str, list[str]]:
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "import l2dynamics": [sys.executable, "-c", "import l2dynamics"],
        # what a user who trains pays: the engine and its imports (torch included)
        "from l2dynamics import Trainer": [sys.executable, "-c",
                                           "from l2dynamics import Trainer"],
        "l2dynamics --help": _cli("--help"),
        "l2dynamics keys": _cli("keys"),
        "l2dynamics datasets": _cli("datasets", "--data-dir", data_dir),
    }


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[-1]!r} exited with {proc.returncode}: {proc.stderr[-500:]}")
    return seconds


def measure(cmds: dict[str, list[str]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Per command, its wall times over `repeats` interleaved rounds (rotated order)."""
    env = {**os.environ, "COLUMNS": "120"}
    names = list(cmds)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = wall_time(cmds[name], env)
            if round_ >= warmup:
                times[name].append(seconds)
    return times


def summarize(times: dict[str, list[float]]) -> dict[str, dict]:
    torch_times = times["import torch"]
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts),
                   "ratio_to_import_torch": statistics.median(
                       t / t0 for t, t0 in zip(ts, torch_times, strict=True)),
                   "all_s": ts} for name, ts in times.items()}


def save(path: Path, label: str, record: dict, cmds: dict[str, list[str]], data_dir: str) -> None:
    """Write `record` under `label`, keeping the other labels already in `path`."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["benchmark"] = "startup"
    data["commands"] = {name: f'python -c "{argv[-1]}"'.replace(data_dir, "$EMPTY_DIR")
                        for name, argv in cmds.items()}
    data.setdefault("labels", {})[label] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="e.g. before | after")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    with tempfile.TemporaryDirectory() as data_dir:  # `datasets` finds no files: no disk scan
        cmds = commands(data_dir)
        summary = summarize(measure(cmds, args.repeats))
        record = {"machine": machine(), "repeats": args.repeats,
                  "command": ("python benchmarks/startup.py " + " ".join(sys.argv[1:])).strip(),
                  "results": summary}
        save(args.out, args.label, record, cmds, data_dir)
    rows = [(name, f"median {s['median_s']:.3f} s   min {s['min_s']:.3f} s   "
                   f"{s['ratio_to_import_torch']:.2f}x import torch")
            for name, s in summary.items()]
    print_table(f"start-up, {args.label} ({args.repeats} interleaved repeats)", rows)
    print(f"\nwrote {args.out} (label {args.label!r})")


if __name__ == "__main__":
    main()
