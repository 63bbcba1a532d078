"""Choosing λ for a budget: grid vs one-short-run prediction vs Optuna vs the EMA rule, and
AutoL2 vs the best constant λ (issue 4). See ``l2dynamics.studies.tuning`` for the protocol.

    python benchmarks/tuning.py                        # all tasks, 3 seeds (≈ 30 min, 2 cores)
    python benchmarks/tuning.py --tasks mnist1d_mlp -j 2
    python benchmarks/tuning.py --quick                # a 2-minute smoke run of the pipeline

Runs go to ``runs/tuning.sqlite`` (resumable); results to ``benchmarks/results/tuning.json``,
figures to ``docs/tuning/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_result  # noqa: E402
from l2dynamics.studies.tuning import (  # noqa: E402
    TuningTask,
    format_result,
    run_phi_experiment,
    run_tuning_task,
)

ROOT = Path(__file__).resolve().parent.parent
COMMON = {"batch_size": 128, "norms_per_tensor": False, "eval_per_decade": 10}
GRID = tuple(1.25e-4 * 2**k for k in range(8))  # 1.25e-4 … 1.6e-2, factor 2

TASKS = {
    "mnist1d_mlp": TuningTask(
        "mnist1d_mlp", {**COMMON, "dataset": "mnist1d", "n_train": 2000, "n_test": 4000,
                        "model": "fc", "width": 128, "depth": 2, "lr": 0.2},
        budget=6000, grid=GRID,
        description="MNIST-1D, 2×128 ReLU MLP (standard param.), SGD η=0.2, batch 128"),
    "teacher_ntk": TuningTask(
        "teacher_ntk", {**COMMON, "dataset": "teacher", "n_train": 1000, "n_test": 4000,
                        "data_options": {"input_dim": 16, "num_classes": 4},
                        "model": "fc", "width": 512, "depth": 2, "parameterization": "ntk",
                        "lr": 1.0},
        budget=4000, grid=tuple(g / 10 for g in GRID),
        description="teacher–student (16-d inputs, 4 classes, ReLU teacher 2×512), "
                    "2×512 NTK-parameterized MLP, SGD η=1.0, batch 128"),
    "digits_cnn": TuningTask(
        "digits_cnn", {**COMMON, "dataset": "digits", "n_train": 600,
                       "data_options": {"image": True}, "model": "cnn", "width": 16,
                       "depth": 2, "lr": 0.1},
        budget=3000, grid=GRID,
        description="sklearn digits (8×8 images, 600 train / 540 test), 2-layer CNN of 16 "
                    "channels, no normalization, SGD η=0.1, batch 128"),
    "digits_cnn_bn": TuningTask(
        "digits_cnn_bn", {**COMMON, "dataset": "digits", "n_train": 600,
                          "data_options": {"image": True}, "model": "cnn", "width": 16,
                          "depth": 2, "norm": "bn", "lr": 0.1},
        budget=3000, grid=GRID,
        description="as digits_cnn, with BatchNorm after each convolution"),
}


def quick_tasks() -> dict[str, TuningTask]:
    """A minute-scale version of the pipeline (2 seeds, short budget, 4-point grid)."""
    base = TASKS["mnist1d_mlp"].base | {"n_train": 500, "n_test": 1000, "width": 32}
    return {"quick": TuningTask("quick", base, budget=800, grid=(2e-3, 8e-3, 3.2e-2, 0.128),
                                seeds=(0, 1), evals=10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--store", default=str(ROOT / "runs" / "tuning.sqlite"))
    parser.add_argument("--no-optuna", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a minute-scale smoke run")
    parser.add_argument("--figures", default=str(ROOT / "docs" / "tuning"))
    parser.add_argument("--result", default="tuning", help="name of the results JSON")
    args = parser.parse_args()

    from l2dynamics.report.figures import plot_tuning

    tasks = quick_tasks() if args.quick else {n: TASKS[n] for n in args.tasks.split(",")}
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    cache = Path(args.store).parent / "tuning_cache"
    results, phi, start = [], None, time.perf_counter()
    for name, task in tasks.items():
        t0 = time.perf_counter()
        res = run_tuning_task(task, args.store, workers=args.workers,
                              use_optuna=not args.no_optuna, cache_dir=cache,
                              log=lambda m: print(m, flush=True))
        res["wall_seconds"] = time.perf_counter() - t0
        results.append(res)
        print("\n" + format_result(res))
        plot_tuning(res, Path(args.figures) / f"{name}.png")
        if name in ("mnist1d_mlp", "quick") and res["prediction"]["ok"]:
            phi = run_phi_experiment(task, res["prediction"], args.store,
                                     reference_best=res["best_lam"],
                                     reference_rows=res["methods"][0]["table"],
                                     workers=args.workers,
                                     log=lambda m: print(m, flush=True))
            for case in phi["cases"]:
                print(f"  Φ check {case['case']}: best λ {case['best_lam']:.3g} "
                      f"({case['best_mean']:.4f}), ×{case['measured_shift']:.2f} the reference's"
                      f" (Φ says ×{case['shift_phi']:.2f}, naive ×{case['shift_naive']:.2f}); "
                      f"rising side of the curve shifted ×{case['curve_shift']:.2f} (RMS gap by "
                      f"shift: {case['curve_shift_rms']}); "
                      f"at λ_Φ={case['phi']['lam']:.3g}: {case['phi']['mean']:.4f} ± "
                      f"{case['phi']['se']:.4f}; at naive λ={case['naive']['lam']:.3g}: "
                      f"{case['naive']['mean']:.4f} ± {case['naive']['se']:.4f}")
    path = write_result(args.result, {"tasks": results, "phi": phi,
                                      "wall_seconds": time.perf_counter() - start,
                                      "command": " ".join(sys.argv)})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
