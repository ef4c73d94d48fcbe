"""Options of the entropic OT solvers: written once, validated once (SPEC §3).

Both configurations are frozen dataclasses whose ``__post_init__`` checks and normalises every
field, so a configuration is validated when it is built and never again: :func:`klot_embeddings`
called with a :class:`KLOTConfig` re-checks no option per training step. Wrong values end in one
line naming the option (:class:`~sotalign.errors.ConfigError`, with a "did you mean" for near
misses). Values coming from JSON/TOML are accepted where unambiguous: an int where a float is
expected, an integral float such as ``1e3`` where an int is expected; a bool is never a number.

Modes (the solver that runs, see :mod:`sotalign.ot`):

- ``"dense"``: stabilised scaling-domain Sinkhorn on the materialised n×m affinity;
- ``"tiled"``: online log-domain Sinkhorn that recomputes row tiles of the affinity (never an
  n×m matrix when the geometry is given by embeddings);
- ``"log"``: the reference log-domain Sinkhorn of SPEC §3 (tests and benchmarks);
- ``"auto"``: ``"dense"`` for a given matrix; for embeddings ``"dense"`` when its memory fits,
  else ``"tiled"`` (decided once per problem size and device, see :func:`~sotalign.ot.auto_mode`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from sotalign.checks import check_choice, check_float, check_int
from sotalign.errors import ConfigError, closest

__all__ = ["MODES", "KLOTConfig", "SinkhornConfig", "with_options"]

MODES: tuple[str, ...] = ("auto", "dense", "tiled", "log")
"""The values of ``mode``."""


def _tolerance(value: Any) -> float | None:
    if value is None:
        return None
    return check_float(
        "tol", value, lo=0.0, lo_open=True, example="1e-4, or None for a fixed number of iterations"
    )


def _put(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class SinkhornConfig:
    """Options of one entropic OT solve (:func:`sotalign.ot.sinkhorn`).

    Attributes:
        eps: entropic regularisation ε > 0 (in the units of the affinity ``K``).
        n_iter: Sinkhorn iterations (the maximum, over all ε-scaling stages, when ``tol`` is set).
        tol: stop once the L1 marginal error ``‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁`` (mass-1 plans) is at
            most ``tol``; ``None``: run exactly ``n_iter`` iterations.
        mode: ``"auto"``, ``"dense"``, ``"tiled"`` or ``"log"`` (see the module docstring).
    """

    eps: float = 0.05
    n_iter: int = 100
    tol: float | None = None
    mode: str = "auto"

    def __post_init__(self) -> None:
        _put(self, "eps", check_float("eps", self.eps, lo=0.0, lo_open=True, example="0.05"))
        _put(self, "n_iter", check_int("n_iter", self.n_iter, lo=1, example="100"))
        _put(self, "tol", _tolerance(self.tol))
        _put(self, "mode", check_choice("mode", self.mode, MODES))


@dataclass(frozen=True)
class KLOTConfig:
    """Options of the KLOT divergence ``KL(OT_ε*(K*) ‖ OT_ε(K))`` (two solves, SPEC §3).

    Attributes:
        eps: student ε (also the ε of the gradient ``(P − P*)/ε``, Theorem 5.1 / C.4).
        eps_teacher: teacher ε*.
        n_iter: Sinkhorn iterations of each solve (the maximum when ``tol`` is set).
        tol: L1 marginal-error tolerance of both solves (``None``: fixed ``n_iter``); with a
            tolerance the fast solvers also use ε-scaling and adaptive over-relaxation.
        mode: ``"auto"``, ``"dense"``, ``"tiled"`` or ``"log"`` (see the module docstring).
        tile_bytes: memory budget of one row tile of the tiled solver (bytes).
    """

    eps: float = 0.05
    eps_teacher: float = 0.01
    n_iter: int = 100
    tol: float | None = None
    mode: str = "auto"
    tile_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        _put(self, "eps", check_float("eps", self.eps, lo=0.0, lo_open=True, example="0.05"))
        _put(
            self,
            "eps_teacher",
            check_float("eps_teacher", self.eps_teacher, lo=0.0, lo_open=True, example="0.01"),
        )
        _put(self, "n_iter", check_int("n_iter", self.n_iter, lo=1, example="100"))
        _put(self, "tol", _tolerance(self.tol))
        _put(self, "mode", check_choice("mode", self.mode, MODES))
        _put(self, "tile_bytes", check_int("tile_bytes", self.tile_bytes, lo=1, example="2**28"))


C = TypeVar("C", SinkhornConfig, KLOTConfig)


def with_options(cls: type[C], config: C | None, options: dict[str, Any]) -> C:
    """``config`` (no check at all) or, with ``options`` (field names), a new validated config.

    ``config=None`` starts from the defaults. Unknown option names and a ``config`` of the wrong
    type end in a one-line :class:`~sotalign.errors.ConfigError`.
    """
    if config is not None and not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    if not options:
        return config if config is not None else cls()
    names = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in names:
            raise ConfigError(
                f"unknown {cls.__name__} option '{key}'{closest(key, names)}; "
                f"options are {', '.join(names)}"
            )
    return dataclasses.replace(config, **options) if config is not None else cls(**options)
