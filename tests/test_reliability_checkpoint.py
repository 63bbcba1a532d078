"""Checkpoints: checksummed, previous copy kept, corrupt files detected, safe loading.

A truncated or bit-flipped latest checkpoint is detected, a warning names the file and the
reason, and the run resumes from the previous checkpoint and still ends with exactly the
metrics of an uninterrupted run. That holds because a checkpoint carries the model, optimizer
(momentum), penalty, step, physical and λ-time and callback state, while the batch order and
augmentation are pure functions of (seed, step) — no RNG state needs to be saved.
"""

import os
import warnings

import pandas as pd
import pytest
import torch

from l2dynamics import RunStore, Trainer, load_series, make_config, train
from l2dynamics.errors import StoreError
from l2dynamics.train import checkpoint as ckpt
from l2dynamics.train.checkpoint import (
    CheckpointWarning,
    load_checkpoint,
    previous_path,
    save_checkpoint,
)

FAST = dict(dataset="digits", n_train=300, n_test=200, width=32, depth=2, batch_size=32,
            lr=0.1, eval_per_decade=5)


def _payload(step):
    return {"step": step, "w": torch.full((50,), float(step)), "nested": {"a": [1, 2.5]}}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path, where=0.5):
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_save_keeps_the_previous_good_checkpoint(tmp_path):
    path = tmp_path / "c" / "run-1.pt"
    save_checkpoint(path, _payload(1))
    assert path.is_file() and not previous_path(path).exists()
    save_checkpoint(path, _payload(2))
    assert previous_path(path).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good file loads without any warning
        assert load_checkpoint(path)["step"] == 2
        assert load_checkpoint(previous_path(path))["step"] == 1
    # the file stays a torch file: torch.load reads it directly, weights_only
    assert torch.load(path, weights_only=True)["step"] == 2
    assert path.read_bytes()[-ckpt.TRAILER_SIZE:].startswith(ckpt.MAGIC)
    assert sorted(p.name for p in path.parent.iterdir()) == ["run-1.pt", "run-1.pt.prev"]


@pytest.mark.parametrize("damage, reason", [(_truncate, "truncated or corrupt"),
                                            (_flip, "SHA-256"),
                                            (lambda p: _flip(p, 0.999), "SHA-256"),
                                            (lambda p: p.write_bytes(b""), "empty"),
                                            (lambda p: p.unlink(), "missing")])
def test_damaged_latest_falls_back_to_previous_with_a_warning(tmp_path, damage, reason):
    path = tmp_path / "run-7.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))
    damage(path)
    with pytest.warns(CheckpointWarning) as record:
        payload = load_checkpoint(path)
    assert payload["step"] == 1 and torch.equal(payload["w"], torch.full((50,), 1.0))
    (message,) = [str(w.message) for w in record]
    assert str(path) in message and reason in message and "run-7.pt.prev" in message


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "run-3.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))
    _truncate(path)
    _flip(previous_path(path))
    with pytest.raises(StoreError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "no usable checkpoint" in text and "\n" not in text
    assert f"{path} is truncated" in text and f"{previous_path(path)} fails its SHA-256" in text
    with pytest.raises(StoreError, match="is missing.*is missing"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_a_corrupt_latest_is_never_rotated_over_the_good_previous(tmp_path):
    path = tmp_path / "run-1.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))
    _flip(path)
    save_checkpoint(path, _payload(3))  # the corrupt step-2 file is dropped, step 1 kept
    assert load_checkpoint(path)["step"] == 3
    assert load_checkpoint(previous_path(path))["step"] == 1


def test_a_crash_mid_write_leaves_the_old_files(tmp_path, monkeypatch):
    path = tmp_path / "run-1.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))

    def crash(kind):
        raise KeyboardInterrupt(kind)

    # the hook point half-way through the temporary file (a real SIGKILL there is exercised
    # by tests/test_reliability_crash.py); BaseException cleans up, so also leave a stray .tmp
    monkeypatch.setattr(ckpt, "fault_point", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _payload(3))
    monkeypatch.undo()
    (tmp_path / "run-1.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert load_checkpoint(path)["step"] == 2 and load_checkpoint(previous_path(path))["step"] == 1
    save_checkpoint(path, _payload(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1.pt", "run-1.pt.prev"]


def test_checkpoints_without_checksum_still_load(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(_payload(5), path)  # as written before checksums
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(path)["step"] == 5


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    save_checkpoint(path, {"x": _Exploit()})  # a valid checksum does not make it trusted
    with pytest.raises(StoreError, match="truncated or corrupt.*Unpickl|weights_only"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


class _CrashAt:
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            raise RuntimeError("simulated crash")


def _metrics(frame):
    return frame.drop(columns=[c for c in ("wall_time", "run_id") if c in frame.columns])


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "flipped"])
def test_resume_from_a_corrupt_checkpoint_matches_the_uninterrupted_run(tmp_path, damage):
    cfg = make_config(FAST, steps=240, lam=1e-3, momentum=0.9, checkpoint_every=50)
    reference = train(cfg).history
    with RunStore(tmp_path / "s.sqlite") as store:
        first = Trainer(cfg, store=store, callbacks=[_CrashAt(130)])
        with pytest.raises(RuntimeError):
            first.run()
        path = first.checkpoint_path()
        assert load_checkpoint(path)["step"] == 100
        assert load_checkpoint(previous_path(path))["step"] == 50
        damage(path)
        with pytest.warns(CheckpointWarning, match="falling back to the previous checkpoint"):
            resumed = Trainer.resume(store, first.run_id)
        assert resumed.step == 50  # the step-100 file was unusable
        result = resumed.run()
        assert result.status == "finished"
        stored = load_series(store, run_ids=[first.run_id])
    pd.testing.assert_frame_equal(_metrics(stored), _metrics(reference), check_dtype=False)
    pd.testing.assert_frame_equal(_metrics(result.history), _metrics(reference))
