"""The training step through ``Trainer`` against a hand-written PyTorch loop, per model family,
the CPU fast-path options, and what evaluation costs under the default plan.

Step (evaluation excluded): ``Trainer``'s loop (``Trainer._loop``: batch lookup, schedule, L2
penalty, optimizer, divergence check) against a bare loop a user would write — a copy of the same
initial model in the same memory layout, the same device-resident data, the same per-epoch
random batches, ``torch.optim.SGD(lr, momentum, weight_decay=λ)`` (the same coupled λ) and
``F.cross_entropy``. They run in alternating blocks of ``block`` updates (A B B A …, after one
warm-up block each); each pair of blocks gives a ratio engine/bare, and the summary is the
geometric mean of the `pairs` ratios with a 95 % t-interval of their logarithms (n = pairs). Pairs
cancel the drift of a shared machine's load; the interval says what is left of its noise.

The same paired method compares the bare step with options of the CPU fast path: NHWC layout
(``channels_last``; conv models), bf16 autocast and ``torch.compile`` (default mode, timed after
compiling), each against the plain float32 contiguous step.

Evaluation: the share of a 2,000-step Fashion-MNIST CNN run (cnn 4×16, batch 128, all 60,000
training and 10,000 test images) that evaluation takes, before (``eval_budget=0``: every point
on the whole test set, eval batch 2,048, contiguous layout) and after (the defaults): planned
evaluation points × the measured time of one point (at its test-subset size and at the whole
test set) over 2,000 × the measured time of one update, with the same configuration's planned
compute share. Also the time to evaluate the step benchmark's test images (2,000) per
evaluation batch size.

Usage: python benchmarks/engine_speed.py [--pairs 20] [--block-seconds 0.3] [--threads 1]
       [--no-compile] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from l2dynamics import Trainer, make_config
from l2dynamics.probes.metrics import evaluate
from l2dynamics.train.setup import epoch_permutation

try:
    from benchmarks.common import machine, print_table, write_result
except ImportError:  # run as a script
    from common import machine, print_table, write_result

COMMAND = "python benchmarks/engine_speed.py"
FAMILIES = {  # name: (config keys, batch)
    "fc": ({"model": "fc", "width": 512, "depth": 2}, 128),
    "cnn": ({"model": "cnn", "width": 16, "depth": 4, "norm": "none"}, 128),
    "cnn_bn": ({"model": "cnn", "width": 16, "depth": 4, "norm": "bn"}, 128),
    "wrn": ({"model": "wrn", "width": 4, "depth": 16}, 16),
}
BASE = {"dataset": "fashion_mnist", "n_train": 10_000, "n_test": 2_000, "optimizer": "sgd",
        "lr": 0.02, "momentum": 0.9, "lam": 5e-4, "steps": 1_000_000, "device": "cpu"}
QUICK_BASE = {**BASE, "dataset": "digits", "data_options": {"image": True}, "n_train": 1000,
              "n_test": 200}


class BareLoop:
    """What a user writes by hand: a copy of the trainer's initial model (same layout), the same
    device-resident data, per-epoch permutations, torch's SGD with ``weight_decay=λ``."""

    def __init__(self, trainer: Trainer, *, channels_last: bool | None = None,
                 autocast: bool = False, compile: bool = False):
        cfg = trainer.cfg
        self.model = copy.deepcopy(trainer.model)
        self.nhwc = trainer.channels_last if channels_last is None else channels_last
        self.model.to(memory_format=torch.channels_last if self.nhwc
                      else torch.contiguous_format)
        self.forward = torch.compile(self.model) if compile else self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.lam)
        self.x, self.y = trainer.data.x_train, trainer.data.y_train
        self.batch, self.seed, self.autocast = trainer.batch_size, cfg.seed, autocast
        self.per_epoch = self.x.shape[0] // self.batch
        self.step, self.perm = 0, None

    def run(self, steps: int) -> None:
        for _ in range(steps):
            epoch, pos = divmod(self.step, self.per_epoch)
            if pos == 0 or self.perm is None:
                self.perm = epoch_permutation(self.seed, epoch, self.x.shape[0])
            idx = self.perm[pos * self.batch:(pos + 1) * self.batch]
            xb = self.x[idx]
            if self.nhwc and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                loss = F.cross_entropy(self.forward(xb), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1


def engine_block(trainer: Trainer) -> Callable[[int], None]:
    """`steps` more updates of `trainer`'s own loop, with no evaluation point among them."""
    trainer._clock_set = set()
    trainer.model.train()

    def run(steps: int) -> None:
        status, _, _ = trainer._loop(trainer.step + steps)
        assert status == "finished", status
    return run


def paired(a: Callable[[int], None], b: Callable[[int], None], *, pairs: int,
           block_seconds: float) -> dict:
    """Time a/b in alternating blocks (ABBA…); the geometric mean of the per-pair ratios a/b
    with a 95 % t-interval on their logarithms, and the per-step times (median over blocks)."""
    def timed(fn: Callable[[int], None], steps: int) -> float:
        start = time.perf_counter()
        fn(steps)
        return time.perf_counter() - start

    probe = max(timed(a, 2), timed(b, 2)) / 2  # warm-up, and the size of a block
    steps = max(2, int(block_seconds / max(probe, 1e-4)))
    timed(a, steps), timed(b, steps)
    ta, tb = [], []
    for i in range(pairs):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t1, t2 = timed(first, steps), timed(second, steps)
        ta.append(t1 if first is a else t2)
        tb.append(t2 if first is a else t1)
    logs = np.log(np.array(ta) / np.array(tb))
    half = (stats.t.ppf(0.975, pairs - 1) * logs.std(ddof=1) / math.sqrt(pairs)
            if pairs > 1 else math.inf)
    return {"ratio": float(np.exp(logs.mean())),
            "ci": [float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))],
            "ratio_min": float(np.exp(logs.min())), "ratio_max": float(np.exp(logs.max())),
            "a_ms": 1e3 * statistics.median(ta) / steps,
            "b_ms": 1e3 * statistics.median(tb) / steps,
            "pairs": pairs, "block_steps": steps}


def family_config(name: str, base: dict, **overrides: object):
    keys, batch = FAMILIES[name]
    return make_config(base, keys, batch_size=batch, **overrides)


def measure_family(name: str, base: dict, args: argparse.Namespace) -> dict:
    """Engine vs bare step, then the bare step's fast-path options, for one model family."""
    cfg = family_config(name, base)
    trainer = Trainer(cfg)
    run = {"a": engine_block(trainer), "b": BareLoop(trainer).run}
    out = {"family": name, "model": _describe(cfg), "batch": trainer.batch_size,
           "channels_last": trainer.channels_last, "conv": _has_conv(trainer),
           "engine_vs_bare": paired(run["a"], run["b"], pairs=args.pairs,
                                    block_seconds=args.block_seconds)}
    plain = BareLoop(trainer, channels_last=False)
    options: dict[str, BareLoop] = {"bf16": BareLoop(trainer, channels_last=False,
                                                      autocast=True)}
    if _has_conv(trainer):
        options["channels_last"] = BareLoop(trainer, channels_last=True)
    if args.compile:
        options["compile"] = BareLoop(trainer, channels_last=False, compile=True)
    for option, loop in options.items():
        start = time.perf_counter()
        loop.run(3)  # compiles on the first call
        first = time.perf_counter() - start
        result = paired(loop.run, plain.run, pairs=args.option_pairs,
                        block_seconds=args.block_seconds)
        if option == "compile":
            result["warmup_seconds"] = first
        out.setdefault("options", {})[option] = result
    return out


def ensemble_vs_sequential(base: dict, args: argparse.Namespace, k: int = 4) -> dict:
    """K members of the CNN without BN (λ differs) as one vectorized ensemble (NCHW, grouped
    convolutions) against K Trainers stepped one after another (their own layout): the time
    ratio per update of all K, for ``choose_engine``'s CPU rule."""
    from l2dynamics.train import EnsembleTrainer

    cfgs = [family_config("cnn", base, lam=lam) for lam in np.geomspace(1e-4, 1e-2, k)]
    trainers = [Trainer(c) for c in cfgs]
    ensemble = EnsembleTrainer(cfgs, dataset=trainers[0].data)
    blocks = [engine_block(t) for t in trainers]
    done = [0]

    def vectorized(steps: int) -> None:
        for _ in range(steps):
            ensemble._update(done[0])
            done[0] += 1
        ensemble._read_losses()

    def sequential(steps: int) -> None:
        for block in blocks:
            block(steps)

    out = paired(vectorized, sequential, pairs=args.option_pairs,
                 block_seconds=args.block_seconds * k)
    return {"model": _describe(cfgs[0]), "members": k, "sequential_channels_last":
            trainers[0].channels_last, **out}


def _has_conv(trainer: Trainer) -> bool:
    return any(p.ndim == 4 for p in trainer.model.parameters())


def _describe(cfg) -> str:
    norm = f", norm {cfg.norm}" if cfg.norm else ""
    return f"{cfg.model} width {cfg.width} depth {cfg.depth}{norm}"


def eval_cost(args: argparse.Namespace, quick: bool) -> dict:
    """Evaluation's share of a 2,000-step CNN run, before (eval_budget=0, eval batch 2048,
    contiguous) and after (defaults): planned points × measured point times / training time.
    A block of updates and one evaluation at each test size alternate `eval_repeats` times, so
    the medians compared were measured under the same load."""
    base = QUICK_BASE if quick else {**BASE, "n_train": None, "n_test": None}
    steps = 2000  # planned, not run: only `eval_repeats` blocks of updates are timed
    out: dict = {"steps": steps, "model": "cnn width 16 depth 4", "batch": 128,
                 "method": "planned points × median time of one point / (steps × median time "
                           f"of one update), {args.eval_repeats} alternations of "
                           f"{args.eval_steps} updates and one point of each size"}
    for label, extra in (("before", {"eval_budget": 0, "eval_batch_size": 2048,
                                     "channels_last": False}), ("after", {})):
        trainer = Trainer(family_config("cnn", base, steps=steps, **extra))
        plan, block = trainer.plan, engine_block(trainer)
        block(2)
        sizes = sorted({plan.test_n, plan.full_n})
        step_times: list[float] = []
        point_times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(args.eval_repeats):
            step_times.append(_timed(functools.partial(block, args.eval_steps)) / args.eval_steps)
            done = trainer.step
            for size in sizes:  # measure() picks the test size of the step it is told
                trainer.step = steps if size == plan.full_n else 0
                point_times[size].append(_timed(trainer.measure))
            trainer.step = done
        step_s = statistics.median(step_times)
        point_s = {n: statistics.median(t) for n, t in point_times.items()}
        eval_s = (len(plan.clock) - 1) * point_s[plan.test_n] + point_s[plan.full_n]
        out[label] = {"points": len(plan.clock), "per_decade": plan.per_decade,
                      "test_n": plan.test_n, "full_n": plan.full_n, "train_n": plan.train_n,
                      "eval_batch": trainer.eval_batch_size,
                      "channels_last": trainer.channels_last,
                      "planned_compute_fraction": plan.fraction,
                      "step_ms": 1e3 * step_s,
                      "point_seconds": {str(k): v for k, v in point_s.items()},
                      "eval_seconds": eval_s, "train_seconds": steps * step_s,
                      "time_fraction": eval_s / (steps * step_s)}
    return out


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def eval_batches(base: dict, quick: bool) -> list[dict]:
    """Seconds to evaluate 2,048 test images (fewer when quick) per evaluation batch size."""
    rows = []
    for name in ("fc", "cnn", "cnn_bn"):
        trainer = Trainer(family_config(name, base))
        x, y = trainer.data.x_test[:2048], trainer.data.y_test[:2048]
        row = {"family": name, "n": int(x.shape[0]), "channels_last": trainer.channels_last,
               "seconds": {}}
        for bs in (64, 256, 2048):
            row["seconds"][str(bs)] = min(_timed(functools.partial(
                evaluate, trainer.model, x, y, trainer.loss_fn, classification=True,
                batch_size=bs, channels_last=trainer.channels_last)) for _ in range(3))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="A/B block pairs per ratio")
    parser.add_argument("--option-pairs", type=int, default=8,
                        help="pairs per fast-path option ratio")
    parser.add_argument("--block-seconds", type=float, default=0.3)
    parser.add_argument("--eval-steps", type=int, default=10,
                        help="updates per block for the evaluation share")
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a thread "
                        "that loses its core to other load does not stall the other at each "
                        "OpenMP barrier, so ratios are steadier on a shared machine)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--quick", action="store_true",
                        help="digits images, fc and cnn, few short pairs, no compile (a test)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: "
                        "benchmarks/results/engine_speed.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.option_pairs, args.block_seconds = 3, 2, 0.05
        args.eval_steps, args.eval_repeats, args.compile = 4, 2, False
        args.families = "fc,cnn"
    torch.set_num_threads(args.threads)
    base = QUICK_BASE if args.quick else BASE
    start = time.perf_counter()
    families = [measure_family(f, base, args) for f in args.families.split(",")]
    for f in families:
        print(f"{f['family']}: engine/bare {f['engine_vs_bare']['ratio']:.3f} "
              f"{f['engine_vs_bare']['ci']}", flush=True)
    result = {"command": COMMAND + (" --quick" if args.quick else ""),
              "method": "geometric mean of per-pair time ratios over alternating (ABBA) blocks,"
                        " 95 % t-interval of the log ratios (n = pairs)",
              "dataset": base["dataset"], "threads": args.threads, "goal_ratio": 1.05,
              "families": families, "evaluation": eval_cost(args, args.quick),
              "ensemble_cnn": ensemble_vs_sequential(base, args),
              "eval_batches": eval_batches(base, args.quick)}
    result["seconds"] = time.perf_counter() - start
    path = write_result("engine_speed", result) if args.out is None else _write(args.out, result)
    report(result, path)
    return path


def _write(path: Path, result: dict) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


def report(result: dict, path: Path) -> None:
    rows = []
    for f in result["families"]:
        r = f["engine_vs_bare"]
        rows.append((f"{f['family']} engine/bare", f"{r['ratio']:.3f} [{r['ci'][0]:.3f}, "
                     f"{r['ci'][1]:.3f}]  ({r['a_ms']:.2f} vs {r['b_ms']:.2f} ms/step)"))
        for option, o in f.get("options", {}).items():
            rows.append((f"  bare {option}/plain", f"{o['ratio']:.3f} [{o['ci'][0]:.3f}, "
                         f"{o['ci'][1]:.3f}]"))
    e = result["ensemble_cnn"]
    rows.append((f"cnn ensemble K={e['members']}/sequential", f"{e['ratio']:.3f} "
                 f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"))
    ev = result["evaluation"]
    for label in ("before", "after"):
        e = ev[label]
        rows.append((f"eval share {label}", f"{100 * e['time_fraction']:.1f} % of training "
                     f"time ({100 * e['planned_compute_fraction']:.1f} % planned compute)"))
    rows.append(("written", str(path)))
    print_table(f"Engine speed ({result['seconds']:.0f} s)", rows)


if __name__ == "__main__":
    main()
