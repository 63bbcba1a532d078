"""The paper suite: every study reads its sweep from a packaged paper config and scales it as
asked; two studies run end to end on tiny MNIST and CIFAR-10 files written in the real
formats."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from l2dynamics.studies import reproduce as rep
from l2dynamics.studies import suite as suite_mod
from l2dynamics.studies.base import Context
from l2dynamics.sweep import load_sweep

PAPER_STUDIES = {"tstar", "wrn_tstar", "wrn_fig1a", "cnn_tstar", "convnet4_grid",
                 "convnet4_projection", "fmnist_fc_tstar", "fmnist_cnn_tstar", "fmnist_wrn_tstar",
                 "fmnist_wrn_fig1a"}
CONFIGS = ["fc_mnist_tstar", "wrn_cifar10_tstar", "wrn_cifar10_fig1a", "cnn_cifar10_tstar",
           "convnet4_cifar10_adam_grid", "convnet4_cifar10_adam_projection"]
FASHION_CONFIGS = ["fc_fmnist_tstar", "cnn_fmnist_tstar", "wrn_fmnist_tstar", "wrn_fmnist_fig1a"]


def _write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, np.uint8)
    path.write_bytes(struct.pack(">I", 0x800 + arr.ndim)
                     + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def make_data(root: Path, n: int = 60) -> Path:
    """MNIST IDX files and CIFAR-10 python batches of `n` random images each."""
    rng = np.random.default_rng(0)
    mnist = root / "mnist"
    mnist.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        _write_idx(mnist / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(mnist / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cifar / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": (np.arange(n) % 10).tolist()}, f, protocol=2)
    return root


def test_paper_suite_lists_every_paper_experiment():
    assert set(suite_mod.load_suite("paper").keys()) == PAPER_STUDIES
    assert set(suite_mod.paper_config_names()) == set(CONFIGS) | set(FASHION_CONFIGS)


@pytest.mark.parametrize("name", CONFIGS + FASHION_CONFIGS)
def test_paper_specs_are_scaled_and_point_at_the_data(tmp_path, name):
    full = Context(tmp_path, tmp_path / "s.sqlite", data_dir=tmp_path / "data")
    small = Context(tmp_path, tmp_path / "s.sqlite", data_dir=tmp_path / "data",
                    steps_scale=0.1, subset=500)
    big, little = suite_mod.paper_spec(full, name), suite_mod.paper_spec(small, name)
    big_cfgs, little_cfgs = load_sweep(big).configs(), load_sweep(little).configs()
    assert len(big_cfgs) == len(little_cfgs) > 1
    for a, b in zip(big_cfgs, little_cfgs, strict=True):
        assert a.data_dir == b.data_dir == str(tmp_path / "data")
        assert b.n_train == 500 and a.n_train != 500
        assert b.steps == pytest.approx(0.1 * a.steps, rel=0.02, abs=1)
        assert (a.autocast, a.channels_last) == ("none", "auto")  # no GPU here: no GPU path
        assert {k: v for k, v in a.to_dict().items() if k not in ("n_train", "steps")} == \
            {k: v for k, v in b.to_dict().items() if k not in ("n_train", "steps")}


def test_gpu_options_only_for_paper_configs_on_cuda(tmp_path, monkeypatch):
    import torch

    ctx = Context(tmp_path, tmp_path / "s.sqlite", data_dir=tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ctx.gpu_options(image=True) == {"autocast": "bf16", "channels_last": True}
    assert ctx.gpu_options(image=False) == {"autocast": "bf16", "channels_last": False}
    # the study descriptions name the options each config's runs really use
    what, spec = suite_mod.paper_what, suite_mod.paper_spec
    fc, wrn = spec(ctx, "fc_mnist_tstar"), spec(ctx, "wrn_cifar10_tstar")
    assert "bf16 autocast" in what(ctx, "x", "fc_mnist_tstar", fc)
    assert "channels_last" not in what(ctx, "x", "fc_mnist_tstar", fc)
    assert "bf16 autocast, channels_last)" in what(ctx, "x", "wrn_cifar10_tstar", wrn)
    ctx.fast = False
    assert ctx.gpu_options(image=True) == {}
    assert what(ctx, "x", "wrn", spec(ctx, "wrn_cifar10_tstar")) == "x (paper config wrn)"
    # a mini study's own sweep never asks for the GPU options: its runs are plain float32
    from l2dynamics.studies.study_tstar import TstarParams

    assert "autocast" not in TstarParams().sweep["base"]


def trimmed_configs(folder: Path) -> Path:
    """The real packaged paper configs with every grid list cut to two values (seeds to one):
    the same studies and code paths, a few runs each."""
    import yaml

    folder.mkdir()
    for name in suite_mod.paper_config_names():
        path = folder / f"{name}.yaml"
        spec = suite_mod.read_paper_config(name)
        spec["grid"] = {k: (v[:1] if k == "seed" else v[:2]) for k, v in spec["grid"].items()}
        (folder / path.name).write_text(yaml.safe_dump(spec))
    return folder


@pytest.mark.slow
def test_paper_suite_runs_end_to_end_on_tiny_files(tmp_path, monkeypatch):
    data = make_data(tmp_path / "data")
    trimmed = trimmed_configs(tmp_path / "configs")
    monkeypatch.setattr(suite_mod, "paper_config_dir", lambda: trimmed)
    summary = rep.reproduce("paper", tmp_path / "report", data_dir=data, only=["cnn_tstar",
                            "tstar"], steps_scale=0.0001, subset=40, workers=1,
                            log=lambda msg: None)
    by_key = {s["key"]: s for s in summary["studies"]}
    for key in ("tstar", "cnn_tstar"):
        assert by_key[key]["status"] == "ok", by_key[key]["error"]
        assert by_key[key]["claims"], key
        for fig in by_key[key]["figures"]:
            assert (tmp_path / "report" / fig["path"]).is_file()
    # the CNN study judges the nets without and with BN separately
    labels = {c["claim"].split(")")[0] for c in by_key["cnn_tstar"]["claims"]}
    assert {"(no BN", "(BN"} <= labels
    assert "paper config cnn_cifar10_tstar" in by_key["cnn_tstar"]["description"]
    assert (tmp_path / "report" / "index.html").is_file()
