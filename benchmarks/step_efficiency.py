"""Step efficiency: achieved FLOP/s of a training step vs this machine's float32 matmul peak.

Model: fully connected, input 1024, `--depth` hidden layers of `--width` (default 3 × 1024),
10 outputs, batch 256, SGD with coupled L2, trained through l2dynamics' loop. FLOPs per step
are counted exactly for the matmuls: forward 2·B·Σ fan_in·fan_out, backward the same for the
weight gradients plus the input gradients of every layer but the first.
The peak is the best of several float32 square matmuls (n = 1024, 2048, 4096) on all threads.

Usage: python benchmarks/step_efficiency.py [--width 1024] [--batch 256] [--steps 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from l2dynamics import Trainer, make_config

try:
    from benchmarks.common import median, print_table, timed, write_result
except ImportError:
    from common import median, print_table, timed, write_result


def matmul_peak(sizes=(1024, 2048, 4096), repeats: int = 5) -> tuple[float, int]:
    best, best_n = 0.0, 0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        seconds = median([timed(lambda a=a, b=b: a @ b) for _ in range(repeats)])
        rate = 2 * n**3 / seconds
        if rate > best:
            best, best_n = rate, n
    return best, best_n


def step_flops(layer_dims: list[tuple[int, int]], batch: int) -> int:
    forward = sum(2 * batch * i * o for i, o in layer_dims)
    weight_grads = forward
    input_grads = sum(2 * batch * i * o for i, o in layer_dims[1:])
    return forward + weight_grads + input_grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    peak, peak_n = matmul_peak()
    cfg = make_config(dataset="teacher", n_train=4096, n_test=256, model="fc", width=args.width,
                      depth=args.depth, batch_size=args.batch, lr=0.01, lam=1e-4,
                      steps=args.steps, data_options={"input_dim": 1024})
    warm = Trainer(cfg.replace(steps=10))
    warm.clock = np.array([10])
    warm.run()
    trainer = Trainer(cfg)
    trainer.clock = np.array([args.steps])  # time training steps: evaluate only at the end
    total = timed(trainer.run)
    final_eval = median([timed(trainer.measure) for _ in range(3)])
    seconds = total - final_eval
    dims = [(m.in_features, m.out_features) for m in trainer.model.modules()
            if isinstance(m, torch.nn.Linear)]
    flops = step_flops(dims, args.batch)
    achieved = flops * args.steps / seconds
    result = {
        "config": {"layers": dims, "batch": args.batch, "steps": args.steps},
        "matmul_peak_gflops": peak / 1e9, "peak_at_n": peak_n,
        "step_gflop": flops / 1e9, "ms_per_step": 1e3 * seconds / args.steps,
        "achieved_gflops": achieved / 1e9, "fraction_of_peak": achieved / peak,
    }
    path = write_result("step_efficiency", result)
    print_table("Step efficiency (float32, CPU)", [
        ("matmul peak", f"{peak / 1e9:.1f} GFLOP/s (n={peak_n})"),
        ("training step", f"{flops / 1e9:.3f} GFLOP in {1e3 * seconds / args.steps:.2f} ms"),
        ("achieved", f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f} % of peak"),
        ("written", str(path)),
    ])


if __name__ == "__main__":
    main()
