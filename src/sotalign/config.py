"""The one typed configuration tree of :class:`sotalign.SOTAlign`, defaulted in one place.

::

    SOTAlignConfig            what to fit and how to select it (method, teacher, α, …)
    └── train: TrainConfig    one training run (steps, lr, batches, losses, …)
        └── klot: KLOTConfig  KLOT's entropic OT solver (ε, ε*, iterations, tol, mode)

Every dataclass is frozen and checks its own fields when it is built, so a configuration is
validated once, where it is made, and every wrong type or value ends in one line naming the
parameter. Users see the tree through flat names — the keywords of ``SOTAlign(...)``, the keys
of ``--config`` files and of ``--set key=value`` — mapped onto it by :data:`FLAT`: a field's
flat name is its own, except for the solver's, which carry their context
(``sinkhorn_iters`` → ``train.klot.n_iter``, ``sinkhorn_tol`` → ``train.klot.tol``,
``ot_mode`` → ``train.klot.mode``). :data:`DEFAULTS` is the only place a default lives;
``SOTAlign.__init__``'s signature reads its defaults from there.

The training schedule comes from a **recipe** (``recipe``: ``auto``, ``paper`` or ``cpu``; see
:data:`RECIPES`): the dataclass defaults are the paper's recipe, sized for one GPU; the ``cpu``
recipe is the schedule that reached the same quality on the development splits of the bundled
benchmarks in minutes on two CPU cores. ``auto`` picks ``paper`` when the run's device is CUDA and
``cpu`` otherwise. A recipe only fills the parameters that were not given: an explicit value
(``SOTAlign(steps=2000)``, ``--set steps=2000``, a config file) always wins.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .checks import check_bool, check_choice, check_float, check_int, check_optional_str
from .errors import ConfigError, InputError, closest
from .models import HEADS, TEACHERS
from .ot import KLOTConfig
from .training import TrainConfig

try:  # Python >= 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

__all__ = [
    "DEFAULTS",
    "FLAT",
    "HEAD_CANDIDATES",
    "PARAM_NAMES",
    "RECIPES",
    "RECIPE_FIELDS",
    "SOTAlignConfig",
    "load_params",
    "parse_value",
]


def _check_alpha(value: Any) -> float | str:
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, str):
        raise ConfigError(f"alpha must be a number >= 0 or 'auto', got {value!r}")
    return check_float("alpha", value, lo=0.0)


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(name: str, value: Any) -> float | None:
    """Seconds from a number (seconds) or a string ``90s``, ``10m``, ``1.5h``; ``None`` stays."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, str):
        text = value.strip().lower()
        for unit in sorted(_UNITS, key=len, reverse=True):
            if text.endswith(unit):
                try:
                    seconds = float(text[: -len(unit)]) * _UNITS[unit]
                except ValueError:
                    seconds = None
                break
        else:
            try:
                seconds = float(text)
            except ValueError:
                seconds = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{name} must be a positive duration such as 600, 90s, 10m or 1.5h, got {value!r}"
        )
    return seconds


def _check_teacher_reg(value: Any) -> float | str:
    if isinstance(value, str):
        if value == "auto":
            return value
        raise ConfigError(f"teacher_reg must be a number >= 0 or 'auto', got {value!r}")
    return check_float("teacher_reg", value, lo=0.0)


def _check_reg_grid(value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(
            f"teacher_reg_grid must be a non-empty list of numbers >= 0, got {value!r}"
        )
    return tuple(check_float("teacher_reg_grid entry", v, lo=0.0) for v in value)


def _check_alpha_grid(value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"alpha_grid must be a non-empty list of numbers > 0, got {value!r}")
    return tuple(check_float("alpha_grid entry", v, lo=0.0, lo_open=True) for v in value)


@dataclass(frozen=True)
class SOTAlignConfig:
    """Hyper-parameters of :class:`sotalign.SOTAlign` above one training run.

    method: the registered method to fit (checked against the registry when fitting).
    teacher, teacher_reg: the linear teacher (``cca`` with ridge 0.1, ``procrustes``,
    ``contrastive``); ``teacher_reg="auto"`` selects the CCA ridge among ``teacher_reg_grid`` on
    the validation split of the pairs. dim, head: output width and head type (``"auto"``: the
    teacher-initialised and the linear head both compete in SOTAlign's selection). alpha: divergence
    weight, or ``"auto"`` to select it on validation among ``alpha_grid`` (with the teacher
    alone and α = 0). val_fraction: share of the pairs held out for selection; early_stopping:
    keep the best validation step; refit: retrain the selected candidate on all pairs.
    selection: ``halving`` trains the candidates by successive halving (all to a third of the
    steps, the best third to the end; :mod:`sotalign.methods.selection`), ``full`` trains
    every candidate to the end. progress:
    progress bars. checkpoint_dir: folder of resumable checkpoints of the final training.
    method_params: options of a baseline method. recipe: the schedule the unset parameters came
    from (``paper`` or ``cpu``; ``auto`` is resolved when the tree is built from flat names).
    budget: seconds (or ``"10m"``) the fit should take: the steps per training are planned to
    fit it (:mod:`sotalign.methods.plan`); ``None``: the configured steps. train:
    :class:`TrainConfig`.
    """

    method: str = "sotalign"
    teacher: str = "cca"
    teacher_reg: float | str = 0.1
    teacher_reg_grid: tuple[float, ...] = (0.1, 0.01, 0.001, 1.0)
    dim: int = 1024
    head: str = "linear"
    alpha: float | str = "auto"
    alpha_grid: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    val_fraction: float = 0.2
    early_stopping: bool = True
    refit: bool = True
    selection: str = "halving"
    progress: bool = True
    checkpoint_dir: str | None = None
    method_params: dict[str, Any] | None = None
    recipe: str = "auto"
    budget: float | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.method, str) or not self.method:
            raise ConfigError(f"method must be a method name, got {self.method!r}")
        put("teacher", check_choice("teacher", self.teacher, tuple(TEACHERS)))
        put("teacher_reg", _check_teacher_reg(self.teacher_reg))
        put("teacher_reg_grid", _check_reg_grid(self.teacher_reg_grid))
        put("dim", check_int("dim", self.dim, lo=1))
        put("head", check_choice("head", self.head, (*HEADS, "auto")))
        put("alpha", _check_alpha(self.alpha))
        put("alpha_grid", _check_alpha_grid(self.alpha_grid))
        put("val_fraction", check_float("val_fraction", self.val_fraction, lo=0.0))
        if self.val_fraction >= 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        put("early_stopping", check_bool("early_stopping", self.early_stopping))
        put("refit", check_bool("refit", self.refit))
        put("selection", check_choice("selection", self.selection, ("halving", "full")))
        put("progress", check_bool("progress", self.progress))
        put("checkpoint_dir", check_optional_str("checkpoint_dir", self.checkpoint_dir))
        if self.method_params is not None and not isinstance(self.method_params, Mapping):
            raise ConfigError(
                f'method_params must be a mapping such as {{"k": 10}}, got {self.method_params!r}'
            )
        put("recipe", check_choice("recipe", self.recipe, ("auto", *RECIPES)))
        put("budget", parse_duration("budget", self.budget))
        if isinstance(self.train, Mapping):
            put("train", TrainConfig(**self.train))
        elif not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {self.train!r}")

    # -- the flat view -------------------------------------------------------------------
    @classmethod
    def from_flat(cls, params: Mapping[str, Any]) -> SOTAlignConfig:
        """Build (and so validate) the tree from flat names; unknown names are refused.

        The parameters of :data:`RECIPE_FIELDS` that are missing or ``None`` are filled from
        the recipe (``params["recipe"]``, default ``auto``: :func:`resolve_recipe`)."""
        for key in params:
            if key not in FLAT:
                raise ConfigError(f"unknown parameter '{key}'{closest(key, PARAM_NAMES)}")
        params = apply_recipe(params)
        groups: dict[tuple[str, ...], dict[str, Any]] = {(): {}, ("train",): {}}
        groups[("train", "klot")] = {}
        for key, value in params.items():
            *where, name = FLAT[key]
            groups[tuple(where)][name] = value
        try:
            klot = KLOTConfig(**groups[("train", "klot")])
            train = TrainConfig(**groups[("train",)], klot=klot)
        except TypeError as exc:  # pragma: no cover - FLAT only holds real field names
            raise ConfigError(str(exc)) from exc
        return cls(**groups[()], train=train)

    def to_flat(self) -> dict[str, Any]:
        """The flat names and values of this tree."""
        out: dict[str, Any] = {}
        for key, path in FLAT.items():
            value: Any = self
            for name in path:
                value = getattr(value, name)
            out[key] = value
        return out

    def replace_train(self, **changes: Any) -> TrainConfig:
        """``self.train`` with ``changes`` (validated again)."""
        return dataclasses.replace(self.train, **changes)


_KLOT_FLAT = {
    "eps": "eps",
    "eps_teacher": "eps_teacher",
    "n_iter": "sinkhorn_iters",
    "tol": "sinkhorn_tol",
    "mode": "ot_mode",
}


def _flat_map() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for f in fields(SOTAlignConfig):
        if f.name != "train":
            out[f.name] = (f.name,)
    for f in fields(TrainConfig):
        if f.name != "klot":
            out[f.name] = ("train", f.name)
    for f in fields(KLOTConfig):
        if f.name in _KLOT_FLAT:
            out[_KLOT_FLAT[f.name]] = ("train", "klot", f.name)
    return out


FLAT: dict[str, tuple[str, ...]] = _flat_map()
"""Flat parameter name → path in the tree (``"sinkhorn_iters"`` → ``("train", "klot",
"n_iter")``)."""
PARAM_NAMES: tuple[str, ...] = tuple(FLAT)
HEAD_CANDIDATES: tuple[str, ...] = ("teacher", "linear")
"""The heads that compete in SOTAlign's selection with ``head="auto"``."""
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},  # the dataclass defaults: Lion, 2,000 steps, lr 1e-4, d = 1024, batch 4,096
    "cpu": {
        "steps": 300,
        "optimizer": "adamw",
        "lr": 1e-3,
        "dim": 512,
        "batch_unpaired": 1024,
        "alpha_grid": (1.0, 0.1),
    },
}
"""Training schedules by name; each fills the parameters a user did not set. ``cpu``: the
protocol chosen on the development splits (``benchmarks/results/wordnet_dev.md``,
``emoji_dev.md``) — 300 AdamW steps at lr 1e-3, 512-d heads, unpaired batches of 1,024,
α among {1, 0.1} (α from 1 to 10 scored alike there) — plus, for the SOTAlign methods,
teacher-initialised heads (:data:`TEACHER_HEAD_RECIPES`)."""

TEACHER_HEAD_RECIPES = frozenset({"cpu"})
"""Recipes under which the SOTAlign methods (``sotalign*``, which fit a teacher) start their
heads at the teacher's maps (``head="teacher"``; +0.6 / +3.9 points on the WordNet development
split at 200 / 1,000 pairs)."""

RECIPE_FIELDS: frozenset[str] = frozenset(
    {"head"} | {k for recipe in RECIPES.values() for k in recipe}
)
"""The parameters a recipe may fill (``None`` for them means "the recipe's value")."""


def resolve_recipe(recipe: Any, device: Any) -> str:
    """``auto`` → ``paper`` on a CUDA device (``device`` ``cuda…``, or ``auto`` with CUDA
    available), else ``cpu``; a named recipe is returned as is."""
    if recipe != "auto":
        return check_choice("recipe", recipe, tuple(RECIPES))
    dev = str(device if device is not None else "auto")
    if dev == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    return "paper" if dev.startswith("cuda") else "cpu"


def apply_recipe(params: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``params`` with the unset recipe parameters filled and ``recipe`` resolved."""
    out = {k: v for k, v in params.items() if not (k in RECIPE_FIELDS and v is None)}
    name = resolve_recipe(out.get("recipe", "auto"), out.get("device", "auto"))
    out["recipe"] = name
    fill = dict(RECIPES[name])
    method = out.get("method", DEFAULTS.method)
    if name in TEACHER_HEAD_RECIPES and isinstance(method, str) and method.startswith("sotalign"):
        fill["head"] = "teacher"
    for key, value in fill.items():
        out.setdefault(key, value)
    return out


DEFAULTS = SOTAlignConfig()
"""The dataclass defaults: the paper's recipe (``recipe`` left at ``auto``)."""
"""The defaults of every parameter (the paper's, SPEC §2-§3)."""


# ----------------------------------------------------------------------------- user input


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, null, lists, objects),
    else the string itself (``--set teacher=procrustes``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):  # pragma: no cover - json: NaN
        raise ConfigError(f"'{text}' is not a finite number")
    return value


def load_params(config: Path | None, sets: Sequence[str] | None) -> dict[str, Any]:
    """Merge a JSON/TOML config file and ``--set key=value`` overrides into flat parameters.

    The merged parameters are checked by building the configuration tree once, so a bad key,
    type or value ends here with one line (before any data is read)."""
    params: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise InputError(f"{config}: config file not found")
        try:
            text = config.read_text()
            if config.suffix == ".toml" and tomllib is None:  # pragma: no cover - Python 3.10
                raise InputError(f"{config}: TOML configs need Python >= 3.11; use JSON")
            loaded = tomllib.loads(text) if config.suffix == ".toml" else json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{config}: cannot parse config ({exc})") from exc
        if not isinstance(loaded, dict):
            raise InputError(f"{config}: the config must be a mapping of parameter names")
        params.update(loaded)
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        params[key.strip()] = parse_value(value.strip())
    for key in params:
        if key not in FLAT:
            raise ConfigError(
                f"unknown config key '{key}'{closest(key, PARAM_NAMES)};"
                " see `sotalign fit --help` for the list"
            )
    SOTAlignConfig.from_flat(params)
    for key in ("alpha_grid", "teacher_reg_grid"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    return params
