"""Alignment heads f: R^{d_x}→R^d and g: R^{d_y}→R^d (SPEC §3, Stage 2).

The default head is ``LayerNorm(d_in)`` followed by ``Linear(d_in → d)`` with Xavier-uniform
weights and zero bias; the paper finds linear heads better than non-linear ones at low
supervision. An MLP head (LayerNorm → Linear → GELU → Linear) is available as an option.
Heads consume the raw cached embeddings.
"""

from __future__ import annotations

from typing import Any

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


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead}


def make_head(kind: str, d_in: int, d_out: int, **kwargs: Any) -> nn.Module:
    """Build a head by name: ``linear`` (default) or ``mlp``."""
    if kind not in HEADS:
        raise ConfigError(
            f"unknown head '{kind}'{closest(kind, list(HEADS))}; choose one of {', '.join(HEADS)}"
        )
    return HEADS[kind](d_in, d_out, **kwargs)
