"""Conversions between the weight-decay conventions in use, done once and in the open.

The project's λ (``lam``) is Lewkowycz & Gur-Ari's: the loss is L(θ) + (λ/2)·‖θ‖², so the
gradient gains λ·θ. This is exactly PyTorch's *coupled* ``weight_decay=λ`` in SGD and Adam.

Other conventions and how they map (θ the decayed parameters, η the learning rate per update):

=====================================  ======================================  ==================
convention                             update / penalty                        in our λ
=====================================  ======================================  ==================
PyTorch SGD/Adam ``weight_decay=wd``   grad += wd·θ                            λ = wd
van Laarhoven (2017)                   loss + λ_vL·‖θ‖² (gradient 2·λ_vL·θ)    λ = 2·λ_vL
google/autol2 code                     loss/10 + λ_c·Σθ² at lr η_c             λ = 20·λ_c,
                                                                               η = η_c/10
decoupled (AdamW, ``decoupled_wd``)    θ ← θ − η·λ_d·θ before the step         λ = λ_d for plain
                                                                               SGD only
independent decoupled (timm-style)     θ ← θ − λ_i·θ per update                λ_d = λ_i/η
=====================================  ======================================  ==================

For momentum SGD and Adam, coupled and decoupled decay are *different algorithms*: coupled λθ
passes through the momentum buffer / Adam's moments, decoupled does not. No conversion makes them
equal; the functions below convert only where an exact equivalence exists.
"""

from __future__ import annotations

__all__ = [
    "lam_from_torch_weight_decay",
    "torch_weight_decay_from_lam",
    "lam_from_vanlaarhoven",
    "vanlaarhoven_from_lam",
    "lam_lr_from_autol2_code",
    "decoupled_from_lam_sgd",
    "decoupled_from_independent",
    "independent_from_decoupled",
]


def torch_weight_decay_from_lam(lam: float) -> float:
    """PyTorch coupled ``weight_decay`` (SGD, Adam) for our λ: identical numbers."""
    return lam


def lam_from_torch_weight_decay(weight_decay: float) -> float:
    """Our λ for a PyTorch coupled ``weight_decay`` (SGD, Adam; NOT AdamW)."""
    return weight_decay


def lam_from_vanlaarhoven(lam_vl: float) -> float:
    """van Laarhoven writes λ_vL·‖w‖² (gradient 2·λ_vL·w); in (λ/2)·‖w‖² that is λ = 2·λ_vL."""
    return 2.0 * lam_vl


def vanlaarhoven_from_lam(lam: float) -> float:
    """Inverse of :func:`lam_from_vanlaarhoven`: λ_vL = λ/2."""
    return lam / 2.0


def lam_lr_from_autol2_code(lam_code: float, lr_code: float) -> tuple[float, float]:
    """(λ, η) for google/autol2's loss ``mean-CE/10 + λ_c·Σθ²`` trained at learning rate η_c.

    Its update is θ ← θ − η_c(∇CE/10 + 2λ_c·θ) = θ − (η_c/10)(∇CE + 20λ_c·θ), i.e. our
    convention with η = η_c/10 and λ = 20·λ_c (so η·λ = 2·η_c·λ_c).
    """
    return 20.0 * lam_code, lr_code / 10.0


def decoupled_from_lam_sgd(lam: float) -> float:
    """Decoupled λ_d equal to coupled λ for *plain SGD* (θ − η(g + λθ) = θ(1 − ηλ) − ηg)."""
    return lam


def independent_from_decoupled(decoupled_wd: float, lr: float) -> float:
    """Per-update shrink fraction λ_i = η·λ_d (the factor AdamW multiplies θ by is 1 − λ_i)."""
    return lr * decoupled_wd


def decoupled_from_independent(independent_wd: float, lr: float) -> float:
    """λ_d = λ_i/η for a per-update shrink fraction λ_i independent of the learning rate."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0 to convert, got {lr}")
    return independent_wd / lr
