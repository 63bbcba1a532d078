"""Every Python snippet of the README and the guides runs.

The blocks of one page run in order in one namespace, as a reader pastes them into one session,
in a fresh folder. Two things are supplied, and nothing else:

- the objects a snippet says are *yours* (``model``, ``optimizer``/``opt``, ``loader``,
  ``loss_fn``, ``loss``, ``acc``, ``step``, ``lr``, ``lam``, ``config``), defined in
  :data:`PRELUDE`;
- smaller budgets (:data:`SHRINK`), so that "6000 steps" runs as 300; the code path is the same.

What a page assumes from another page (the sweeps guide's store, for the Python API page) is
made at small scale in :data:`SETUP`. A block that cannot run here is listed in :data:`SKIP`
with the reason.
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

PRELUDE = """
from collections import OrderedDict
import torch
from torch import nn
import l2dynamics as l2d
torch.manual_seed(0)
model = nn.Sequential(OrderedDict(layer=nn.Linear(40, 32, bias=False), bn=nn.BatchNorm1d(32),
                                  relu=nn.ReLU(), out=nn.Linear(32, 10)))
optimizer = opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.functional.cross_entropy
x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))
loader = [(x, y)] * 200
lr, lam, step = 0.1, 1e-3, 0
loss, acc = loss_fn(model(x), y), torch.tensor(0.5)
config = l2d.make_config(dataset="mnist1d", n_train=200, n_test=400, n_val=200, width=16)
"""

SHRINK = [(r"steps=5000", "steps=60"), (r"budget=6000", "budget=300"), (r", 6000\)", ", 300)"),
          (r"width=256", "width=16"), (r"n_train=2000, n_test=10000", "n_train=200, n_test=400"),
          (r"workers=2", "workers=1"), (r"width=10, depth=28", "width=1, depth=10")]

# what a page assumes the reader did before (on another page), done here at small scale
SETUP = {
    "python-api.md": """
from l2dynamics.sweep import run_sweep
run_sweep({"name": "m", "base": {"dataset": "mnist1d", "n_train": 200, "n_test": 400,
                                 "width": 16, "steps": 300, "eval_per_decade": 10},
           "grid": {"lam": [0.0, 0.01, 0.04], "seed": [0]}}, "runs/m.sqlite")
""",
}

SKIP = {  # (page, first line of the block) → why it cannot run here
    ("autol2.md", "from l2dynamics.integrations.lightning import AutoL2Callback"):
        "a Lightning fragment ('...' stands for the reader's own arguments); "
        "tests/test_lightning.py runs the callback",
    ("monitor.md", "from l2dynamics.integrations.lightning import MonitorCallback"):
        "a Lightning fragment; tests/test_monitor.py runs the callback",
    ("python-api.md", "from l2dynamics.theory import fc_kernels, kernel_flow"):
        "needs kernel matrices of the reader's data (x1, x2, ntk_train, …); "
        "tests/test_theory*.py run these functions",
    ("theory.md",
     "from l2dynamics.theory import fc_kernels, kernel_flow, ridge_limit, flow_metrics"):
        "needs kernel matrices of the reader's data; tests/test_theory*.py run these functions",
    ("sweeps.md", "from l2dynamics.sweep import run_sweep"):
        "runs a whole sweep (minutes); tests/test_sweep*.py run run_sweep",
    ("choosing-lambda.md", "from l2dynamics.studies.choose import suggest_lambda"):
        "defines an Optuna objective whose body is the reader's ('...'); "
        "tests/test_choose.py runs suggest_lambda in a study",
}


def _blocks(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "--8<--" not in b]


def _skip_reason(page: Path, block: str) -> str | None:
    first = block.strip().splitlines()[0].split("#")[0].strip()
    return SKIP.get((page.name, first))


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_python_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs", exist_ok=True)
    namespace: dict = {}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)  # noqa: S102
    if page.name in SETUP:
        exec(compile(SETUP[page.name], "<setup>", "exec"), namespace)  # noqa: S102
    ran = 0
    for i, block in enumerate(_blocks(page)):
        if _skip_reason(page, block):
            continue
        for pattern, replacement in SHRINK:
            block = re.sub(pattern, replacement, block)
        exec(compile(block, f"{page.name}[{i}]", "exec"), namespace)  # noqa: S102
        ran += 1
    assert ran or all(_skip_reason(page, b) for b in _blocks(page))


def test_every_skip_names_a_block_that_exists():
    found = {(p.name, b.strip().splitlines()[0].split("#")[0].strip())
             for p in PAGES for b in _blocks(p)}
    assert set(SKIP) <= found, set(SKIP) - found
