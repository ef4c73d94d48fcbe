"""Alignment heads f: R^{d_x}→R^d and g: R^{d_y}→R^d (SPEC §3, Stage 2).

The default head is ``LayerNorm(d_in)`` followed by ``Linear(d_in → d)`` with Xavier-uniform
weights and zero bias; the paper finds linear heads better than non-linear ones at low
supervision. An MLP head (LayerNorm → Linear → GELU → Linear) is available as an option, and a
``teacher`` head (normalise, centre, Linear) that starts exactly at the fitted linear teacher.
Heads consume the raw cached embeddings.

:class:`AlignmentModel` holds both heads plus SigLIP's learned scale and bias (what training
updates); :class:`HeadsAligner` puts a trained model behind the aligner interface.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..arrays import as_tensor, l2_normalize
from ..errors import ConfigError, closest
from .registry import register_aligner
from .teachers import LinearTeacher


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


class AlignmentModel(nn.Module):
    """Heads f, g plus SigLIP's learned logit scale (stored as log t) and bias.

    ``embed_images(x) = f(x)/‖f(x)‖`` and ``embed_texts(y) = g(y)/‖g(y)‖``; the paired SigLIP
    logits are ``t·cos + b``. With ``head="teacher"`` both heads start at ``teacher``'s maps.
    The teacher (if any) rides along for the divergence term and is never trained.
    """

    def __init__(
        self,
        d_x: int,
        d_y: int,
        dim: int = 1024,
        head: str = "linear",
        init_scale: float = 20.0,
        init_bias: float = -10.0,
        teacher: LinearTeacher | None = None,
    ) -> None:
        super().__init__()
        self.f = make_head(head, d_x, dim)
        self.g = make_head(head, d_y, dim)
        if head == "teacher" and teacher is not None:
            self.f.init_from_teacher(teacher.mu_a_, teacher.w_x_)  # type: ignore[operator]
            self.g.init_from_teacher(teacher.mu_b_, teacher.w_y_)  # type: ignore[operator]
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.teacher = teacher

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def embed_images(self, raw: Tensor) -> Tensor:
        return l2_normalize(self.f(raw))

    def embed_texts(self, raw: Tensor) -> Tensor:
        return l2_normalize(self.g(raw))


@register_aligner
class HeadsAligner:
    """Trained heads f, g (plus SigLIP scale/bias) behind the aligner interface."""

    kind: ClassVar[str] = "heads"

    def __init__(self, model: AlignmentModel, head: str = "linear") -> None:
        self.model = model.eval()
        self.head = head

    def fit(self, A: Any, B: Any) -> HeadsAligner:  # pragma: no cover - trained by a method
        raise NotImplementedError("heads are trained through sotalign.SOTAlign.fit")

    @torch.no_grad()
    def _encode(self, fn: Callable[[Tensor], Tensor], X: Any, batch: int = 8192) -> Tensor:
        dev = self.model.log_scale.device
        n = X.shape[0]
        outs = [fn(as_tensor(X[s : s + batch], device=dev)).cpu() for s in range(0, n, batch)]
        return torch.cat(outs) if outs else torch.empty(0, self.dim)

    @property
    def dim(self) -> int:
        return self._dims()[2]

    def _dims(self) -> tuple[int, int, int]:
        f_lin = [m for m in self.model.f.modules() if isinstance(m, torch.nn.Linear)]
        g_lin = [m for m in self.model.g.modules() if isinstance(m, torch.nn.Linear)]
        return f_lin[0].in_features, g_lin[0].in_features, f_lin[-1].out_features

    def encode_images(self, X: Any) -> Tensor:
        return self._encode(self.model.embed_images, X)

    def encode_texts(self, Y: Any) -> Tensor:
        return self._encode(self.model.embed_texts, Y)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def get_config(self) -> dict[str, Any]:
        d_x, d_y, dim = self._dims()
        return {"kind": self.kind, "d_x": d_x, "d_y": d_y, "dim": dim, "head": self.head}

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> HeadsAligner:
        model = AlignmentModel(config["d_x"], config["d_y"], config["dim"], config["head"])
        model.load_state_dict(state)
        return cls(model, config["head"])
