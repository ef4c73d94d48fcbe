"""Alignment heads f: R^{d_x}→R^d and g: R^{d_y}→R^d (SPEC §3, Stage 2).

The default head is ``LayerNorm(d_in)`` followed by ``Linear(d_in → d)`` with Xavier-uniform
weights and zero bias; the paper finds linear heads better than non-linear ones at low
supervision. An MLP head (LayerNorm → Linear → GELU → Linear) is available as an option, and a
``teacher`` head (normalise, centre, Linear) that starts exactly at the fitted linear teacher.
Heads consume the raw cached embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, closest


class LinearHead(nn.Module):
    """``Linear(LayerNorm(x))`` with Xavier-uniform weight and zero bias."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.linear = nn.Linear(d_in, d_out)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.norm(x))


class MLPHead(nn.Module):
    """``Linear(GELU(Linear(LayerNorm(x))))``; hidden width defaults to ``d_out``."""

    def __init__(self, d_in: int, d_out: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or d_out
        self.norm = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_out)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TeacherLinearHead(nn.Module):
    """``Linear(x/‖x‖ − μ)``: the teacher's own input pipeline, started at the teacher's map.

    With :meth:`init_from_teacher` the weight's first k rows are the teacher projection Wᵀ
    (k = teacher width) and the rest are zero, so at step 0 the student's cosines equal the
    teacher's (for ``d_out ≥ k``); training then refines the teacher instead of starting from
    a random map — useful when the pairs are few.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.register_buffer("mu", torch.zeros(d_in))
        self.linear = nn.Linear(d_in, d_out)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def init_from_teacher(self, mu: torch.Tensor, W: torch.Tensor) -> None:
        """Set μ and the weight from a teacher's mean and projection W (d_in × k)."""
        self.mu.copy_(mu)
        k = min(W.shape[1], self.linear.out_features)
        self.linear.weight.zero_()
        self.linear.weight[:k] = W[:, :k].T.to(self.linear.weight.dtype)
        self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.linear(x - self.mu)


HEADS: dict[str, type[nn.Module]] = {
    "linear": LinearHead,
    "mlp": MLPHead,
    "teacher": TeacherLinearHead,
}


def make_head(kind: str, d_in: int, d_out: int, **kwargs: Any) -> nn.Module:
    """Build a head by name: ``linear`` (default), ``mlp`` or ``teacher``."""
    if kind not in HEADS:
        raise ConfigError(
            f"unknown head '{kind}'{closest(kind, list(HEADS))}; choose one of {', '.join(HEADS)}"
        )
    return HEADS[kind](d_in, d_out, **kwargs)
