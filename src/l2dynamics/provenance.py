"""Where a result comes from: the library versions and the machine that produced it.

Stored with every run (``versions``) and every report (``versions``, ``machine``), so that a
number can be traced to the code and hardware that measured it.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata


def versions() -> dict[str, str]:
    """Versions of l2dynamics (its installed distribution; "dev" when it runs from a source tree
    that is not installed), torch, numpy and Python."""
    import numpy as np
    import torch

    try:
        own = metadata.version("l2dynamics")
    except metadata.PackageNotFoundError:
        own = "dev"
    return {"l2dynamics": own, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> str:
    """'node (arch, N CPUs)': host name, architecture and the CPUs this process may use."""
    return f"{platform.node()} ({platform.machine()}, {cpu_count()} CPUs)"


__all__ = ["cpu_count", "machine", "versions"]
