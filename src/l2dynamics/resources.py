"""Memory estimates made before the big allocations, and a clear refusal when they cannot fit.

Out of memory, a process dies in the allocator with a traceback, or is killed without a word by
the kernel, possibly hours into a sweep. The big allocations of l2dynamics have sizes known
before anything is allocated, so they are estimated first and refused with a
:class:`~l2dynamics.errors.ResourceError` that names the estimate, the limit and the knob to turn:

- a run (:class:`~l2dynamics.train.Trainer`, ``members=1``) and a vectorized ensemble
  (:class:`~l2dynamics.train.EnsembleTrainer`, ``members=K``), estimated by
  :func:`l2dynamics.train.footprint.run_memory` from the parts here: K × P × bytes × (parameters,
  gradients, optimizer state, one update temporary; + one copy while an ensemble stacks its
  members) plus K × batch × activations per example × bytes × 2 (kept for the backward pass,
  and their gradients), plus the metric history kept in memory (evaluation points × metrics);
- kernel matrices, n1 × n2 numbers each: ``theory.fc_kernels`` (NNGP and NTK in float64) and
  the empirical NTK of ``probes.kernel``.

The limit is, in order: ``$L2DYNAMICS_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix, powers of
1024; ``off`` disables the check); the free memory of the CUDA device the allocation goes to; the
host's available memory (psutil if installed, else ``MemAvailable`` of /proc/meminfo, else
physical pages × page size from sysconf), capped by a cgroup v2/v1 limit if one is set.
Estimates are lower bounds of the peak: they catch what cannot fit; they do not predict the
usage to the byte.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from l2dynamics.errors import ConfigError, ResourceError

MEMORY_ENV = "L2DYNAMICS_MEMORY_LIMIT"
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by part (e.g. ``{"parameters": …, "activations": …}``) and the knob of each."""

    parts: dict[str, int]
    knobs: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def describe(self) -> str:
        shown = ", ".join(f"{name}: {format_bytes(b)}" for name, b in self.parts.items() if b)
        return f"≈ {format_bytes(self.total)}" + (f" ({shown})" if shown else "")

    def knob(self) -> str:
        """The knob of the largest part."""
        if not self.parts:
            return ""
        largest = max(self.parts, key=lambda name: self.parts[name])
        return self.knobs.get(largest, "")


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB' (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_bytes(text: str) -> int | None:
    """'8G' → 8·2**30, '512M', '1000000' → bytes; 'off' → None (no limit)."""
    value = str(text).strip()
    if value.lower() in ("off", "none", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", value, flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"{MEMORY_ENV}={text!r} is not a size; use bytes or a number with "
                          "K, M, G or T (e.g. 16G), or 'off' to disable the memory check")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _host_available() -> tuple[int | None, str]:
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available), "available host memory (psutil)"
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return pages * size, "physical memory (sysconf)"
    except (ValueError, OSError, AttributeError):
        pass
    return None, "unknown"


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup limit (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 2**60:  # v1 writes a huge number for "none"
                return None
            return max(int(limit) - int(Path(usage_file).read_text().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def available_memory(device: str | torch.device | None = None) -> tuple[int | None, str]:
    """(bytes, where the number comes from) that an allocation on `device` may use now;
    (None, …) when there is no limit to enforce (``$L2DYNAMICS_MEMORY_LIMIT=off``, an unknown
    device kind)."""
    env = os.environ.get(MEMORY_ENV)
    if env is not None and env.strip():
        return parse_bytes(env), f"${MEMORY_ENV}"
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return None, "no CUDA device"
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), f"free memory of {dev}"
    if dev.type not in ("cpu", "meta"):
        return None, f"{dev.type} (not measured)"
    host, source = _host_available()
    cgroup = _cgroup_available()
    if cgroup is not None and (host is None or cgroup < host):
        return cgroup, "memory left under the cgroup limit"
    return host, source


def check_memory(estimate: MemoryEstimate | int, *, what: str, knob: str | None = None,
                 device: str | torch.device | None = None) -> None:
    """Raise ResourceError when `estimate` exceeds what `device` has available (see
    :func:`available_memory`); `knob` (default: the knob of the largest part) says what to
    change."""
    if isinstance(estimate, int):
        estimate = MemoryEstimate({"total": estimate})
    limit, source = available_memory(device)
    if limit is None or estimate.total <= limit:
        return
    knob = knob or estimate.knob() or "a smaller problem"
    raise ResourceError(
        f"{what} needs {estimate.describe()} but {format_bytes(limit)} is available ({source}); "
        f"use {knob}, or set {MEMORY_ENV} (e.g. 64G, or off) if the estimate is wrong")


# --- kernels ----------------------------------------------------------------------------------


def kernel_memory(n1: int, n2: int, *, matrices: int = 1, itemsize: int = 8,
                  copies: int = 1, extra: int = 0) -> MemoryEstimate:
    """`matrices` n1 × n2 kernel matrices of `itemsize` bytes, each held `copies` times at the
    peak, plus `extra` bytes of working memory."""
    knob = f"fewer points (now {n1} × {n2})"
    name = f"{matrices} kernel matri{'x' if matrices == 1 else 'ces'} of {n1} × {n2}"
    if copies > 1:
        name += f" ({copies} copies at the peak)"
    parts = {name: int(n1) * int(n2) * itemsize * matrices * copies}
    if extra:
        parts["working memory"] = int(extra)
    return MemoryEstimate(parts, {name: knob for name in parts})


# --- runs and ensembles ---------------------------------------------------------------------


def activation_counts(model: nn.Module, input_shape: tuple[int, ...],
                      dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """(sum, max) over the leaf modules of `model` of the numbers in their output for one
    example, by a forward pass on its own device (no arithmetic for a weightless model on the
    meta device, as :func:`~l2dynamics.train.footprint.run_memory` builds it); (0, 0) if that
    pass fails."""
    sizes: list[int] = []
    device = next((p.device for p in model.parameters()), torch.device("meta"))

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    except Exception:  # a model the meta device cannot run: activations are not counted
        return 0, 0
    finally:
        for h in handles:
            h.remove()
    return sum(sizes), max(sizes, default=0)


def eval_points(steps: int, per_decade: int, every: int) -> int:
    """How many evaluation steps ``eval_steps(steps, per_decade, every)`` holds, at most."""
    log_points = per_decade * math.log10(steps) + 3 if steps >= 1 else 2
    return int(log_points + (steps // every + 1 if every > 0 else 0))


def merge(*estimates: MemoryEstimate) -> MemoryEstimate:
    """One estimate with the parts of all of `estimates`."""
    parts: dict[str, int] = {}
    knobs: dict[str, str] = {}
    for e in estimates:
        parts.update(e.parts)
        knobs.update(e.knobs)
    return MemoryEstimate(parts, knobs)


__all__ = ["MEMORY_ENV", "MemoryEstimate", "activation_counts", "available_memory",
           "check_memory", "eval_points", "format_bytes", "kernel_memory", "merge", "parse_bytes"]
