"""Linear teachers (SPEC §2, Stage 1 of SOTAlign).

A teacher is fitted on the pairs only and then frozen. It maps both modalities into a shared
space by

    t_x(x) = normalise( W_xᵀ (x/‖x‖ − μ_A) ),     t_y(y) = normalise( W_yᵀ (y/‖y‖ − μ_B) ),

and its affinity of an image batch X and a text batch Y is the cosine matrix
``K*_ij = ⟨t_x(X_i), t_y(Y_j)⟩``. Every teacher is also a complete aligner on its own.

Three teachers are provided:

* :class:`ProcrustesTeacher` — SVD of the centred cross-covariance, no whitening.
* :class:`CCATeacher` — ridge CCA (the default teacher, λ = 0.1, all components kept).
* :class:`ContrastiveTeacher` — linear maps trained with SigLIP on the pairs (linear SAIL).

Each teacher is an aligner (:mod:`sotalign.models.registry`), saved and loaded by
:class:`sotalign.SOTAlign`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from lion_pytorch import Lion
from torch import Tensor

from ..arrays import ArrayLike, as_tensor, l2_normalize
from ..errors import ConfigError, InputError, closest
from ..losses import infonce_loss, siglip_loss
from .registry import register_aligner


def inv_sqrt_psd(S: Tensor, floor: float = 1e-6) -> Tensor:
    """Σ^{-1/2} of a symmetric PSD matrix by eigendecomposition (eigenvalues ≥ ``floor``)."""
    evals, evecs = torch.linalg.eigh(S)
    return (evecs * evals.clamp_min(floor).rsqrt()) @ evecs.T


def inv_sqrt_cov(Xc: Tensor, reg: float, S: Tensor, floor: float = 1e-6) -> Tensor:
    """(S + λI)^{-1/2} for the covariance S = X_cᵀX_c/(n−1) of centred data X_c (n × d).

    With n ≥ d: eigendecomposition of S + λI. With n < d, S has rank < n and the thin SVD
    X_c/√(n−1) = U diag(s) Vᵀ gives the same matrix in O(n²d) instead of O(d³):

        (S + λI)^{-1/2} = V diag((s² + λ)^{-1/2}) Vᵀ + (I − V Vᵀ)/√λ,

    eigenvalues clamped below at ``floor`` exactly as in :func:`inv_sqrt_psd`.
    """
    n, d = Xc.shape
    if n >= d:
        return inv_sqrt_psd(S + reg * torch.eye(d, dtype=S.dtype, device=S.device), floor)
    _, sv, Vh = torch.linalg.svd(Xc / math.sqrt(max(n - 1, 1)), full_matrices=False)
    inner = (sv.square() + reg).clamp_min(floor).rsqrt()
    outer = 1.0 / math.sqrt(max(reg, floor))
    eye = torch.eye(d, dtype=Xc.dtype, device=Xc.device)
    return (Vh.T * (inner - outer)) @ Vh + outer * eye


def _keep_nondegenerate(s: Tensor, rank_tol: float) -> int:
    """Number of leading singular values above ``rank_tol · s_max``.

    With fewer pairs than dimensions the cross-covariance has rank ≤ n_p − 1; the singular
    vectors of its (numerically) zero singular values span the null spaces in an arbitrary
    pairing that changes with the BLAS thread count. Those directions carry no shared signal,
    so they are dropped; with n_p > d nothing is dropped and all d' components are kept.
    """
    if s.numel() == 0 or float(s[0]) <= 0:
        return int(s.numel())
    return max(1, int((s > rank_tol * s[0]).sum()))


def cca_fit(
    A: Tensor, B: Tensor, reg: float = 0.1, rank_tol: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Ridge CCA of SPEC §2, in float64.

    Rows of A and B are L2-normalised and centred with the pair means μ_A, μ_B. With
    S_xx = A_cᵀA_c/(n−1), S_yy, S_xy likewise, Σ_xx = S_xx + λI and Σ_yy = S_yy + λI,

        T = Σ_xx^{-1/2} S_xy Σ_yy^{-1/2} = U diag(ρ) Vᵀ,  W_x = Σ_xx^{-1/2} U,  W_y = Σ_yy^{-1/2} V,

    keeping all d' = min(d_x, d_y) components (except exactly degenerate ones, ρ ≤ rank_tol·ρ₁,
    which exist only when n_p ≤ d; see :func:`_keep_nondegenerate`). Then W_xᵀ Σ_xx W_x = I,
    W_yᵀ Σ_yy W_y = I and W_xᵀ S_xy W_y = diag(ρ) with ρ sorted in decreasing order, 0 ≤ ρ < 1.

    Returns (μ_A, μ_B, W_x, W_y, ρ).
    """
    A = l2_normalize(A.double())
    B = l2_normalize(B.double())
    n = A.shape[0]
    mu_a, mu_b = A.mean(0), B.mean(0)
    Ac, Bc = A - mu_a, B - mu_b
    denom = max(n - 1, 1)
    S_xx = Ac.T @ Ac / denom if n >= Ac.shape[1] else Ac.new_zeros(0)
    S_yy = Bc.T @ Bc / denom if n >= Bc.shape[1] else Bc.new_zeros(0)
    S_xy = Ac.T @ Bc / denom
    Rx = inv_sqrt_cov(Ac, reg, S_xx)
    Ry = inv_sqrt_cov(Bc, reg, S_yy)
    U, rho, Vh = torch.linalg.svd(Rx @ S_xy @ Ry, full_matrices=False)
    k = _keep_nondegenerate(rho, rank_tol)
    return mu_a, mu_b, Rx @ U[:, :k], Ry @ Vh[:k].T, rho[:k]


def procrustes_fit(
    A: Tensor, B: Tensor, rank_tol: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Orthogonal Procrustes without whitening (SPEC §2).

    Rows L2-normalised and centred; thin SVD A_cᵀB_c = U S Vᵀ; W_x = U, W_y = V (exactly
    degenerate directions dropped as in :func:`cca_fit`).
    Returns (μ_A, μ_B, W_x, W_y, S).
    """
    A = l2_normalize(A.double())
    B = l2_normalize(B.double())
    mu_a, mu_b = A.mean(0), B.mean(0)
    U, S, Vh = torch.linalg.svd((A - mu_a).T @ (B - mu_b), full_matrices=False)
    k = _keep_nondegenerate(S, rank_tol)
    return mu_a, mu_b, U[:, :k], Vh[:k].T, S[:k]


class LinearTeacher:
    """Base of the linear teachers: t(x) = normalise(Wᵀ(x/‖x‖ − μ))."""

    kind: ClassVar[str] = ""

    mu_a_: Tensor
    mu_b_: Tensor
    w_x_: Tensor
    w_y_: Tensor

    def _check_fitted(self) -> None:
        if not hasattr(self, "w_x_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(A, B) first")

    @staticmethod
    def _check_pairs(A: Tensor, B: Tensor) -> None:
        if A.ndim != 2 or B.ndim != 2:
            raise InputError("paired arrays must be 2-D (rows = samples)")
        if A.shape[0] != B.shape[0]:
            raise InputError(
                f"paired images have {A.shape[0]} rows but paired texts have {B.shape[0]};"
                " row i of each must be a pair"
            )
        if A.shape[0] < 2:
            raise InputError("at least 2 pairs are needed to fit a teacher")

    def _project(self, X: ArrayLike, mu: Tensor, W: Tensor) -> Tensor:
        self._check_fitted()
        X = as_tensor(X, device=W.device)
        if X.shape[-1] != mu.shape[0]:
            raise InputError(f"expected {mu.shape[0]}-dimensional inputs, got {X.shape[-1]}")
        return l2_normalize((l2_normalize(X) - mu) @ W)

    def encode_images(self, X: ArrayLike) -> Tensor:
        """Teacher-space image embeddings (L2-normalised)."""
        return self._project(X, self.mu_a_, self.w_x_)

    def encode_texts(self, Y: ArrayLike) -> Tensor:
        """Teacher-space text embeddings (L2-normalised)."""
        return self._project(Y, self.mu_b_, self.w_y_)

    def affinity(self, X: ArrayLike, Y: ArrayLike) -> Tensor:
        """Teacher affinity K*_ij = cos(t_x(X_i), t_y(Y_j))."""
        return self.encode_images(X) @ self.encode_texts(Y).T

    def to(self, device: Any) -> LinearTeacher:
        for name in ("mu_a_", "mu_b_", "w_x_", "w_y_"):
            if hasattr(self, name):
                setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict[str, Tensor]:
        self._check_fitted()
        return {
            "mu_a": self.mu_a_.cpu(),
            "mu_b": self.mu_b_.cpu(),
            "w_x": self.w_x_.cpu(),
            "w_y": self.w_y_.cpu(),
        }

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        self.mu_a_ = state["mu_a"].float()
        self.mu_b_ = state["mu_b"].float()
        self.w_x_ = state["w_x"].float()
        self.w_y_ = state["w_y"].float()

    def _set(self, mu_a: Tensor, mu_b: Tensor, w_x: Tensor, w_y: Tensor) -> None:
        self.mu_a_, self.mu_b_ = mu_a.float(), mu_b.float()
        self.w_x_, self.w_y_ = w_x.float(), w_y.float()

    @property
    def out_dim(self) -> int:
        """Width of the teacher space."""
        self._check_fitted()
        return int(self.w_x_.shape[1])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "kind")
        return f"{type(self).__name__}({params})"


@register_aligner
class ProcrustesTeacher(LinearTeacher):
    """Orthogonal Procrustes teacher (no whitening); see :func:`procrustes_fit`."""

    kind = "procrustes"

    def fit(self, A: ArrayLike, B: ArrayLike) -> ProcrustesTeacher:
        A_t, B_t = as_tensor(A, torch.float64), as_tensor(B, torch.float64)
        self._check_pairs(A_t, B_t)
        mu_a, mu_b, w_x, w_y, s = procrustes_fit(A_t, B_t)
        self._set(mu_a, mu_b, w_x, w_y)
        self.singular_values_ = s.float()
        return self

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> ProcrustesTeacher:
        obj = cls()
        obj._load_state(state)
        return obj


@register_aligner
class CCATeacher(LinearTeacher):
    """Ridge CCA teacher (the default); see :func:`cca_fit` for the maths.

    Parameters
    ----------
    reg:
        Ridge λ added to both covariance matrices (SPEC default 0.1).
    """

    kind = "cca"

    def __init__(self, reg: float = 0.1) -> None:
        if not (reg >= 0 and math.isfinite(reg)):
            raise ConfigError(f"CCA ridge must be a finite number >= 0, got {reg}")
        self.reg = reg

    def fit(self, A: ArrayLike, B: ArrayLike) -> CCATeacher:
        A_t, B_t = as_tensor(A, torch.float64), as_tensor(B, torch.float64)
        self._check_pairs(A_t, B_t)
        mu_a, mu_b, w_x, w_y, rho = cca_fit(A_t, B_t, self.reg)
        self._set(mu_a, mu_b, w_x, w_y)
        self.correlations_ = rho.float()
        return self

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "reg": self.reg}

    def state_dict(self) -> dict[str, Tensor]:
        return {**super().state_dict(), "correlations": self.correlations_.cpu()}

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> CCATeacher:
        obj = cls(reg=float(config.get("reg", 0.1)))
        obj._load_state(state)
        obj.correlations_ = state["correlations"].float()
        return obj


@register_aligner
class ContrastiveTeacher(LinearTeacher):
    """Linear maps trained with SigLIP on the pairs (SAIL with linear heads, SPEC §2).

    The maps act on the same normalised, centred inputs as the other teachers, so the
    teacher affinity is computed the same way. Trained with Lion (full batch when the pairs fit
    in ``batch_size``), a cosine schedule, SigLIP's learned scale and bias (init 20 / −10).
    """

    kind = "contrastive"

    def __init__(
        self,
        dim: int | None = None,
        steps: int = 1000,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 4096,
        loss: str = "siglip",
        seed: int = 0,
    ) -> None:
        if loss not in ("siglip", "infonce"):
            raise ConfigError(f"contrastive teacher loss must be siglip or infonce, not {loss!r}")
        self.dim, self.steps, self.lr = dim, steps, lr
        self.weight_decay, self.batch_size, self.loss, self.seed = (
            weight_decay,
            batch_size,
            loss,
            seed,
        )

    def fit(self, A: ArrayLike, B: ArrayLike) -> ContrastiveTeacher:
        A_t, B_t = as_tensor(A), as_tensor(B)
        self._check_pairs(A_t, B_t)
        A_n, B_n = l2_normalize(A_t), l2_normalize(B_t)
        mu_a, mu_b = A_n.mean(0), B_n.mean(0)
        Ac, Bc = A_n - mu_a, B_n - mu_b
        d = self.dim or min(A_t.shape[1], B_t.shape[1])
        gen = torch.Generator().manual_seed(self.seed)
        # Start from the Procrustes solution: a sensible, deterministic initialisation.
        _, _, w0x, w0y, _ = procrustes_fit(A_t.double(), B_t.double())
        k = min(d, w0x.shape[1])
        w_x = 0.01 * torch.randn(A_t.shape[1], d, generator=gen)
        w_y = 0.01 * torch.randn(B_t.shape[1], d, generator=gen)
        w_x[:, :k] += w0x[:, :k].float()
        w_y[:, :k] += w0y[:, :k].float()
        w_x.requires_grad_(True)
        w_y.requires_grad_(True)
        log_t = torch.tensor(math.log(20.0), requires_grad=True)
        bias = torch.tensor(-10.0, requires_grad=True)
        opt = Lion([w_x, w_y, log_t, bias], lr=self.lr, weight_decay=self.weight_decay)
        n = A_t.shape[0]
        bs = min(self.batch_size, n)
        for step in range(self.steps):
            lr = self.lr * 0.5 * (1 + math.cos(math.pi * step / max(self.steps, 1)))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randperm(n, generator=gen)[:bs] if bs < n else slice(None)
            za = l2_normalize(Ac[idx] @ w_x)
            zb = l2_normalize(Bc[idx] @ w_y)
            K = za @ zb.T
            if self.loss == "siglip":
                loss = siglip_loss(K, log_t.exp(), bias)
            else:
                loss = infonce_loss(K, log_t.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self._set(mu_a, mu_b, w_x.detach(), w_y.detach())
        self.final_loss_ = float(loss.detach())
        return self

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dim": self.dim,
            "steps": self.steps,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "loss": self.loss,
            "seed": self.seed,
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> ContrastiveTeacher:
        kw = {k: v for k, v in config.items() if k != "kind"}
        obj = cls(**kw)
        obj._load_state(state)
        return obj


TEACHERS: dict[str, type[LinearTeacher]] = {
    "cca": CCATeacher,
    "procrustes": ProcrustesTeacher,
    "contrastive": ContrastiveTeacher,
}


def make_teacher(name: str, **kwargs: Any) -> LinearTeacher:
    """Build an unfitted teacher by name (``cca``, ``procrustes`` or ``contrastive``)."""
    if name not in TEACHERS:
        raise ConfigError(
            f"unknown teacher '{name}'{closest(name, list(TEACHERS))}; "
            f"choose one of {', '.join(TEACHERS)}"
        )
    return TEACHERS[name](**kwargs)
