"""The L2 convention: coupled λ is the gradient of (λ/2)‖θ‖², for every optimizer, to float64."""

import pytest
import torch
from torch.func import functional_call, grad

from l2dynamics import Trainer, make_config
from l2dynamics.l2 import conventions as conv

STEPS = 3


def _trainer(**over):
    cfg = make_config(dataset="digits", n_train=100, n_test=50, batch_size=100, width=16,
                      depth=2, dtype="float64", steps=STEPS, eval_per_decade=1,
                      norms_per_tensor=False, **over)
    return Trainer(cfg)


def _reference(trainer, update):
    """Apply `update(state, theta, g, t)` STEPS times with full-batch gradients, in float64."""
    model = trainer.model
    names = [n for n, _ in trainer.named_params]
    theta = {n: p.detach().clone() for n, p in trainer.named_params}
    x, y = trainer.data.x_train, trainer.data.y_train

    def loss(params):
        return trainer.loss_fn(functional_call(model, params, (x,)), y)

    state: dict = {}
    for t in range(STEPS):
        g = grad(loss)(theta)
        theta = {n: update(state, n, theta[n], g[n], t) for n in names}
    return theta


def _check(trainer, theta):
    trainer.run()
    for name, p in trainer.model.named_parameters():
        torch.testing.assert_close(p.detach(), theta[name], rtol=0, atol=1e-12)


LR, LAM, MU = 0.3, 0.05, 0.9


def test_sgd_coupled_is_gradient_of_half_lambda_norm_squared():
    trainer = _trainer(lr=LR, lam=LAM)
    theta = _reference(trainer, lambda s, n, th, g, t: th - LR * (g + LAM * th))
    _check(trainer, theta)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_coupled_l2_enters_the_buffer(nesterov):
    trainer = _trainer(lr=LR, lam=LAM, momentum=MU, nesterov=nesterov)

    def update(state, n, th, g, t):
        d = g + LAM * th
        buf = d.clone() if t == 0 else MU * state[n] + d
        state[n] = buf
        step = d + MU * buf if nesterov else buf
        return th - LR * step

    _check(trainer, _reference(trainer, update))


def _adam(state, n, th, d, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = state.get(n, (torch.zeros_like(th), torch.zeros_like(th)))
    m = b1 * m + (1 - b1) * d
    v = b2 * v + (1 - b2) * d * d
    state[n] = (m, v)
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    return th - lr * m_hat / (v_hat.sqrt() + eps)


def test_adam_coupled_l2_enters_the_moments():
    lr = 1e-2
    trainer = _trainer(optimizer="adam", lr=lr, lam=LAM)
    _check(trainer, _reference(trainer, lambda s, n, th, g, t: _adam(s, n, th, g + LAM * th, t,
                                                                     lr)))


def test_adamw_decoupled_shrinks_before_the_adam_step():
    lr, wd = 1e-2, 0.5
    trainer = _trainer(optimizer="adamw", lr=lr, decoupled_wd=wd)
    _check(trainer, _reference(trainer, lambda s, n, th, g, t: _adam(s, n, th * (1 - lr * wd),
                                                                     g, t, lr)))


def test_sgd_decoupled_equals_coupled_only_for_plain_sgd():
    coupled = _trainer(lr=LR, lam=LAM)
    decoupled = _trainer(lr=LR, decoupled_wd=conv.decoupled_from_lam_sgd(LAM))
    coupled.run()
    decoupled.run()
    for (_, a), (_, b) in zip(coupled.named_params, decoupled.named_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # ... and not for momentum SGD, where coupled λθ passes through the buffer.
    coupled_m = _trainer(lr=LR, lam=LAM, momentum=MU)
    decoupled_m = _trainer(lr=LR, decoupled_wd=LAM, momentum=MU)
    coupled_m.run()
    decoupled_m.run()
    gap = max((a - b).abs().max().item()
              for (_, a), (_, b) in zip(coupled_m.named_params, decoupled_m.named_params,
                                        strict=True))
    assert gap > 1e-6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lam_equals_torch_coupled_weight_decay(optimizer):
    over = {"momentum": MU} if optimizer == "sgd" else {}
    trainer = _trainer(optimizer=optimizer, lr=1e-2, lam=LAM, **over)
    model = trainer.model
    clone = {n: p.detach().clone().requires_grad_(True) for n, p in trainer.named_params}
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = cls(clone.values(), lr=1e-2, weight_decay=conv.torch_weight_decay_from_lam(LAM), **over)
    x, y = trainer.data.x_train, trainer.data.y_train
    for _ in range(STEPS):
        opt.zero_grad()
        trainer.loss_fn(functional_call(model, clone, (x,)), y).backward()
        opt.step()
    _check(trainer, {n: p.detach() for n, p in clone.items()})


def test_decay_rule_weights_leaves_biases_alone():
    trainer = _trainer(lr=LR, lam=1.0, decay_params="weights")
    assert all(name.endswith("bias") for name in trainer.decay.not_decayed)
    assert trainer.decay.decayed and all(p.ndim >= 2 for n, p in trainer.named_params
                                         if n in trainer.decay.decayed)


def test_decay_patterns_select_and_exclude():
    first = _trainer().named_params[0][0]  # e.g. "features.1.weight"
    trainer = _trainer(decay_params=["*weight*", "!" + first])
    assert trainer.decay.decayed and first in trainer.decay.not_decayed
    assert all("weight" in n for n in trainer.decay.decayed)
    with pytest.raises(ValueError, match="match no parameter"):
        _trainer(decay_params=["nothing_like_this"])


def test_conversion_helpers_are_consistent():
    assert conv.lam_from_vanlaarhoven(conv.vanlaarhoven_from_lam(0.3)) == pytest.approx(0.3)
    assert conv.lam_from_vanlaarhoven(1e-4) == pytest.approx(2e-4)
    lam, lr = conv.lam_lr_from_autol2_code(5e-4, 0.2)
    assert lam * lr == pytest.approx(2 * 5e-4 * 0.2)
    assert conv.decoupled_from_independent(conv.independent_from_decoupled(0.1, 0.02), 0.02) \
        == pytest.approx(0.1)


def test_decoupled_decay_skips_parameters_without_a_gradient_as_adamw_does():
    """torch.optim.AdamW leaves a parameter whose ``.grad`` is None untouched (no decay, no
    step); L2Penalty.decay must do the same, or a frozen/unused tensor shrinks every step."""
    from l2dynamics.l2 import L2Penalty

    lr, wd = 0.1, 0.5
    torch.manual_seed(0)
    used, unused = torch.randn(4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    ours = [torch.nn.Parameter(used.clone()), torch.nn.Parameter(unused.clone())]
    ref = [torch.nn.Parameter(used.clone()), torch.nn.Parameter(unused.clone())]
    adam = torch.optim.Adam(ours, lr=lr)  # decay off: the penalty owns it
    penalty = L2Penalty(ours, decoupled_wd=wd)
    adamw = torch.optim.AdamW(ref, lr=lr, weight_decay=wd)
    for _ in range(3):
        for params, opt in ((ours, adam), (ref, adamw)):
            opt.zero_grad(set_to_none=True)
            (params[0] ** 2).sum().backward()  # the second tensor gets no gradient
            assert params[1].grad is None
            if opt is adam:
                penalty.decay(lr)
            opt.step()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[1].detach(), unused, rtol=0, atol=0)
