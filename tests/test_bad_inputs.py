"""Bad input, table-driven: every mistake a user can make gives one line naming the field and what
is allowed, exit status 2 from the CLI, and writes nothing.

Most CLI cases run in process (typer's CliRunner, the same code path as the console script); a
handful run as a real ``python -m l2dynamics.cli`` subprocess to check the process exit status and
that stderr holds exactly one line. Every case runs in an empty working directory (``tmp_path``),
and the listing of that directory — names, sizes and modification times — must be the same after
the refusal as before it: no store, no output folder, no partial file, a non-SQLite ``--store``
left byte for byte as it was.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from l2dynamics.cli import app
from l2dynamics.config import CONFIG_KEYS, invalid_examples, make_config, parse_overrides
from l2dynamics.errors import ConfigError, DataError, L2DynamicsError, ResourceError, StoreError
from l2dynamics.resources import MEMORY_ENV

runner = CliRunner()
MARKER = "PWNED"  # a file that only exists if a config or pickle ran code

# --- small bad files ------------------------------------------------------------------------


def write_idx(path: Path, arr, magic: int | None = None, truncate: int = 0) -> None:
    arr = np.asarray(arr, np.uint8)
    magic = 0x800 + arr.ndim if magic is None else magic
    raw = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(raw[:len(raw) - truncate])


def make_mnist(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def write_batch(path: Path, data, labels, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": np.asarray(data), b"labels": list(labels)}, f, protocol=protocol)


def make_cifar(folder: Path, per_batch: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(folder / name, rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                    np.arange(per_batch) % 10)


class Evil:
    """A pickle that runs `touch MARKER` when loaded by the standard unpickler."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _setup(tmp: Path, kind: str) -> None:
    """Create the bad file(s) of one case under `tmp`."""
    data = tmp / "data"
    mnist, cifar = data / "mnist", data / "cifar-10-batches-py"
    images = mnist / "train-images-idx3-ubyte"
    if kind == "notdb":
        (tmp / "notdb.sqlite").write_text("not a database, just text " * 40)
    elif kind == "dir":
        (tmp / "folder").mkdir()
    elif kind == "file_parent":
        (tmp / "plain").write_text("a file, not a folder")
    elif kind == "yaml_python":
        (tmp / "c.yaml").write_text(
            f"lam: !!python/object/apply:os.system ['touch {tmp / MARKER}']\n")
    elif kind == "yaml_list":
        (tmp / "c.yaml").write_text("- lam\n- 0.1\n")
    elif kind == "yaml_binary":
        (tmp / "c.yaml").write_bytes(b"\xff\xfe\x00garbage\x81")
    elif kind == "yaml_conflict":
        (tmp / "c.yaml").write_text("lr: 0.1\noptim: {name: sgd, lr: 0.2}\n")
    elif kind == "yaml_duplicate":
        (tmp / "c.yaml").write_text("lam: 0.1\nsteps: 5\nlam: 0.2\n")
    elif kind == "yaml_section":
        (tmp / "c.yaml").write_text("optim: sgd\n")
    elif kind == "json_duplicate":
        (tmp / "c.json").write_text('{"lam": 0.1, "lam": 0.2}')
    elif kind == "json_malformed":
        (tmp / "c.json").write_text('{"lam": ')
    elif kind.startswith("mnist"):
        make_mnist(mnist)
        if kind == "mnist_truncated":
            write_idx(images, np.zeros((20, 28, 28)), truncate=100)
        elif kind == "mnist_magic":
            write_idx(images, np.zeros((20, 28, 28)), magic=0x801)
        elif kind == "mnist_empty":
            write_idx(images, np.zeros((0, 28, 28)))
            write_idx(mnist / "train-labels-idx1-ubyte", np.zeros(0))
        elif kind == "mnist_gzip":
            raw = gzip.compress(images.read_bytes())
            images.unlink()
            images.with_name(images.name + ".gz").write_bytes(raw[:len(raw) // 2])
        elif kind == "mnist_missing":
            (mnist / "t10k-labels-idx1-ubyte").unlink()
    elif kind.startswith("cifar"):
        make_cifar(cifar)
        batch = cifar / "data_batch_2"
        if kind == "cifar_shape":
            write_batch(batch, np.zeros((10, 3, 32, 32), np.uint8), range(10))
        elif kind == "cifar_truncated":
            batch.write_bytes(batch.read_bytes()[:200])
        elif kind == "cifar_evil":
            with open(batch, "wb") as f:
                pickle.dump({b"data": Evil(tmp / MARKER), b"labels": [0]}, f)
        elif kind == "cifar_missing":
            (cifar / "test_batch").unlink()
    elif kind.startswith("sweep:"):
        (tmp / "s.yaml").write_text(kind.removeprefix("sweep:"))
    elif kind:
        raise AssertionError(kind)


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `root` with (size, mtime) of files: what "write nothing" compares."""
    return {str(p.relative_to(root)): ((p.stat().st_size, p.stat().st_mtime_ns)
                                       if p.is_file() else None) for p in root.rglob("*")}


# --- the CLI table ----------------------------------------------------------------------------

STORE = ["--store", "{tmp}/runs.sqlite"]
TRAIN = ["train", "-q", *STORE, "--set", "dataset=digits", "--set", "width=8", "--set",
         "steps=5", "--set", "n_train=100", "--set", "n_test=50"]
FILES = ["train", "-q", *STORE, "--set", "width=8", "--set", "steps=5", "--data-dir",
         "{tmp}/data"]
SWEEP = "base: {dataset: digits, width: 8, steps: 5, n_train: 100}\n"
OK_SWEEP = "sweep:" + SWEEP + "grid: {lam: [0, 0.01]}\n"


def S(*pairs: str) -> list[str]:  # noqa: N802 - reads as the --set flag
    return [a for p in pairs for a in ("--set", p)]


# (id, setup kind, argv, fragments that the one error line must hold)
CLI_CASES: list[tuple[str, str, list[str], tuple[str, ...]]] = [
    # one key's value on its own: drawn from the declarations (DRAWN, below); here the
    # cases that also go through a section, and the rules that involve several keys
    ("lr-nan-nested", "", [*TRAIN, *S("optim.lr=nan")], ("lr must be a finite number",)),
    ("warmup-too-long", "", [*TRAIN, *S("warmup_steps=10")],
     ("warmup_steps=10 must be smaller than steps=5",)),
    ("autol2-lam-zero", "", [*TRAIN, *S("lam_schedule=autol2", "lam=0")],
     ("lam_schedule=autol2", "must be > 0")),
    ("nesterov-no-momentum", "", [*TRAIN, *S("nesterov=true")],
     ("nesterov=true needs momentum > 0",)),
    ("adam-momentum", "", [*TRAIN, *S("optimizer=adam", "momentum=0.9")],
     ("momentum/nesterov apply to optimizer 'sgd' only",)),
    ("autocast-float64", "", [*TRAIN, *S("autocast=bf16", "dtype=float64")],
     ("autocast='bf16' needs dtype='float32'",)),
    ("unit-probes-alone", "", [*TRAIN, *S("norm_probes_per_unit=true")],
     ("norm_probes_per_unit=true", "needs norm_probes=true")),
    # unknown names
    ("activation-unknown", "", [*TRAIN, *S("activation=swish")],
     ("activation must be one of", "relu")),
    ("norm-unknown", "", [*TRAIN, *S("norm=xyz")], ("norm must be one of", "'bn'")),
    ("key-unknown", "", [*TRAIN, *S("lamb=0.1")],
     ("unknown config key 'lamb'", "did you mean 'lam'")),
    ("nested-key-unknown", "", [*TRAIN, *S("optim.momentun=0.9")],
     ("unknown config key 'optim.momentun'", "momentum")),
    ("data-option-unknown", "", [*TRAIN, *S("data_options={foo: 1}")],
     ("digits: unknown option 'foo'", "allowed")),
    ("data-option-top-level-key", "", [*TRAIN, *S("data_options.n_train=3000")],
     ("data_options cannot hold 'n_train'", "set n_train instead")),
    ("data-option-seed", "", [*TRAIN, *S("data_options.seed=3")],
     ("data_options cannot hold 'seed'", "set data_seed instead")),
    ("decay-pattern-matches-nothing", "", [*TRAIN, *S("decay_params=[nomatch*]")],
     ("decay_params pattern", "match no parameter")),
    ("override-without-value", "", [*TRAIN, "--set", "novalue"], ("must look like key=value",)),
    # config files
    ("config-missing", "", ["train", "-q", *STORE, "-c", "{tmp}/none.yaml"],
     ("config file not found",)),
    ("config-directory", "dir", ["train", "-q", *STORE, "-c", "{tmp}/folder"],
     ("is a directory", "YAML or JSON")),
    ("config-python-tag", "yaml_python", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("not valid YAML/JSON", "python/object")),
    ("config-not-mapping", "yaml_list", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("must hold a mapping",)),
    ("config-binary", "yaml_binary", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("not valid YAML/JSON",)),
    ("config-flat-and-nested", "yaml_conflict", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("lr is set twice", "'lr' and 'optim.lr'")),
    ("config-duplicate-key", "yaml_duplicate", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("duplicate key 'lam'",)),
    ("config-json-duplicate", "json_duplicate", ["train", "-q", *STORE, "-c", "{tmp}/c.json"],
     ("duplicate key 'lam'",)),
    ("config-json-malformed", "json_malformed", ["train", "-q", *STORE, "-c", "{tmp}/c.json"],
     ("not valid YAML/JSON",)),
    ("config-section-scalar", "yaml_section", ["train", "-q", *STORE, "-c", "{tmp}/c.yaml"],
     ("config section 'optim' must be a mapping", "optim: {name: sgd")),
    # data files
    ("mnist-missing", "mnist_missing", [*FILES, *S("dataset=mnist")],
     ("expected file 't10k-labels-idx1-ubyte'",)),
    ("mnist-truncated", "mnist_truncated", [*FILES, *S("dataset=mnist")],
     ("train-images-idx3-ubyte", "truncated")),
    ("mnist-magic", "mnist_magic", [*FILES, *S("dataset=mnist")],
     ("magic 0x00000801, expected 0x00000803",)),
    ("mnist-no-images", "mnist_empty", [*FILES, *S("dataset=mnist")],
     ("holds 0 images", "at least 1")),
    ("mnist-gzip-truncated", "mnist_gzip", [*FILES, *S("dataset=mnist")],
     ("cannot read", "train-images-idx3-ubyte.gz")),
    ("cifar-missing", "cifar_missing", [*FILES, *S("dataset=cifar10")],
     ("cifar10: expected file 'test_batch'",)),
    ("cifar-batch-shape", "cifar_shape", [*FILES, *S("dataset=cifar10")],
     ("data_batch_2", "expected uint8 (N, 3072)")),
    ("cifar-truncated", "cifar_truncated", [*FILES, *S("dataset=cifar10")],
     ("cannot unpickle", "data_batch_2")),
    ("cifar-code-in-pickle", "cifar_evil", [*FILES, *S("dataset=cifar10")],
     ("refused to load global", "system")),
    ("n-train-too-many", "", [*TRAIN, *S("n_train=100000")], ("n_train=100000", "at most")),
    # stores
    ("store-directory", "dir", [*TRAIN[:2], "--store", "{tmp}/folder", *TRAIN[4:]],
     ("cannot open run store",)),
    ("store-not-sqlite", "notdb", [*TRAIN[:2], "--store", "{tmp}/notdb.sqlite", *TRAIN[4:]],
     ("cannot open run store", "not a database")),
    ("store-under-a-file", "file_parent",
     [*TRAIN[:2], "--store", "{tmp}/plain/runs.sqlite", *TRAIN[4:]], ("cannot open run store",)),
    ("runs-list-missing-store", "", ["runs", "list", *STORE], ("no run store",)),
    ("runs-list-not-sqlite", "notdb", ["runs", "list", "--store", "{tmp}/notdb.sqlite"],
     ("not a database",)),
    ("runs-show-not-sqlite", "notdb", ["runs", "show", "1", "--store", "{tmp}/notdb.sqlite"],
     ("not a database",)),
    ("runs-export-not-sqlite", "notdb",
     ["runs", "export", "{tmp}/out/runs.csv", "--store", "{tmp}/notdb.sqlite"],
     ("not a database",)),
    ("runs-export-format", "", ["runs", "export", "{tmp}/runs.xlsx", *STORE],
     ("export format 'xlsx' is not allowed", "csv, json, parquet")),
    ("runs-list-status", "", ["runs", "list", *STORE, "--status", "weird"],
     ("--status 'weird' is not allowed", "finished")),
    ("analyze-not-sqlite", "notdb", ["analyze", "tstar", "--store", "{tmp}/notdb.sqlite"],
     ("not a database",)),
    ("resume-missing-store", "", ["train", "--resume", "1", *STORE], ("no run store",)),
    ("resume-with-overrides", "", ["train", "--resume", "1", *STORE, *S("lam=0")],
     ("--resume takes the stored config",)),
    # sweep specs
    ("sweep-empty-grid", "sweep:" + SWEEP + "grid: {}\n", ["sweep", "{tmp}/s.yaml", *STORE],
     ("sweep grid must be a non-empty mapping",)),
    ("sweep-empty-values", "sweep:" + SWEEP + "grid: {lam: []}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep grid.lam must be a non-empty list",)),
    ("sweep-scalar-values", "sweep:" + SWEEP + "grid: {lam: 0.1}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep grid.lam must be a non-empty list",)),
    ("sweep-grid-vs-base", "sweep:" + SWEEP + "grid: {steps: [3, 4]}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("grid.steps conflicts with base.steps",)),
    ("sweep-grid-vs-budget",
     "sweep:base: {dataset: digits}\ngrid: {steps: [3]}\nbudget: {rule: inverse_lam}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("grid.steps conflicts with budget.rule",)),
    ("sweep-repeated-value", "sweep:" + SWEEP + "grid: {lam: [0.1, 0.1]}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("grid.lam lists 0.1 twice",)),
    ("sweep-base-flat-and-nested",
     "sweep:base: {lr: 0.1, optim: {lr: 0.2}}\ngrid: {lam: [0]}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep base: lr is set twice",)),
    ("sweep-unknown-key", "sweep:" + SWEEP + "grid: {lam: [0]}\nextra: 1\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("unknown sweep key 'extra'", "name, base, grid")),
    ("sweep-grid-unknown-key", "sweep:" + SWEEP + "grid: {lamb: [0]}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep grid.lamb: not a config key",)),
    ("sweep-bad-point", "sweep:" + SWEEP + "grid: {lam: [0, -1]}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep point (lam=-1)", "lam must be >= 0")),
    ("sweep-budget-k-nan",
     "sweep:" + SWEEP.replace(" steps: 5,", "") + "grid: {lam: [1]}\n"
     "budget: {rule: inverse_lam, k: .nan}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("sweep budget.k must be a positive number",)),
    ("sweep-budget-bounds",
     "sweep:" + SWEEP.replace(" steps: 5,", "") + "grid: {lam: [1]}\n"
     "budget: {rule: inverse_lam, min_steps: 10, max_steps: 5}\n",
     ["sweep", "{tmp}/s.yaml", *STORE], ("budget.min_steps (10) exceeds budget.max_steps",)),
    ("sweep-spec-missing", "", ["sweep", "{tmp}/none.yaml", *STORE], ("sweep spec not found",)),
    ("sweep-workers", OK_SWEEP, ["sweep", "{tmp}/s.yaml", *STORE, "--workers", "0"],
     ("--workers must be ≥ 1",)),
    ("sweep-executor", OK_SWEEP, ["sweep", "{tmp}/s.yaml", *STORE, "--executor", "slurm"],
     ("--executor 'slurm' is not allowed", "local or ray")),
    ("sweep-engine", OK_SWEEP, ["sweep", "{tmp}/s.yaml", *STORE, "--engine", "fast"],
     ("--engine 'fast' is not allowed", "sequential")),
    ("sweep-store-not-sqlite", OK_SWEEP + "#notdb",
     ["sweep", "{tmp}/s.yaml", "--store", "{tmp}/notdb.sqlite"], ("not a database",)),
    ("sweep-store-directory", OK_SWEEP + "#dir",
     ["sweep", "{tmp}/s.yaml", "--store", "{tmp}/folder"], ("cannot open run store",)),
    # other commands' options
    ("theory-n-train-zero", "", ["theory", "--no-networks", "--out", "{tmp}/t", "--n-train",
                                 "0"], ("n_train must be >= 1",)),
    ("theory-horizon-nan", "", ["theory", "--out", "{tmp}/t", "--horizon", "nan"],
     ("horizon must be a finite number",)),
    ("theory-horizon-negative", "", ["theory", "--out", "{tmp}/t", "--horizon", "-1"],
     ("horizon", "must be > 0")),
    ("theory-lams-negative", "", ["theory", "--out", "{tmp}/t", "--lams", "-1"],
     ("--lams values must be finite and > 0",)),
    ("quickstart-lams-nan", "", ["quickstart", "--lams", "nan"],
     ("--lams values must be finite",)),
    ("quickstart-steps-zero", "", ["quickstart", "--steps", "0"], ("steps must be >= 1",)),
    ("predict-budget-zero", "", ["predict", "--budget", "0", *S("dataset=digits")],
     ("budget must be >= 1",)),
    ("predict-probe-k-nan", "", ["predict", "--budget", "100", "--probe-k", "nan",
                                 *S("dataset=digits")], ("probe_k must be a finite number",)),
    ("predict-no-config", "", ["predict", "--budget", "100"],
     ("predict needs the run it is for", "CONFIG file", "--set")),
    ("tune-no-config", "", ["tune", "--budget", "100", "--no-optuna"],
     ("tune needs the run it is for",)),
    ("tune-budget-zero", "", ["tune", "--budget", "0", "--no-optuna", *S("dataset=digits")],
     ("budget must be >= 1",)),
    ("tune-grid-zero", "", ["tune", "--budget", "10", "--no-optuna", "--grid", "0",
                            *S("dataset=digits")], ("--grid must hold at least one λ > 0",)),
    ("analyze-estimator", "", ["analyze", "tstar", *STORE, "--estimator", "median"],
     ("--estimator 'median' is not allowed", "raw, smoothed, onset")),
    ("analyze-threshold", "", ["analyze", "tstar", *STORE, "--train-threshold", "2"],
     ("--train-threshold must be in (0, 1]",)),
    ("norms-study-unknown", "", ["norms", "bogus"], ("study 'bogus' is not available",)),
    ("norms-relax-nan", "", ["norms", "equilibrium", "--relax-times", "nan"],
     ("relax_times must be a finite number",)),
    # resources: refused before anything is allocated (estimate, limit, knob)
    ("memory-model", "", [*TRAIN, *S("width=1000000", "depth=10")],
     ("this run needs ≈", "is available", "a smaller width or depth")),
    ("memory-theory-kernels", "", ["theory", "--no-networks", "--out", "{tmp}/t", "--n-train",
                                   "1000000"], ("kernels needs ≈", "--n-train")),
]


def _prepare(tmp: Path, kind: str, argv: list[str]) -> list[str]:
    for part in kind.split("#"):
        _setup(tmp, part)
    return [a.replace("{tmp}", str(tmp)) for a in argv]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory: default outputs (runs/, out/) would land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("L2DYNAMICS_STORE", raising=False)
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("kind, argv, fragments",
                         [pytest.param(k, a, f, id=i) for i, k, a, f in CLI_CASES])
def test_cli_refuses_with_one_line_exit_2_and_writes_nothing(workdir, kind, argv, fragments):
    _check_refusal(workdir, kind, argv, fragments)


def _check_refusal(workdir: Path, kind: str, argv: list[str], fragments: tuple[str, ...]) -> None:
    argv = _prepare(workdir, kind, argv)
    before = _snapshot(workdir)
    result = runner.invoke(app, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _snapshot(workdir) == before  # no store, no out dir, the bad files untouched
    assert not (workdir / MARKER).exists()


# --- each key's own invalid values, drawn from the config declarations --------------------------
# Below/above its range, outside its choices, of the wrong type, NaN/±inf and beyond float range:
# `invalid_examples()` reads them off each key's declared constraint, with the fragment of the
# message each must get, so a new key is covered here by declaring it.

DRAWN = invalid_examples()


def _as_set(value: object) -> str:
    """`value` as one writes it after ``--set key=``: YAML flow style (``.nan``, ``'true'``)."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**9).strip()[1:-1]


DRAWN_CLI_CASES = [(f"{d.key}={_as_set(d.value)}", "", [*TRAIN, *S(f"{d.key}={_as_set(d.value)}")],
                    (d.key, d.says)) for d in DRAWN]


def test_drawn_values_reach_the_cli_as_drawn():
    for d in DRAWN:
        parsed = parse_overrides([f"{d.key}={_as_set(d.value)}"])[d.key]
        assert repr(parsed) == repr(d.value), (d, parsed)


def test_every_key_has_drawn_invalid_values():
    assert {d.key for d in DRAWN} == set(CONFIG_KEYS)


@pytest.mark.parametrize("key, value, says",
                         [pytest.param(*d, id=f"{d.key}={_as_set(d.value)[:24]}") for d in DRAWN])
def test_api_refuses_each_drawn_value(key, value, says):
    with pytest.raises(ConfigError) as info:
        make_config({key: value})
    message = str(info.value)
    assert "\n" not in message and key in message and says in message, message


@pytest.mark.parametrize("argv, fragments", [pytest.param(a, f, id=i[:40])
                                             for i, _, a, f in DRAWN_CLI_CASES])
def test_cli_refuses_each_drawn_value(workdir, argv, fragments):
    _check_refusal(workdir, "", argv, fragments)


SUBPROCESS_CASES = ["lam=.nan", "config-python-tag", "store-not-sqlite", "mnist-truncated"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_cli_process_exit_status_and_stderr(workdir, case):
    """The real console entry point: exit status 2, one line on stderr, nothing on stdout."""
    _, kind, argv, fragments = next(c for c in [*CLI_CASES, *DRAWN_CLI_CASES] if c[0] == case)
    argv = _prepare(workdir, kind, argv)
    before = _snapshot(workdir)
    proc = subprocess.run([sys.executable, "-m", "l2dynamics.cli", *argv], cwd=workdir,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(f in lines[0] for f in fragments) and proc.stdout.strip() == ""
    assert _snapshot(workdir) == before and not (workdir / MARKER).exists()


# --- the API table ----------------------------------------------------------------------------


def _api_cases() -> list[tuple[str, Callable[[Path], object], type, tuple[str, ...]]]:
    from l2dynamics.config import load_config_file
    from l2dynamics.data import load_dataset
    from l2dynamics.data.files import read_cifar_batch, read_idx
    from l2dynamics.models import build_model
    from l2dynamics.probes import empirical_ntk
    from l2dynamics.store import RunStore
    from l2dynamics.studies.theory import TheoryStudy, run_theory_study
    from l2dynamics.sweep import load_sweep
    from l2dynamics.theory import fc_kernels
    from l2dynamics.train import EnsembleTrainer, Trainer

    def text(name: str, content: str) -> Callable[[Path], Path]:
        def make(tmp: Path) -> Path:
            (tmp / name).write_text(content)
            return tmp / name
        return make

    def idx(arr, **kw) -> Callable[[Path], Path]:
        def make(tmp: Path) -> Path:
            write_idx(tmp / "f-idx3-ubyte", arr, **kw)
            return tmp / "f-idx3-ubyte"
        return make

    def batch(data, labels, protocol=2) -> Callable[[Path], Path]:
        def make(tmp: Path) -> Path:
            write_batch(tmp / "data_batch_1", data, labels, protocol)
            return tmp / "data_batch_1"
        return make

    def mnist_dir(tmp: Path) -> Path:
        _setup(tmp, "mnist_empty")
        return tmp / "data"

    def notdb(tmp: Path) -> Path:
        _setup(tmp, "notdb")
        return tmp / "notdb.sqlite"

    tiny = {"dataset": "digits", "width": 8, "steps": 5, "n_train": 100, "n_test": 50}
    fc = build_model("fc", input_shape=(4,), num_outputs=2, width=8, depth=1)
    python_tag = text("p.yaml", "x: !!python/object/new:os.system [echo]\n")
    return [
        ("warmup-too-long", lambda t: make_config(steps=10, warmup_steps=10), ConfigError,
         ("warmup_steps=10 must be smaller than steps=10",)),
        ("choice-close-match", lambda t: make_config(optimizer="adamw "), ConfigError,
         ("optimizer='adamw ' is not allowed", "did you mean 'adamw'")),
        ("config-not-mapping", lambda t: make_config([1, 2]), ConfigError,
         ("config must be a mapping",)),
        ("config-key-not-str", lambda t: make_config({1: 2}), ConfigError,
         ("config keys must be strings",)),
        ("flat-and-nested", lambda t: make_config({"optim": {"name": "adam"},
                                                   "optimizer": "sgd"}), ConfigError,
         ("optimizer is set twice", "'optim.name' and 'optimizer'")),
        ("section-scalar", lambda t: make_config({"l2": 0.1}), ConfigError,
         ("config section 'l2' must be a mapping", "l2: {lam: 0.001}")),
        ("override-conflict", lambda t: parse_overrides(["a=1", "a.b=2"]), ConfigError,
         ("conflicts with 'a=1'",)),
        ("yaml-python-tag", lambda t: load_config_file(python_tag(t)), ConfigError,
         ("not valid YAML/JSON", "python/object/new")),
        ("json-duplicate", lambda t: load_config_file(text("c.json", '{"a": 1, "a": 2}')(t)),
         ConfigError, ("duplicate key 'a'",)),
        ("yaml-huge-int", lambda t: load_config_file(text("c.yaml", "steps: 1" + "0" * 5000)(t)),
         ConfigError, ("not valid YAML/JSON",)),
        ("sweep-empty-grid", lambda t: load_sweep({"grid": {}}), ConfigError,
         ("sweep grid must be a non-empty mapping",)),
        ("sweep-repeated-value", lambda t: load_sweep({"grid": {"lam": [0, 0.0]}}), ConfigError,
         ("grid.lam lists 0 twice",)),
        ("sweep-conflict", lambda t: load_sweep({"base": {"lam": 0}, "grid": {"lam": [0]}}),
         ConfigError, ("conflicts with base.lam",)),
        ("sweep-budget-max", lambda t: load_sweep({"grid": {"lam": [1]}, "budget": {
            "rule": "inverse_lam", "max_steps": 0}}), ConfigError,
         ("budget.max_steps must be an integer ≥ 1",)),
        ("dataset-unknown", lambda t: load_dataset("imagenet"), ConfigError,
         ("unknown dataset 'imagenet'", "digits")),
        ("n-train-zero", lambda t: load_dataset("digits", n_train=0), ConfigError,
         ("n_train must be a positive integer",)),
        ("teacher-option", lambda t: load_dataset("teacher", input_dim=-1), ConfigError,
         ("input_dim must be an integer >= 1",)),
        ("idx-truncated", lambda t: read_idx(idx(np.zeros((3, 28, 28)), truncate=9)(t), 0x803),
         DataError, ("truncated",)),
        ("idx-magic", lambda t: read_idx(idx(np.zeros((3, 28, 28)), magic=0x1234)(t), 0x803),
         DataError, ("magic 0x00001234, expected 0x00000803",)),
        ("idx-empty-file", lambda t: read_idx(text("e-idx", "")(t), 0x803), DataError,
         ("too short for an IDX header",)),
        ("idx-header-only", lambda t: read_idx(idx(np.zeros((3, 28, 28)), truncate=3 * 784
                                                   + 4)(t), 0x803),
         DataError, ("shorter than its IDX header",)),
        ("cifar-4d", lambda t: read_cifar_batch(batch(np.zeros((2, 3, 32, 32), np.uint8),
                                                      [0, 1])(t)),
         DataError, ("expected uint8 (N, 3072)",)),
        ("cifar-float", lambda t: read_cifar_batch(batch(np.zeros((2, 3072), np.float32),
                                                         [0, 1])(t)),
         DataError, ("float32", "expected uint8")),
        ("cifar-no-images", lambda t: read_cifar_batch(batch(np.zeros((0, 3072), np.uint8), [],
                                                             protocol=4)(t)),
         DataError, ("holds 0 images",)),
        ("cifar-labels", lambda t: read_cifar_batch(batch(np.zeros((2, 3072), np.uint8),
                                                          [0, 10])(t)),
         DataError, ("labels outside 0..9",)),
        ("mnist-no-images", lambda t: load_dataset("mnist", data_dir=mnist_dir(t)), DataError,
         ("holds 0 images",)),
        ("store-directory", lambda t: RunStore(t), StoreError, ("cannot open run store",)),
        ("store-not-sqlite", lambda t: RunStore(notdb(t)), StoreError, ("not a database",)),
        ("store-missing", lambda t: RunStore(t / "none.sqlite", create=False), StoreError,
         ("no run store",)),
        ("model-unknown", lambda t: build_model("gpt", input_shape=(4,), num_outputs=2),
         ConfigError, ("name must be one of", "'fc'")),
        ("kernel-depth", lambda t: fc_kernels(np.ones((2, 3)), depth=-1), ConfigError,
         ("depth must be an int >= 0",)),
        ("ntk-chunk", lambda t: empirical_ntk(fc, torch.ones(2, 4), chunk_size=0), ConfigError,
         ("chunk_size must be a positive int",)),
        ("theory-horizon", lambda t: run_theory_study(TheoryStudy(horizon=float("nan"))),
         ConfigError, ("horizon must be a finite number > 0",)),
        ("ensemble-mixed", lambda t: EnsembleTrainer([tiny, {**tiny, "width": 16}]),
         ConfigError, ("cannot train as one ensemble", "width")),
        ("trainer-memory", lambda t: Trainer({**tiny, "width": 10**6, "depth": 10}),
         ResourceError, ("this run needs ≈", "a smaller width or depth")),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("make, error, fragments",
                         [pytest.param(m, e, f, id=i) for i, m, e, f in API_CASES])
def test_api_raises_one_line_user_error(workdir, make, error, fragments):
    before = _snapshot(workdir)
    with pytest.raises(error) as info:
        make(workdir)
    message = str(info.value)
    assert isinstance(info.value, L2DynamicsError) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    created = set(_snapshot(workdir)) - set(before)  # the case's own bad files, nothing else:
    assert not [p for p in created if p.endswith(("-wal", "-shm", "-journal", "runs.sqlite"))]
    assert not (workdir / MARKER).exists()


def test_at_least_forty_bad_inputs_each_way():
    assert len(CLI_CASES) >= 40 and len(API_CASES) >= 30  # + DRAWN, each way:
    assert len(DRAWN) >= 5 * len(CONFIG_KEYS)
    for table in (CLI_CASES, API_CASES):
        assert len({case[0] for case in table}) == len(table), "duplicate case ids"


# --- configs are data -------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
])
def test_config_files_are_parsed_as_data_never_evaluated(tmp_path, payload):
    from l2dynamics.config import load_config_file
    from l2dynamics.sweep import load_sweep

    marker = tmp_path / MARKER
    path = tmp_path / "evil.yaml"
    path.write_text(f"lam: {payload.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        load_config_file(path)
    spec = tmp_path / "evil_sweep.yaml"
    spec.write_text(f"grid: {{lam: [{payload.format(marker=marker)}]}}\n")
    with pytest.raises(ConfigError, match="sweep spec .* not valid YAML/JSON"):
        load_sweep(spec)
    assert not marker.exists()


def test_config_loaders_use_no_evaluating_parser():
    """Source check: YAML only through SafeLoader (or a subclass), no eval/exec/pickle."""
    import re

    import l2dynamics.config.loading as config
    import l2dynamics.sweep.spec as spec

    for module in (config, spec):
        source = Path(module.__file__).read_text()
        assert not re.search(r"\b(eval|exec)\(|pickle|unsafe_load|FullLoader|yaml\.Loader\b|"
                             r"UnsafeLoader", source), module.__name__
        for call in re.findall(r"yaml\.load\(.*?\)", source):
            assert "Loader=_DataLoader" in call, call
    assert issubclass(config._DataLoader, __import__("yaml").SafeLoader)


def test_yaml_merge_keys_still_work(tmp_path):
    """The duplicate-key check leaves YAML's own override idiom (<<: *anchor) alone."""
    from l2dynamics.config import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text("defaults: &d {lr: 0.1, lam: 0.0}\noptim:\n  <<: *d\n  lr: 0.2\n")
    assert load_config_file(path)["optim"] == {"lr": 0.2, "lam": 0.0}


def test_foreign_sqlite_file_is_refused_and_left_untouched(workdir):
    import sqlite3

    other = workdir / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    before = _snapshot(workdir)
    result = runner.invoke(app, ["runs", "list", "--store", str(other)])
    assert result.exit_code == 2 and "not an l2dynamics run store" in result.output
    assert _snapshot(workdir) == before
