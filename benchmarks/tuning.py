"""Choosing λ for a budget: grid vs the λ selector vs one-short-run prediction vs Optuna with
pruning vs the EMA rule, and AutoL2 vs the best constant λ (issues 4, 19). See
``l2dynamics.studies.tuning`` for the protocol. Every task holds out a validation set
(``n_val``, from the test pool) that selects λ; test accuracy reports it.

    python benchmarks/tuning.py                        # all 6 tasks, 3 seeds
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
    AUTOL2_VARIANTS,
    TuningTask,
    format_result,
    run_phi_experiment,
    run_tuning_task,
)

ROOT = Path(__file__).resolve().parent.parent
COMMON = {"batch_size": 128, "norms_per_tensor": False, "eval_per_decade": 10}
GRID = tuple(1.25e-4 * 2**k for k in range(8))  # 1.25e-4 … 1.6e-2, factor 2
# the AutoL2 variants of this benchmark (issue 19): the paper rule as ported (our default),
# and the two presets; the others were measured in benchmarks/results/tuning_autol2_presets.json
VARIANTS = ("autol2 paper (refractory in steps)",
            "autol2 released-code preset (λ₀ = 2, 2/λ steps)",
            "autol2 transfer preset (η·λ₀ = 0.04, 0.04/(η·λ) steps)")
FMNIST = {**COMMON, "dataset": "fashion_mnist", "n_train": 4000, "n_test": 10000,
          "n_val": 5000}

TASKS = {
    "mnist1d_mlp": TuningTask(
        "mnist1d_mlp", {**COMMON, "dataset": "mnist1d", "n_train": 2000, "n_test": 4000,
                        "n_val": 2000, "model": "fc", "width": 128, "depth": 2, "lr": 0.2},
        budget=6000, grid=GRID,
        description="MNIST-1D, 2×128 ReLU MLP (standard param.), SGD η=0.2, batch 128"),
    "teacher_ntk": TuningTask(
        "teacher_ntk", {**COMMON, "dataset": "teacher", "n_train": 1000, "n_test": 4000,
                        "n_val": 2000,
                        "data_options": {"input_dim": 16, "num_classes": 4},
                        "model": "fc", "width": 512, "depth": 2, "parameterization": "ntk",
                        "lr": 1.0},
        budget=4000, grid=tuple(g / 10 for g in GRID),
        description="teacher–student (16-d inputs, 4 classes, ReLU teacher 2×512), "
                    "2×512 NTK-parameterized MLP, SGD η=1.0, batch 128"),
    "digits_cnn": TuningTask(
        "digits_cnn", {**COMMON, "dataset": "digits", "n_train": 600, "n_val": 270,
                       "data_options": {"image": True}, "model": "cnn", "width": 16,
                       "depth": 2, "lr": 0.1},
        budget=3000, grid=GRID,
        description="sklearn digits (8×8 images, 600 train / 540 test), 2-layer CNN of 16 "
                    "channels, no normalization, SGD η=0.1, batch 128"),
    "digits_cnn_bn": TuningTask(
        "digits_cnn_bn", {**COMMON, "dataset": "digits", "n_train": 600, "n_val": 270,
                          "data_options": {"image": True}, "model": "cnn", "width": 16,
                          "depth": 2, "norm": "bn", "lr": 0.1},
        budget=3000, grid=GRID,
        description="as digits_cnn, with BatchNorm after each convolution"),
    "fmnist_fc": TuningTask(
        "fmnist_fc", {**FMNIST, "model": "fc", "width": 128, "depth": 2, "lr": 0.2},
        budget=2000, grid=tuple(2 * g for g in GRID),
        description="Fashion-MNIST (4 000 train; 5 000 validation and 5 000 test images from "
                    "its test split), 2×128 ReLU MLP, SGD η=0.2, batch 128"),
    "fmnist_cnn": TuningTask(
        "fmnist_cnn", {**FMNIST, "n_test": 4000, "n_val": 2000, "model": "cnn", "width": 16,
                       "depth": 4, "momentum": 0.9, "lr": 0.02, "batch_size": 64,
                       "channels_last": True, "eval_train_size": 512},
        budget=1000, grid=tuple(0.1 / 2**k for k in range(8)),
        description="Fashion-MNIST (4 000 train; 2 000 validation and 2 000 test images), "
                    "4-layer CNN of 16 channels, no normalization, SGD η=0.02 with momentum "
                    "0.9, batch 64"),
}


def quick_tasks() -> dict[str, TuningTask]:
    """A minute-scale version of the pipeline (2 seeds, short budget, 4-point grid)."""
    base = TASKS["mnist1d_mlp"].base | {"n_train": 500, "n_test": 1000, "n_val": 500,
                                        "width": 32}
    return {"quick": TuningTask("quick", base, budget=800, grid=(2e-3, 8e-3, 3.2e-2, 0.128),
                                seeds=(0, 1), evals=10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--store", default=str(ROOT / "runs" / "tuning.sqlite"))
    parser.add_argument("--optuna-unpruned", action="store_true",
                        help="also Optuna TPE without a pruner at the prediction's cost")
    parser.add_argument("--no-selector", action="store_true",
                        help="skip the selector and Optuna with pruners")
    parser.add_argument("--pruners", default="median,hyperband")
    parser.add_argument("--all-variants", action="store_true",
                        help="every AutoL2 variant of l2dynamics.studies.tuning")
    parser.add_argument("--phi", action="store_true", help="also the Φ check on MNIST-1D")
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
        variants = (AUTOL2_VARIANTS if args.all_variants
                    else {k: AUTOL2_VARIANTS[k] for k in VARIANTS})
        res = run_tuning_task(task, args.store, workers=args.workers,
                              use_optuna=args.optuna_unpruned, cache_dir=cache,
                              autol2_variants=variants, use_selector=not args.no_selector,
                              pruners=[p for p in args.pruners.split(",") if p],
                              predictors={"prediction λ_pred": {}},
                              log=lambda m: print(m, flush=True))
        res["wall_seconds"] = time.perf_counter() - t0
        results.append(res)
        write_result(args.result, {"tasks": results, "phi": phi, "partial": True,
                                   "wall_seconds": time.perf_counter() - start,
                                   "command": " ".join(sys.argv)})  # kept if interrupted
        print("\n" + format_result(res))
        plot_tuning(res, Path(args.figures) / f"{name}.png")
        if args.phi and name in ("mnist1d_mlp", "quick") and res["prediction"]["ok"]:
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
