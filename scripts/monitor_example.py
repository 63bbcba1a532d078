"""The Monitor guide's pictures, from a real run: a BatchNorm MLP on sklearn digits trained by a
plain PyTorch loop with SGD and weight decay, watched by ``l2dynamics.Monitor``.

    python scripts/monitor_example.py                 # docs/monitor/history.png (+ TensorBoard)
    python scripts/monitor_example.py --no-screenshot # without the TensorBoard screenshot

Writes ``docs/monitor/history.png`` (‖w‖, effective learning rate, angular update and
‖w‖/‖w*‖ of each weight against step, from ``mon.history``) and, when TensorBoard, Chromium
and chromedriver are installed, ``docs/monitor/tensorboard.png``: a screenshot of TensorBoard's
scalars page on the same run's log.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
import l2dynamics  # noqa: E402
from l2dynamics.data import load_dataset  # noqa: E402

OUT = ROOT / "docs" / "monitor"


def train(log_dir: Path, steps: int = 3000) -> l2dynamics.Monitor:
    data = load_dataset("digits", n_train=1000)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
                          nn.Linear(128, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
                          nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.functional.cross_entropy
    x, y = data.x_train, data.y_train
    mon = l2dynamics.Monitor(model, optimizer, every=25, log_dir=log_dir,
                             example=(x[:256], y[:256]), loss_fn=loss_fn)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        optimizer.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        optimizer.step()
        mon.step()
    mon.close()
    return mon


def plot_history(mon: l2dynamics.Monitor, path: Path) -> None:
    hist = mon.history
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    titles = {"norm": "‖w‖", "eff_lr": "effective LR η/((1−μ)‖w‖²)",
              "angle": "angular update per step (rad)", "eq_ratio": "‖w‖ / ‖w*‖ (predicted)"}
    for ax, (metric, title) in zip(axes, titles.items(), strict=True):
        for tensor, rows in hist.groupby("tensor"):
            invariant = rows["scale_invariant"].iloc[0] == 1.0
            ax.plot(rows["step"], rows[metric], lw=1.2,
                    label=f"{tensor} ({'scale-invariant' if invariant else 'not invariant'})")
        ax.set(xlabel="step", title=title, yscale="log" if metric != "eq_ratio" else "linear")
        ax.grid(alpha=0.3, lw=0.5)
    axes[3].axhline(1.0, color="k", ls=":", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle("Monitor on a BN MLP, sklearn digits, SGD η = 0.1, μ = 0.9, weight decay 5e-4",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def screenshot_tensorboard(log_dir: Path, path: Path) -> bool:
    from l2dynamics.report.browser import BrowserUnavailable, find_browser, headless_chromium

    try:
        find_browser()
    except BrowserUnavailable as err:
        print(f"no screenshot: {err}")
        return False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                               str(log_dir), "--port", str(port), "--host", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(6)
        with headless_chromium("1400,1000") as driver:
            driver.get(f"http://127.0.0.1:{port}/?tagFilter=eff_lr#timeseries")
            time.sleep(10)
            driver.save_screenshot(str(path))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "tb"
        mon = train(log_dir)
        plot_history(mon, OUT / "history.png")
        print(f"wrote {OUT / 'history.png'}")
        last = mon.history.groupby("tensor").tail(1)
        print(last.to_string(index=False))
        if not args.no_screenshot and screenshot_tensorboard(log_dir, OUT / "tensorboard.png"):
            print(f"wrote {OUT / 'tensorboard.png'}")


if __name__ == "__main__":
    main()
