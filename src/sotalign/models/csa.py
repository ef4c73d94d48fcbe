"""CSA: canonical similarity analysis (Li et al., ICLR 2025), training-free.

CSA fits CCA on the pairs and compares an image and a text by a similarity in which each
canonical direction counts in proportion to its canonical correlation ρ_j, so that directions the
pairs barely support weigh little. Here the CCA is the ridge CCA of the default teacher
(:func:`sotalign.teachers.cca_fit`, SPEC §2: rows L2-normalised, centred with the pair means,
ridge λ on both covariances), and the weighting is put into the embeddings themselves so that
CSA is an ordinary aligner:

    e_x(x) = normalise( ρ^w ⊙ W_xᵀ (x/‖x‖ − μ_A) )[:d],
    e_y(y) = normalise( ρ^w ⊙ W_yᵀ (y/‖y‖ − μ_B) )[:d],

with ``weight_power`` w = 1/2 by default, so that the inner product of the unnormalised
projections is Σ_j ρ_j u_j v_j — the correlation-weighted similarity of CSA — and the cosine
divides it by the ρ-weighted norms. Only the ``dim`` leading canonical directions (largest ρ) are
kept (all of them by default); CSA's own truncation to the top-s directions is this option.
w = 0 gives back the plain CCA teacher (restricted to ``dim`` directions).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..arrays import ArrayLike, as_tensor, l2_normalize
from ..errors import ConfigError, InputError
from .registry import register_aligner
from .teachers import cca_fit


@register_aligner
class CSAAligner:
    """CCA on the pairs with canonical-correlation-weighted similarity (CSA).

    Parameters
    ----------
    reg:
        Ridge λ of the CCA (default 0.1, as the CCA teacher).
    dim:
        Number of leading canonical directions kept (``None``: all, min(d_x, d_y)).
    weight_power:
        Exponent w of the per-direction weight ρ^w in the embeddings (1/2: the similarity is
        weighted by ρ).
    """

    kind: ClassVar[str] = "csa"

    def __init__(self, reg: float = 0.1, dim: int | None = None, weight_power: float = 0.5) -> None:
        if not (math.isfinite(reg) and reg >= 0):
            raise ConfigError(f"CSA ridge must be a finite number >= 0, got {reg!r}")
        if dim is not None and not (isinstance(dim, int) and dim >= 1):
            raise ConfigError(f"CSA dim must be a positive integer or None, got {dim!r}")
        if not (math.isfinite(weight_power) and weight_power >= 0):
            raise ConfigError(
                f"CSA weight_power must be a finite number >= 0, got {weight_power!r}"
            )
        self.reg, self.dim, self.weight_power = float(reg), dim, float(weight_power)

    def fit(self, A: ArrayLike, B: ArrayLike) -> CSAAligner:
        """Ridge CCA of the pairs (float64), then keep ``dim`` directions weighted by ρ^w."""
        A_t, B_t = as_tensor(A, torch.float64), as_tensor(B, torch.float64)
        if A_t.ndim != 2 or B_t.ndim != 2 or A_t.shape[0] != B_t.shape[0]:
            raise InputError(
                f"CSA needs paired 2-D arrays with equal row counts, got {tuple(A_t.shape)} "
                f"and {tuple(B_t.shape)}"
            )
        if A_t.shape[0] < 2:
            raise InputError("CSA needs at least 2 pairs")
        mu_a, mu_b, w_x, w_y, rho = cca_fit(A_t, B_t, self.reg)
        d = rho.shape[0] if self.dim is None else min(self.dim, rho.shape[0])
        scale = rho[:d].clamp_min(0.0).pow(self.weight_power)
        self.mu_a_, self.mu_b_ = mu_a.float(), mu_b.float()
        self.w_x_ = (w_x[:, :d] * scale).float()
        self.w_y_ = (w_y[:, :d] * scale).float()
        self.correlations_ = rho[:d].float()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "w_x_"):
            raise RuntimeError("CSAAligner is not fitted; call fit(A, B) first")

    @property
    def out_dim(self) -> int:
        self._check_fitted()
        return int(self.w_x_.shape[1])

    def _project(self, X: ArrayLike, mu: Tensor, W: Tensor) -> Tensor:
        self._check_fitted()
        X_t = as_tensor(X)
        if X_t.ndim != 2 or X_t.shape[1] != W.shape[0]:
            raise InputError(
                f"expected a 2-D array with {W.shape[0]} columns, got {tuple(X_t.shape)}"
            )
        return l2_normalize((l2_normalize(X_t) - mu) @ W)

    def encode_images(self, X: ArrayLike) -> Tensor:
        """e_x(x): ρ-weighted canonical image coordinates, L2-normalised."""
        self._check_fitted()
        return self._project(X, self.mu_a_, self.w_x_)

    def encode_texts(self, Y: ArrayLike) -> Tensor:
        """e_y(y): ρ-weighted canonical text coordinates, L2-normalised."""
        self._check_fitted()
        return self._project(Y, self.mu_b_, self.w_y_)

    def state_dict(self) -> dict[str, Tensor]:
        self._check_fitted()
        return {
            "mu_a": self.mu_a_,
            "mu_b": self.mu_b_,
            "w_x": self.w_x_,
            "w_y": self.w_y_,
            "correlations": self.correlations_,
        }

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reg": self.reg,
            "dim": self.dim,
            "weight_power": self.weight_power,
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> CSAAligner:
        dim = config.get("dim")
        obj = cls(
            reg=float(config.get("reg", 0.1)),
            dim=None if dim is None else int(dim),
            weight_power=float(config.get("weight_power", 0.5)),
        )
        for name in ("mu_a", "mu_b", "w_x", "w_y", "correlations"):
            setattr(obj, name + "_", state[name].float())
        return obj

    def __repr__(self) -> str:
        return f"CSAAligner(reg={self.reg}, dim={self.dim}, weight_power={self.weight_power})"
