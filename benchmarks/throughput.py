"""Training throughput of the l2dynamics loop: images/s and model FLOP utilisation (MFU).

Default: WRN-28-10 on CIFAR-10-shaped data (the paper suite's network), SGD + coupled L2,
batch 128, through the real :class:`~l2dynamics.Trainer` — batch indexing on the device, the
L2 term, the learning-rate schedule and the non-finite-loss check all included; evaluation is
excluded (the benchmark times the update path). One row per (variant, batch size):

- ``fp32``        eager float32 (cuDNN convolutions may use TF32, PyTorch's default)
- ``bf16``        + ``autocast='bf16'``
- ``bf16-cl``     + ``channels_last=True``
- ``bf16-cl-compile``  + ``compile='default'`` (torch.compile, inductor)
- ``bf16-cl-graphs``   + ``compile='reduce-overhead'`` (inductor + CUDA graphs)

FLOPs per update are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward
and backward of the eager model (2 FLOPs per multiply-add; convolutions and matrix products
only). MFU = counted FLOPs per update × updates/s ÷ the dense bf16 peak (``--peak-tflops``,
default 989.4: the H100/H200 SXM datasheet); the script also measures an 8192³ bf16 matrix
product on the same GPU and reports the fraction of that measured ceiling.

Data: ``--data-dir`` with the CIFAR-10 python batches, else random pixels written in that
format to a temporary folder and read back by the real loader (throughput does not depend on
pixel values). Needs a CUDA GPU for meaningful numbers; ``--device cpu`` runs a tiny smoke run.

Usage: python benchmarks/throughput.py [--variants fp32,bf16,bf16-cl,bf16-cl-compile]
           [--batch 128,1024] [--steps 50] [--warmup 20] [--depth 28 --width 10]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from l2dynamics import Trainer, make_config

try:
    from benchmarks.common import print_table, write_result
except ImportError:  # run as a script
    from common import print_table, write_result

VARIANTS = {
    "fp32": {},
    "bf16": {"autocast": "bf16"},
    "bf16-cl": {"autocast": "bf16", "channels_last": True},
    "bf16-cl-compile": {"autocast": "bf16", "channels_last": True, "compile": "default"},
    "bf16-cl-graphs": {"autocast": "bf16", "channels_last": True, "compile": "reduce-overhead"},
}
H100_H200_BF16_DENSE_TFLOPS = 989.4


def write_random_cifar10(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random uint8 pixels and labels in the CIFAR-10 python-batch format under `folder`."""
    out = folder / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = n_train // 5
    sizes = [per] * 5 + [n_test]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, sizes, strict=True):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(out / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


class StepTimer:
    """Callback: synchronized wall-clock times after update `start` and after update `stop`."""

    def __init__(self, start: int, stop: int, device: torch.device):
        self.start, self.stop, self.device = start, stop, device
        self.times: dict[int, float] = {}

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        if step in (self.start, self.stop):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times[step] = time.perf_counter()

    def seconds(self) -> float:
        return self.times[self.stop] - self.times[self.start]


def flops_per_update(trainer: Trainer) -> float:
    """FLOPs of one forward + backward of the eager model on one training batch."""
    from torch.utils.flop_counter import FlopCounterMode

    xb, yb = trainer.batch(0)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = trainer.loss_fn(trainer.model(xb), yb)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """Measured bf16 matrix-product rate (TFLOP/s) on `device`: the ceiling MFU is read against."""
    if device.type != "cuda":
        return None
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def measure(base: dict, variant: str, batch: int, warmup: int, steps: int,
            peak_tflops: float) -> dict:
    cfg = make_config(base, **VARIANTS[variant], batch_size=batch, steps=warmup + steps + 1,
                      name=f"throughput-{variant}-{batch}")
    trainer = Trainer(cfg)
    timer = StepTimer(warmup, warmup + steps, trainer.device)
    trainer.callbacks.append(timer)
    trainer.clock = [0]  # time updates only: the single evaluation is at step 0
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    t0 = time.perf_counter()
    result = trainer.run()
    total = time.perf_counter() - t0
    if result.status != "finished":
        raise RuntimeError(f"{variant}: run ended {result.status} ({result.diverged_cause})")
    seconds = timer.seconds()
    flops = flops_per_update(trainer)
    updates_per_s = steps / seconds
    achieved = flops * updates_per_s / 1e12
    return {
        "variant": variant, "batch": batch, "images_per_s": batch * updates_per_s,
        "ms_per_update": 1e3 * seconds / steps, "gflop_per_image": flops / batch / 1e9,
        "tflops": achieved, "mfu": achieved / peak_tflops,
        "warmup_and_compile_s": total - seconds,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(trainer.device) / 2**30
                            if trainer.device.type == "cuda" else None),
        "final_train_loss": result.summary.get("final_train_loss"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="fp32,bf16,bf16-cl,bf16-cl-compile")
    parser.add_argument("--batch", default="128", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=50, help="timed updates per row")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    parser.add_argument("--depth", type=int, default=28)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--peak-tflops", type=float, default=H100_H200_BF16_DENSE_TFLOPS)
    parser.add_argument("--out", default="throughput", help="result name under results/")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or str(write_random_cifar10(Path(tmp), args.n_train, 1000))
        base = {"dataset": "cifar10", "data_dir": data_dir, "n_train": args.n_train,
                "n_test": 1000, "normalize": "global", "model": "wrn", "depth": args.depth,
                "width": args.width, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                "lam": 5e-4, "device": args.device, "eval_per_decade": 1,
                "norms_per_tensor": False, "eval_train_size": 1000}
        rows = []
        for batch in [int(b) for b in args.batch.split(",")]:
            for variant in variants:
                row = measure(base, variant, batch, args.warmup, args.steps, args.peak_tflops)
                rows.append(row)
                print(f"{variant:>16} batch {batch:>5}: {row['images_per_s']:9.0f} images/s, "
                      f"MFU {100 * row['mfu']:5.1f} %, {row['ms_per_update']:.2f} ms/update, "
                      f"warm-up+compile {row['warmup_and_compile_s']:.0f} s", flush=True)
    ceiling = matmul_tflops(device)
    for row in rows:
        row["fraction_of_measured_matmul"] = row["tflops"] / ceiling if ceiling else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    path = write_result(args.out, {
        "command": "python benchmarks/throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "gpu": name, "model": f"WRN-{args.depth}-{args.width}",
        "data": "CIFAR-10 files" if args.data_dir else "random pixels in the CIFAR-10 format",
        "peak_tflops_bf16_dense": args.peak_tflops, "measured_matmul_tflops": ceiling,
        "rows": rows})
    print_table(f"WRN-{args.depth}-{args.width} training throughput on {name}",
                [(f"{r['variant']} b{r['batch']}",
                  f"{r['images_per_s']:.0f} img/s  MFU {100 * r['mfu']:.1f} %  "
                  f"{r['gflop_per_image']:.2f} GFLOP/img  "
                  f"{r['peak_memory_gib'] or 0:.1f} GiB") for r in rows]
                + [("bf16 matmul 8192³", f"{ceiling:.0f} TFLOP/s" if ceiling else "n/a")])
    print(f"written {path}")


if __name__ == "__main__":
    main()
