"""The vectorized ensemble: K members give the numbers of K separate Trainer runs.

Tolerances. The ensemble performs Trainer's operations in Trainer's order on the same numbers;
only kernels differ (a batched matmul sums in another order, a fused multiply-add rounds once
instead of twice), i.e. a few ulp per operation. In float64 (ulp 1.1e-16) that stays far below
1e-9 relative over a few hundred steps (measured ~1e-12). In float32 (ulp 6e-8) the same few
ulp per step can grow with the number of steps T: T · 3 ulp ≈ 4e-5 for T = 200 is the bound
we allow with rtol 1e-4 (measured ~3e-7), still 100× below the effect of a real mistake such
as a missing λθ term (λ·η·T = 1e-3·0.1·100 = 1e-2 relative). An accuracy may change only if an
example sits on an argmax tie, so accuracies get an absolute slack of one example in float32.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from l2dynamics import RunStore, Trainer, load_series, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.train import (
    EnsembleTrainer,
    choose_engine,
    ensemble_key,
    load_run_data,
    vectorizable,
)

FAST = dict(dataset="digits", n_train=300, n_test=200, width=32, depth=2, batch_size=32,
            lr=0.1, eval_per_decade=5, device="cpu")
# Members differ in λ, η, seed and steps (and so in clock, schedule length and finish time).
MEMBERS = [dict(lam=1e-3, lr=0.1, seed=0, steps=120, name="a"),
           dict(lam=0.0, lr=0.05, seed=1, steps=200, name="b"),
           dict(lam=1e-2, lr=0.2, seed=2, steps=80, name="c")]
ADAM_MEMBERS = [dict(m, lr=m["lr"] / 20) for m in MEMBERS]


def _configs(members, **common):
    return [make_config(FAST, **common, **m) for m in members]


def _both(cfgs, dataset=None):
    separate = [Trainer(c, dataset=dataset).run() for c in cfgs]
    ensemble = EnsembleTrainer(cfgs, dataset=dataset).run()
    return separate, ensemble


def _assert_same(separate, ensemble, *, rtol, acc_atol=0.0):
    assert len(separate) == len(ensemble)
    for a, b in zip(separate, ensemble, strict=True):
        assert (a.status, a.steps_done, a.diverged_step, a.diverged_cause) == \
               (b.status, b.steps_done, b.diverged_step, b.diverged_cause)
        assert b.config == a.config
        ha, hb = a.history.drop(columns="wall_time"), b.history.drop(columns="wall_time")
        assert list(ha.columns) == list(hb.columns)
        assert ha["step"].tolist() == hb["step"].tolist()
        for col in ha.columns:
            atol = acc_atol if col.endswith("_acc") else 0.0
            np.testing.assert_allclose(hb[col].to_numpy(float), ha[col].to_numpy(float),
                                       rtol=rtol, atol=atol, err_msg=col)
        assert a.summary.keys() == b.summary.keys()
        for key, value in a.summary.items():
            if key != "steps_per_second" and value is not None:
                atol = acc_atol if key.endswith("_acc") else 0.0
                assert b.summary[key] == pytest.approx(value, rel=rtol, abs=atol), key


OPTIMIZERS = {
    "sgd": (MEMBERS, dict(decay_params="weights")),
    "momentum": (MEMBERS, dict(momentum=0.9)),
    "nesterov": (MEMBERS, dict(momentum=0.9, nesterov=True, lr_schedule="cosine",
                               warmup_steps=10)),
    "adam": (ADAM_MEMBERS, dict(optimizer="adam")),
    "adamw_decoupled": ([dict(m, lam=0.0, decoupled_wd=wd) for m, wd in
                         zip(ADAM_MEMBERS, (0.0, 0.1, 0.5), strict=True)],
                        dict(optimizer="adamw")),
}


@pytest.mark.parametrize("variant", list(OPTIMIZERS))
def test_float64_members_equal_separate_runs(variant):
    members, common = OPTIMIZERS[variant]
    separate, ensemble = _both(_configs(members, dtype="float64", **common))
    assert [r.status for r in ensemble] == ["finished"] * 3
    assert [r.steps_done for r in ensemble] == [m["steps"] for m in members]
    _assert_same(separate, ensemble, rtol=1e-9)


@pytest.mark.parametrize("variant", ["momentum", "adam"])
def test_float32_members_close_to_separate_runs(variant):
    members, common = OPTIMIZERS[variant]
    separate, ensemble = _both(_configs(members, **common))
    _assert_same(separate, ensemble, rtol=1e-4, acc_atol=1 / 200 + 1e-12)


@pytest.mark.parametrize("vmapped_probes", [False, True])
def test_full_batch_weight_norm_model_and_mse(vmapped_probes):
    """A shared full batch (no per-member batch axis), a weight-normed model, MSE loss; probes
    member by member (the CPU default) or vmapped over members (the GPU default)."""
    cfgs = _configs(MEMBERS, dtype="float64", batch_size=10_000, norm="wn", loss="mse")
    separate = [Trainer(c).run() for c in cfgs]
    ensemble = EnsembleTrainer(cfgs)
    ensemble.eval_one_by_one = not vmapped_probes
    _assert_same(separate, ensemble.run(), rtol=1e-9)


def test_vmapped_probes_cross_entropy_float32():
    ensemble = EnsembleTrainer(_configs(MEMBERS, momentum=0.9))
    ensemble.eval_one_by_one = False
    separate = [Trainer(c).run() for c in _configs(MEMBERS, momentum=0.9)]
    _assert_same(separate, ensemble.run(), rtol=1e-4, acc_atol=1 / 200 + 1e-12)


def test_per_member_augmentation_stream():
    """With an augmenting dataset, member k's batches are augmented by its own generator."""
    cfg = make_config(FAST, dtype="float64")
    data = load_run_data(cfg, torch.device("cpu"), torch.float64)

    def jitter(x, g):
        return x + 0.1 * torch.randn(x.shape, generator=g, dtype=x.dtype)

    data = replace(data, augment=jitter)
    cfgs = _configs([dict(m, steps=40) for m in MEMBERS], dtype="float64")
    separate, ensemble = _both(cfgs, dataset=data)
    _assert_same(separate, ensemble, rtol=1e-9)
    plain = Trainer(cfgs[0]).run().history["train_loss"].to_numpy()
    assert not np.allclose(plain, ensemble[0].history["train_loss"].to_numpy())


def test_diverging_members_stop_at_their_step_and_others_continue(tmp_path):
    """Huge η: one member's loss goes non-finite (found at the next loss check, as in a lone
    run), another's parameters at a probe; both are dropped, the others are unaffected."""
    boom = [dict(lam=0.0, lr=100.0, seed=3, steps=200, name="loss"),
            dict(lam=0.0, lr=10.0, seed=3, steps=200, name="params")]
    cfgs = _configs([*MEMBERS[:2], *boom], dtype="float64", loss="mse")
    separate = [Trainer(c).run() for c in cfgs]
    with RunStore(tmp_path / "s.sqlite") as store:
        ensemble = EnsembleTrainer(cfgs, store=store).run()
        records = [store.get_run(r.run_id) for r in ensemble]
    assert [r.status for r in ensemble] == ["finished", "finished", "diverged", "diverged"]
    assert [r.diverged_cause for r in ensemble[2:]] == ["non-finite loss",
                                                         "non-finite parameters"]
    for lone, member, record in zip(separate[2:], ensemble[2:], records[2:], strict=True):
        assert member.diverged_step == lone.diverged_step and member.steps_done < 200
        assert (record["status"], record["diverged_step"], record["steps_done"]) == \
               ("diverged", member.diverged_step, member.steps_done)
    _assert_same(separate, ensemble, rtol=1e-9)


def test_store_holds_one_trainer_like_run_per_member(tmp_path):
    cfgs = _configs(MEMBERS)
    with RunStore(tmp_path / "s.sqlite") as store:
        ensemble = EnsembleTrainer(cfgs, store=store).run()
        lone = Trainer(cfgs[0], store=store).run()
        runs = {r["id"]: r for r in store.list_runs()}
        stored = {r.run_id: load_series(store, run_ids=[r.run_id]) for r in [*ensemble, lone]}
    ids = [r.run_id for r in ensemble]
    assert len(set(ids)) == 3 and len(runs) == 4
    assert set(stored[ids[0]].columns) == set(stored[lone.run_id].columns)
    for result, cfg in zip(ensemble, cfgs, strict=True):
        record = runs[result.run_id]
        assert record["status"] == "finished" and record["steps_done"] == cfg.steps
        assert record["name"] == cfg.name and record["config"] == cfg.to_dict()
        assert record["decay"] == runs[lone.run_id]["decay"]
        assert record["summary"]["best_test_acc"] == pytest.approx(
            result.summary["best_test_acc"])
        mine = stored[result.run_id].drop(columns="run_id")
        pd.testing.assert_frame_equal(mine[result.history.columns], result.history,
                                      check_dtype=False)


def test_vectorizable_refuses_with_a_reason():
    base = _configs(MEMBERS)
    assert vectorizable(base) is None
    bn = vectorizable(_configs(MEMBERS, norm="bn"))
    assert bn is not None and "buffers" in bn and "running_mean" in bn
    mixed = vectorizable([base[0], make_config(base[1], width=64)])
    assert mixed is not None and "architecture" in mixed and "width" in mixed
    other = vectorizable([base[0], make_config(base[1], batch_size=64)])
    assert other is not None and "batch_size" in other
    ckpt = vectorizable(_configs(MEMBERS, checkpoint_every=10))
    assert ckpt is not None and "checkpoint" in ckpt
    assert vectorizable([]) == "no configs"
    with pytest.raises(ConfigError, match="buffers"):
        EnsembleTrainer(_configs(MEMBERS, norm="bn"))


def test_ensemble_key_ignores_only_member_keys():
    a, b, _ = _configs(MEMBERS)
    assert ensemble_key(a) == ensemble_key(b)
    assert ensemble_key(a) != ensemble_key(make_config(a, width=64))
    assert ensemble_key(a) != ensemble_key(make_config(a, momentum=0.5))


def test_choose_engine_rule():
    small = _configs(MEMBERS)  # fc 2×32 on digits, batch 32: 3.5e3 params × 32
    assert choose_engine(small, "cpu") == "vectorized"
    assert choose_engine(small[:1], "cpu") == "sequential"
    big = _configs(MEMBERS, width=1024, batch_size=256)
    assert choose_engine(big, "cpu") == "sequential"
    assert choose_engine(big, torch.device("cuda")) == "vectorized"
    assert choose_engine(_configs(MEMBERS, norm="bn"), torch.device("cuda")) == "sequential"


def test_an_exception_marks_the_members_still_training_failed(tmp_path):
    """A member that already finished keeps its result; those still in the stack are marked
    failed (Trainer's convention), not left 'running'."""
    calls = []

    def progress(member, step, total, metrics):
        calls.append((member, step))
        if member == 1 and step == 100:
            raise RuntimeError("simulated crash")

    cfgs = _configs(MEMBERS)
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError, match="simulated crash"):
            EnsembleTrainer(cfgs, store=store, progress=progress).run()
        runs = store.list_runs()
    assert [(r["name"], r["status"]) for r in runs] == [("a", "failed"), ("b", "failed"),
                                                        ("c", "finished")]
    assert runs[2]["steps_done"] == 80 and runs[0]["steps_done"] == 100
    assert (2, 80) in calls and (0, 1) in calls
