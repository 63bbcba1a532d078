"""Instrumentation overhead: the l2dynamics loop with probes on the log clock vs a bare loop.

Superseded for the engine's step by ``benchmarks/engine_speed.py`` (paired blocks per model
family, ratios with intervals; this whole-run minimum could not resolve a few per cent). Kept for
the whole run with store writes on an MLP.

Both train the same MLP on the same data with the same batches (per-epoch permutations) and the
same coupled L2 (torch ``weight_decay=λ`` in the bare loop, ``L2Penalty`` in ours). Measured in
one process, in rotated order, `--repeats` times; the minimum over repeats is reported
(background load only adds time) with the median of paired ratios beside it:

- ratio_full:  whole run with metrics on the log clock (10/decade) and store writes / bare loop
- ratio_loop:  our loop with only the final evaluation / bare loop (per-step engine overhead)
- probe_cost:  one evaluation (test set + fixed train subset + norms) in bare-step equivalents

Usage: python benchmarks/overhead.py [--steps 10000] [--width 256] [--batch 256] [--repeats 6]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from l2dynamics import RunStore, Trainer, make_config

try:
    from benchmarks.common import median, print_table, timed, write_result
except ImportError:  # run as a script
    from common import median, print_table, timed, write_result


def bare_loop(trainer: Trainer, steps: int) -> None:
    """What a user would write by hand: same model copy, same batches, torch weight_decay."""
    cfg = trainer.cfg
    model = trainer.model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.lam)
    x, y = trainer.data.x_train, trainer.data.y_train
    n, b = x.shape[0], trainer.batch_size
    per_epoch = n // b
    perm = None
    for step in range(steps):
        epoch, pos = divmod(step, per_epoch)
        if pos == 0 or perm is None:
            g = torch.Generator().manual_seed(epoch)
            perm = torch.randperm(n, generator=g)
        idx = perm[pos * b:(pos + 1) * b]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 leaves a core for background load: steadier)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = make_config(dataset="mnist1d", n_train=4000, n_test=1000, model="fc", width=args.width,
                      depth=2, batch_size=args.batch, lr=0.05, lam=1e-4, steps=args.steps,
                      eval_per_decade=10)
    times: dict[str, list[float]] = {"bare": [], "full": [], "loop_only": []}
    probe = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")

        def run_bare() -> None:
            t = Trainer(cfg)
            times["bare"].append(timed(lambda: bare_loop(t, args.steps)))

        def run_full() -> None:
            t = Trainer(cfg, store=store)
            times["full"].append(timed(t.run))

        def run_loop_only() -> None:
            t = Trainer(cfg)
            t.clock = np.array([args.steps])
            times["loop_only"].append(timed(t.run))
            probe.append(median([timed(t.measure) for _ in range(5)]))

        variants = [run_bare, run_full, run_loop_only]
        for i in range(args.repeats):  # rotate the order so drifts in machine load cancel
            for run in variants[i % 3:] + variants[:i % 3]:
                run()
        store.close()
    evals = len(Trainer(cfg).clock)
    # Background load only ever adds time, so the minimum over repeats is the estimate of the
    # intrinsic cost (as `timeit` does); the median of paired ratios is reported beside it.
    t_bare, t_full, t_loop = (min(times[k]) for k in ("bare", "full", "loop_only"))
    paired_full = median([f / b for f, b in zip(times["full"], times["bare"], strict=True)])
    paired_loop = median([f / b for f, b in zip(times["loop_only"], times["bare"], strict=True)])
    t_probe = min(probe)
    step_bare = t_bare / args.steps
    result = {
        "config": {"model": f"fc width {args.width} depth 2", "dataset": "mnist1d 4000/1000",
                   "batch": args.batch, "steps": args.steps, "eval_per_decade": 10,
                   "evaluations": evals, "repeats": args.repeats, "threads": args.threads},
        "bare_seconds": t_bare, "full_seconds": t_full, "loop_only_seconds": t_loop,
        "ratio_full": t_full / t_bare, "ratio_loop": t_loop / t_bare,
        "ratio_full_paired_median": paired_full, "ratio_loop_paired_median": paired_loop,
        "bare_ms_per_step": 1e3 * step_bare,
        "probe_ms": 1e3 * t_probe, "probe_cost_in_steps": t_probe / step_bare,
        "goal_ratio": 1.03,
        "repeats_seconds": times,
    }
    path = write_result("overhead", result)
    print_table(f"Instrumentation overhead ({args.steps} steps, {evals} evaluations, "
                f"min of {args.repeats} rotated repeats)", [
        ("bare loop", f"{t_bare:.2f} s  ({1e3 * step_bare:.3f} ms/step)"),
        ("l2dynamics, probes on log clock",
         f"{t_full:.2f} s  ratio {t_full / t_bare:.3f}  (paired median {paired_full:.3f})"),
        ("l2dynamics, final eval only",
         f"{t_loop:.2f} s  ratio {t_loop / t_bare:.3f}  (paired median {paired_loop:.3f})"),
        ("one evaluation", f"{1e3 * t_probe:.1f} ms = {t_probe / step_bare:.1f} bare steps"),
        ("written", str(path)),
    ])


if __name__ == "__main__":
    main()
