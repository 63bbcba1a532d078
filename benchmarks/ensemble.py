"""Vectorized ensemble vs K sequential Trainer runs: throughput in member-steps per second.

Both engines train the same K configs (members differ in λ, log-spaced 1e-5…1e-2, and seed;
same η = 0.05, plain SGD) on the same data (MNIST-1D 4000/1000, loaded once and shared), with
probes on the log clock (10 per decade) and no store. Timed: construction + ``run()`` of all K
runs (model init is part of a run's cost), on `--device`, in one process, in rotated order,
`--repeats` times. Reported: member-steps per second of each engine from the minimum time over
repeats (background load only adds time), their ratio, and the median of paired ratios.

Cases:
  a  fc 2×256, batch 128 (the project's main CPU study model)
  b  fc 3×1024, batch 256 (a bigger model)
  c  fc 2×w, w = 32, 64, 128, batch 128 (with --crossover): where vectorizing stops paying on a
     CPU, to place the threshold of ``choose_engine``

Usage: python benchmarks/ensemble.py [--device cpu|cuda|auto] [--ks 8,32] [--repeats 3]
       [--steps-a N] [--steps-b N] [--crossover] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from l2dynamics import Trainer, make_config
from l2dynamics.train import EnsembleTrainer, choose_engine, load_run_data, resolve_device

try:
    from benchmarks.common import median, print_table, timed, write_result
except ImportError:  # run as a script
    from common import median, print_table, timed, write_result


def member_configs(k: int, *, width: int, depth: int, batch: int, steps: int, device: str,
                   eval_per_decade: int) -> list:
    base = dict(dataset="mnist1d", n_train=4000, n_test=1000, model="fc", width=width,
                depth=depth, batch_size=batch, lr=0.05, steps=steps, device=device,
                eval_per_decade=eval_per_decade)
    return [make_config(base, lam=float(lam), seed=i, name=f"m{i}")
            for i, lam in enumerate(np.logspace(-5, -2, k))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_case(label: str, cfgs: list, repeats: int, device: torch.device) -> dict:
    """Time both engines on `cfgs` (rotated order), after one short untimed warm-up of each."""
    data = load_run_data(cfgs[0], device, getattr(torch, cfgs[0].dtype))
    warm = [c.replace(steps=3) for c in cfgs[:2]]
    EnsembleTrainer(warm, dataset=data).run()
    Trainer(warm[0], dataset=data).run()
    sync(device)

    def sequential() -> None:
        for cfg in cfgs:
            Trainer(cfg, dataset=data).run()
        sync(device)

    def vectorized() -> None:
        EnsembleTrainer(cfgs, dataset=data).run()
        sync(device)

    times: dict[str, list[float]] = {"sequential": [], "vectorized": []}
    engines = [("sequential", sequential), ("vectorized", vectorized)]
    for i in range(repeats):
        for name, fn in engines[i % 2:] + engines[:i % 2]:
            times[name].append(timed(fn))
    member_steps = sum(c.steps for c in cfgs)
    t_seq, t_vec = min(times["sequential"]), min(times["vectorized"])
    paired = median([s / v for s, v in zip(times["sequential"], times["vectorized"],
                                           strict=True)])
    n_params = sum(p.numel() for p in Trainer(cfgs[0], dataset=data).model.parameters())
    return {
        "case": label, "k": len(cfgs), "steps": cfgs[0].steps, "batch": cfgs[0].batch_size,
        "params_per_member": n_params, "params_x_batch": n_params * cfgs[0].batch_size,
        "sequential_member_steps_per_s": member_steps / t_seq,
        "vectorized_member_steps_per_s": member_steps / t_vec,
        "ratio": t_seq / t_vec, "ratio_paired_median": paired,
        "choose_engine": choose_engine(cfgs, device),
        "seconds": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--ks", default="8,32", help="ensemble sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-a", type=int, default=None,
                        help="steps of case a (default 300 on CPU, 2000 on CUDA)")
    parser.add_argument("--steps-b", type=int, default=None,
                        help="steps of case b (default 20 on CPU, 1000 on CUDA)")
    parser.add_argument("--eval-per-decade", type=int, default=10)
    parser.add_argument("--crossover", action="store_true", help="also run case c")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steadier under background load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    steps_a = args.steps_a or (2000 if cuda else 300)
    steps_b = args.steps_b or (1000 if cuda else 20)
    ks = [int(k) for k in args.ks.split(",")]
    dev = str(device)
    load_before = os.getloadavg()
    cases: list[tuple[str, dict]] = [
        ("a: fc 2x256 batch 128", dict(width=256, depth=2, batch=128, steps=steps_a)),
        ("b: fc 3x1024 batch 256", dict(width=1024, depth=3, batch=256, steps=steps_b)),
    ]
    if args.crossover:
        cases += [(f"c: fc 2x{w} batch 128", dict(width=w, depth=2, batch=128, steps=steps_a))
                  for w in (32, 64, 128)]
    rows = []
    for label, spec in cases:
        for k in ks if not label.startswith("c") else ks[:1]:
            cfgs = member_configs(k, device=dev, eval_per_decade=args.eval_per_decade, **spec)
            row = measure_case(label, cfgs, args.repeats, device)
            rows.append(row)
            print(f"{label:<24} K={k:<3} sequential {row['sequential_member_steps_per_s']:9.1f}"
                  f"  vectorized {row['vectorized_member_steps_per_s']:9.1f} member-steps/s"
                  f"  ratio {row['ratio']:.2f} (paired {row['ratio_paired_median']:.2f})"
                  f"  choose_engine: {row['choose_engine']}", flush=True)
    load_after = os.getloadavg()
    result = {
        "config": {"dataset": "mnist1d 4000/1000", "optimizer": "sgd lr 0.05",
                   "members": "lam log-spaced 1e-5..1e-2, seed 0..K-1",
                   "eval_per_decade": args.eval_per_decade, "repeats": args.repeats,
                   "threads": args.threads, "device": dev,
                   "device_name": torch.cuda.get_device_name(device) if cuda else "cpu"},
        "load_average_before": load_before, "load_average_after": load_after,
        "results": rows,
    }
    path = write_result("ensemble" if device.type == "cpu" else f"ensemble_{device.type}", result)
    print_table(f"Vectorized ensemble vs sequential Trainer runs on {dev} (min of "
                f"{args.repeats} rotated repeats; load {load_before[0]:.1f} → "
                f"{load_after[0]:.1f})", [
        (f"{r['case']}, K={r['k']}",
         f"ratio {r['ratio']:.2f}  ({r['vectorized_member_steps_per_s']:.0f} vs "
         f"{r['sequential_member_steps_per_s']:.0f} member-steps/s)") for r in rows
    ] + [("written", str(path))])


if __name__ == "__main__":
    main()
