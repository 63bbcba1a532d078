"""The memory a run or a vectorized ensemble needs, estimated and refused before it allocates.

The estimate (a lower bound of the peak, see :mod:`l2dynamics.resources` for the limits and the
refusal) counts K × P × bytes × (parameters, gradients, optimizer state, one update temporary;
+ one copy while an ensemble stacks its members), K × batch × activations per example × bytes
× 2 (kept for the backward pass, and their gradients), and the metric history kept in memory
(evaluation points × metrics). The model is built on the meta device: sizes, no memory.
"""

from __future__ import annotations

from typing import Any

import torch

from l2dynamics.models.from_config import config_model
from l2dynamics.resources import (
    MemoryEstimate,
    activation_counts,
    check_memory,
    eval_points,
    merge,
)
from l2dynamics.train.setup import eval_batch

_HISTORY_BYTES_PER_ROW = 150  # one (step, time, name, value) tuple kept by a run
_CLOCK_BYTES_PER_POINT = 100  # one evaluation step while the clock is built (list + arrays)


def run_memory(cfg: Any, data: Any, *, members: int = 1, stacked: bool = False,
               device: torch.device | str = "cpu") -> tuple[MemoryEstimate, MemoryEstimate]:
    """(device part, host part) of the memory a run of `cfg` on `data` needs on `device`;
    `members` runs at once for an ensemble (`stacked`: its members are built one by one, then
    stacked)."""
    itemsize = torch.empty((), dtype=getattr(torch, cfg.dtype)).element_size()
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = config_model(cfg, tuple(data.input_shape), data.num_outputs)
    params = sum(p.numel() for p in model.parameters())
    tensors = sum(1 for _ in model.parameters())
    act_sum, act_max = activation_counts(model, tuple(data.input_shape))
    n_train = int(data.x_train.shape[0])
    batch = max(1, min(cfg.batch_size, n_train))
    n_val = 0 if getattr(data, "x_val", None) is None else int(data.x_val.shape[0])
    n_eval = max(min(cfg.eval_train_size or n_train, n_train), int(data.x_test.shape[0]), n_val)
    batch_eval = max(1, min(eval_batch(cfg, torch.device(device)), n_eval))
    states = 2 if cfg.optimizer in ("adam", "adamw") else int(cfg.momentum > 0)
    copies = 3 + states + int(stacked)  # θ, ∇θ, one update temporary, optimizer state, stack
    train_act = members * batch * act_sum * itemsize * 2
    eval_act = (1 if stacked else members) * batch_eval * act_max * itemsize * 2
    # norm probes: 3 gradient metrics at clock points, 6 window metrics, and up to 4 from the
    # optimizer's state (SGDM 2, Adam + L2 4, AdamW 2), per tensor
    probe_rows = (13 * tensors + 1 if cfg.norm_probes else 0) + \
        (8 * tensors if cfg.norm_probes_per_unit else 0)  # the unit_* summaries
    rows = 12 + (2 if n_val else 0) + (tensors if cfg.norms_per_tensor else 0) + probe_rows
    points = eval_points(cfg.steps, cfg.eval_per_decade, cfg.eval_every)
    history = members * points * (_CLOCK_BYTES_PER_POINT + rows * _HISTORY_BYTES_PER_ROW)
    size = "a smaller width or depth"
    if members > 1:
        size += f", or fewer members per ensemble (now {members}; sweep --engine sequential)"
    device = MemoryEstimate(
        {"parameters and optimizer state": members * params * itemsize * copies,
         "activations": max(train_act, eval_act)},
        {"parameters and optimizer state": size,
         "activations": "a smaller batch_size or eval_batch_size, or " + size.removeprefix("a ")})
    host = MemoryEstimate(
        {"metric history": history},
        {"metric history": f"fewer evaluations ({points} now): a larger eval_every (0: the log "
                           "clock only) or a smaller eval_per_decade"})
    return device, host


def check_run_memory(cfg: Any, data: Any, device: torch.device | str, *, members: int = 1,
                     stacked: bool = False) -> None:
    """Refuse (ResourceError) a run, or an ensemble of `members` runs, that cannot fit."""
    on_device, on_host = run_memory(cfg, data, members=members, stacked=stacked, device=device)
    what = f"an ensemble of {members} runs" if members > 1 else "this run"
    dev = torch.device(device)
    if dev.type == "cpu":
        check_memory(merge(on_device, on_host), what=what, device=dev)
        return
    check_memory(on_device, what=f"{what} on {dev}", device=dev)
    check_memory(on_host, what=what, device="cpu")
