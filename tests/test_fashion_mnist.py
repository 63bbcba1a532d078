"""Fashion-MNIST (``dataset=fashion_mnist``): the IDX reader on small generated files (plain and
.gz), where the files are searched, the one-line message when they are missing, and — when
Debian's ``dataset-fashion-mnist`` is installed (always on CI) — the real files: shapes, class
balance, and the published files' checksums."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from l2dynamics.cli import app
from l2dynamics.data import available_datasets, load_dataset, locate
from l2dynamics.data.locate import FASHION_MNIST_FILES
from l2dynamics.errors import DataError
from test_data import make_mnist

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts them
# sha256 of the four files as published (github.com/zalandoresearch/fashion-mnist, data/fashion)
# and shipped by Debian's dataset-fashion-mnist: a property of the data, not of our code.
PUBLISHED_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


def make_fashion(folder: Path, n_train: int = 50, n_test: int = 30, gz: bool = False) -> dict:
    """The four files in ``folder`` (all .gz or all plain): Fashion-MNIST has MNIST's names and
    IDX format, so the MNIST test's writer makes them (labels class-balanced and shuffled)."""
    return make_mnist(folder, n_train, n_test, gz=(gz,) * 4, seed=1)


@pytest.fixture
def no_system(monkeypatch):
    """Hide the system install, so that only the data folder counts."""
    monkeypatch.setattr(locate, "FASHION_MNIST_SYSTEM_DIRS", ())


# ---------------------------------------------------------------------------- generated files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["fashion_mnist", "."])
def test_generated_round_trip(tmp_path, no_system, gz, sub):
    arrays = make_fashion(tmp_path / sub, gz=gz)
    d = load_dataset("fashion_mnist", data_dir=tmp_path, normalize="none")
    assert d.name == "fashion_mnist" and d.task == "classification" and d.num_outputs == 10
    assert d.input_shape == (1, 28, 28) and d.x_train.shape == (50, 1, 28, 28)
    assert d.x_test.shape == (30, 1, 28, 28) and d.y_train.dtype == torch.long
    expected = torch.from_numpy(arrays[FASHION_MNIST_FILES[0]].astype(np.float32) / 255)
    torch.testing.assert_close(d.x_train[:, 0], expected)
    assert d.y_test.tolist() == arrays[FASHION_MNIST_FILES[3]].tolist()
    assert d.info["source"] == str(tmp_path / sub)


def test_subset_is_class_balanced_and_seeded(tmp_path, no_system):
    make_fashion(tmp_path / "fashion_mnist", n_train=100, n_test=50, gz=True)
    d = load_dataset("fashion_mnist", data_dir=tmp_path, n_train=23, n_test=20, seed=3)
    assert d.n_train == 23 and d.n_test == 20
    assert torch.bincount(d.y_train, minlength=10).tolist() == [3, 3, 3] + [2] * 7
    assert torch.bincount(d.y_test, minlength=10).tolist() == [2] * 10
    again = load_dataset("fashion_mnist", data_dir=tmp_path, n_train=23, n_test=20, seed=3)
    assert torch.equal(d.x_train, again.x_train)
    with pytest.raises(Exception, match="n_train=101 but only 100 exist"):
        load_dataset("fashion_mnist", data_dir=tmp_path, n_train=101)


def test_channel_normalization_uses_training_statistics(tmp_path, no_system):
    arrays = make_fashion(tmp_path)
    d = load_dataset("fashion_mnist", data_dir=tmp_path)
    x = arrays[FASHION_MNIST_FILES[0]].astype(np.float64) / 255
    stats = d.info["normalization"]
    assert stats["mode"] == "channel"
    assert stats["mean"][0] == pytest.approx(x.mean(), rel=1e-5)
    assert stats["std"][0] == pytest.approx(x.std(), rel=1e-4)
    assert abs(d.x_train.mean().item()) < 1e-5 and d.x_train.std().item() == pytest.approx(1, 1e-2)
    xt = arrays[FASHION_MNIST_FILES[2]].astype(np.float64) / 255
    expected = torch.from_numpy((xt - stats["mean"][0]) / stats["std"][0]).float()
    torch.testing.assert_close(d.x_test[:, 0], expected, atol=1e-4, rtol=1e-4)


def test_data_folder_wins_over_the_system_install(tmp_path, monkeypatch):
    system = tmp_path / "system"
    make_fashion(system, n_train=20, n_test=10)
    make_fashion(tmp_path / "data" / "fashion_mnist", n_train=40, n_test=10)
    monkeypatch.setattr(locate, "FASHION_MNIST_SYSTEM_DIRS", (system,))
    assert load_dataset("fashion_mnist", data_dir=tmp_path / "data").n_train == 40
    assert load_dataset("fashion_mnist", data_dir=tmp_path / "empty").n_train == 20  # no flags
    monkeypatch.setenv("L2DYNAMICS_DATA", str(tmp_path / "data"))
    assert load_dataset("fashion_mnist").n_train == 40
    info = {i.name: i for i in available_datasets(tmp_path / "empty")}["fashion_mnist"]
    assert info.available and info.location == system and info.missing == []


def test_missing_is_one_line_saying_how_to_get_it(tmp_path, no_system):
    with pytest.raises(DataError) as e:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("fashion_mnist: expected file")
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "fashion_mnist") in msg and "L2DYNAMICS_DATA" in msg
    info = {i.name: i for i in available_datasets(tmp_path)}["fashion_mnist"]
    assert not info.available and info.location is None and info.missing == list(
        FASHION_MNIST_FILES)


def test_missing_from_the_cli_exits_2(tmp_path, no_system):
    result = CliRunner().invoke(app, ["train", "--set", "dataset=fashion_mnist", "--set",
                                      "steps=2", "--store", str(tmp_path / "s.sqlite"),
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "apt-get install dataset-fashion-mnist" in result.output


def test_malformed_file_names_the_dataset(tmp_path, no_system):
    make_fashion(tmp_path)
    (tmp_path / FASHION_MNIST_FILES[1]).write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"^fashion_mnist: .*too short"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


# -------------------------------------------------------------------------------- real files


def _real_files() -> dict[str, Path]:
    paths = {name: SYSTEM_DIR / name for name in PUBLISHED_SHA256}
    if not all(p.is_file() for p in paths.values()):
        why = f"Fashion-MNIST not installed in {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must test on the real files")
        pytest.skip(why)
    return paths


@pytest.fixture(scope="module")
def real():
    _real_files()
    return load_dataset("fashion_mnist", data_dir=Path("/nonexistent-l2dynamics-data"))


def test_real_files_are_the_published_ones():
    for name, path in _real_files().items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == PUBLISHED_SHA256[name], name


def test_real_shapes_and_balance(real):
    assert real.x_train.shape == (60000, 1, 28, 28) and real.x_test.shape == (10000, 1, 28, 28)
    assert real.info["source"] == str(SYSTEM_DIR)
    assert torch.bincount(real.y_train).tolist() == [6000] * 10
    assert torch.bincount(real.y_test).tolist() == [1000] * 10
    mean, std = real.info["normalization"]["mean"][0], real.info["normalization"]["std"][0]
    assert mean == pytest.approx(0.2860, abs=1e-3) and std == pytest.approx(0.3530, abs=1e-3)


def test_real_subset_is_balanced():
    _real_files()
    d = load_dataset("fashion_mnist", n_train=500, n_test=100, seed=7)
    assert torch.bincount(d.y_train).tolist() == [50] * 10
    assert torch.bincount(d.y_test).tolist() == [10] * 10


def test_cli_train_on_real_files(tmp_path):
    _real_files()
    argv = ["train", "--set", "dataset=fashion_mnist", "--set", "n_train=512", "--set",
            "n_test=512", "--set", "steps=20", "--store", str(tmp_path / "runs.sqlite"), "-q"]
    proc = subprocess.run([sys.executable, "-m", "l2dynamics.cli", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (tmp_path / "runs.sqlite").is_file()
