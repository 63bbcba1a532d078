"""A quick start-up: the package face, the config schema, the dataset list and the commands that
need no tensors (``--help``, ``keys``, ``datasets``) never import torch, which costs about a second.

Each check runs in a fresh interpreter, where ``sys.modules`` says what was really imported.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _fresh(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})


def test_package_config_and_dataset_list_do_not_import_torch(tmp_path):
    code = f"""
import sys
import l2dynamics.config
import l2dynamics
rows = l2dynamics.config.describe_keys()
cfg = l2dynamics.config.make_config(lam=1e-3, steps=100)
infos = l2dynamics.data.available_datasets({str(tmp_path)!r})
names = dir(l2dynamics)
version = l2dynamics.__version__
assert rows and cfg.lam == 1e-3 and infos and "Trainer" in names and version
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    proc = _fresh(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_lazy_names_resolve_to_their_modules(tmp_path):
    import l2dynamics
    from l2dynamics import Trainer
    from l2dynamics.train import Trainer as engine_trainer

    assert Trainer is engine_trainer
    # `train` is a subpackage and its function; importing the subpackage first (which sets the
    # attribute on the package) must leave the public name the function, as it always was
    code = ("import types, l2dynamics.train, l2dynamics\nfrom l2dynamics import train\n"
            "assert not isinstance(train, types.ModuleType) and l2dynamics.train is train")
    proc = _fresh(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(l2dynamics.__all__) <= set(dir(l2dynamics))
    for name in l2dynamics.__all__:
        value = getattr(l2dynamics, name)
        assert name.isupper() or value.__module__.startswith("l2dynamics."), name
    assert isinstance(l2dynamics.__version__, str) and l2dynamics.__version__
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        l2dynamics.nonexistent  # noqa: B018


def _imports_torch(importtime_stderr: str) -> bool:
    """Whether ``-X importtime`` output lists torch (lines "import time: self | cumulative |
    name", the name indented by depth)."""
    return any(line.split("|")[-1].strip() == "torch"
               for line in importtime_stderr.splitlines() if line.startswith("import time:"))


@pytest.mark.parametrize("command", [["--help"], ["keys"], ["datasets", "--data-dir", "{tmp}"]])
def test_light_commands_do_not_import_torch(tmp_path, command):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    proc = _fresh(["-X", "importtime", "-m", "l2dynamics.cli", *argv], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    assert not _imports_torch(proc.stderr), f"`l2dynamics {' '.join(command)}` imports torch"
