"""The estimator: ``SOTAlign(...).fit(A, B, X, Y)`` → ``encode_images`` / ``encode_texts``.

Hyper-parameters live only in ``__init__`` and are stored as given (scikit-learn style);
learned state sits in attributes ending in ``_``. ``fit`` returns ``self``.

Methods (``method=``):

* ``sotalign`` (default) — teacher fitted on the pairs, then heads trained with
  ``L_sup + α·KLOT`` on pairs plus unpaired pools (SPEC §2-§3).
* ``sail`` — SigLIP on the pairs only (linear heads); ``semisup_sail`` — the rectangular SigLIP
  with unpaired samples as extra negatives.
* ``procrustes``, ``cca``, ``contrastive`` — a linear teacher used alone.
* further baselines register themselves from :mod:`sotalign.baselines`.

Model selection. With ``alpha="auto"`` (the default), a validation split is carved from the
pairs only (``val_fraction``); SOTAlign's candidates — the teacher alone, the heads without the
divergence (α = 0) and every α of ``alpha_grid`` — are each trained on the remaining pairs and
scored by validation mean R@1 (ties broken by the mean reciprocal rank, which uses the whole
ranking and so separates candidates that a small validation gallery scores alike); the best
candidate is then refitted on all pairs (``refit``), along the same learning-rate schedule and
stopped at the step that was best on validation. So the default never ends below the best of
its own candidates on validation. Trained baselines (SAIL and the others) early-stop and refit
the same way. The test split is never seen. ``selection_`` holds the table of candidates and
scores.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .data import TrainData
from .errors import ConfigError, InputError, closest
from .teachers import (
    Aligner,
    aligner_from_state,
    as_tensor,
    make_teacher,
    register_aligner,
)
from .train import (
    AlignmentModel,
    Objective,
    TrainConfig,
    Trainer,
    TrainResult,
    ValData,
    objective_from_config,
)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# ----------------------------------------------------------------------------- heads as an aligner


@register_aligner
class HeadsAligner:
    """Trained heads f, g (plus SigLIP scale/bias) behind the :class:`Aligner` interface."""

    kind: ClassVar[str] = "heads"

    def __init__(self, model: AlignmentModel, head: str = "linear") -> None:
        self.model = model.eval()
        self.head = head

    def fit(self, A: Any, B: Any) -> HeadsAligner:  # pragma: no cover - trained by SOTAlign
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


# ----------------------------------------------------------------------------- method registry


FitFn = Callable[["SOTAlign", TrainData], Aligner]


@dataclass
class MethodSpec:
    """A named way of fitting an aligner: ``fit(estimator, data) -> Aligner``."""

    name: str
    summary: str
    fit: FitFn
    uses_unpaired: bool = False


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Make ``spec`` available as ``SOTAlign(method=spec.name)`` and ``sotalign fit --method``."""
    METHODS[spec.name] = spec
    return spec


def available_methods() -> dict[str, MethodSpec]:
    """All registered methods, including the baselines of :mod:`sotalign.baselines`."""
    with contextlib.suppress(ImportError):
        import sotalign.baselines  # noqa: F401  (registers its methods)
    return METHODS


# ----------------------------------------------------------------------------- the estimator


@dataclass
class _Params:
    """All hyper-parameters of :class:`SOTAlign` with their defaults (see its docstring)."""

    method: str = "sotalign"
    teacher: str = "cca"
    teacher_reg: float = 0.1
    dim: int = 1024
    head: str = "linear"
    sup_loss: str = "siglip"
    divergence: str = "klot"
    alpha: float | str = "auto"
    alpha_grid: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    eps: float = 0.05
    eps_teacher: float = 0.01
    sinkhorn_iters: int = 100
    sinkhorn_tol: float | None = None
    ot_mode: str = "auto"
    steps: int = 2000
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup: float = 0.1
    optimizer: str = "lion"
    batch_pairs: int = 10_000
    batch_unpaired: int = 4096
    val_fraction: float = 0.2
    early_stopping: bool = True
    refit: bool = True
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    method_params: dict[str, Any] | None = None


PARAM_NAMES = tuple(f.name for f in fields(_Params))
_DEFAULTS = _Params()


class SOTAlign:
    """Semi-supervised alignment of two frozen encoders (SOTAlign, SPEC §1-§3).

    Parameters (all optional; paper defaults)
    ------------------------------------------
    method: ``sotalign`` | ``sail`` | ``semisup_sail`` | ``cca`` | ``procrustes`` |
        ``contrastive`` | a registered baseline.
    teacher, teacher_reg: linear teacher (``cca`` with ridge 0.1, ``procrustes``,
        ``contrastive``).
    dim, head: output width (1024) and head type (``linear`` or ``mlp``).
    sup_loss: ``siglip`` (entry-mean SigLIP on the pairs), ``semisup_siglip`` or ``infonce``.
    divergence: ``klot`` (default), ``cka``, ``ginfonce`` or ``none``.
    alpha: weight of the divergence, or ``"auto"`` to select on validation over ``alpha_grid``
        (together with the teacher alone and α = 0).
    eps, eps_teacher, sinkhorn_iters, sinkhorn_tol, ot_mode: KLOT's entropic OT (0.05, 0.01,
        100 iterations, no tolerance, dense/tiled chosen automatically).
    steps, lr, weight_decay, warmup, optimizer: Lion, 2000 steps, lr 1e-4, wd 1e-5, 10 %
        warm-up then cosine.
    batch_pairs, batch_unpaired: paired batch cap (all pairs up to 10k) and unpaired batch size.
    val_fraction: share of the pairs held out for selection when selection runs.
    early_stopping: keep the weights with the best validation score during training.
    refit: after selection, retrain the chosen candidate on all pairs.
    seed, device (``auto``/``cpu``/``cuda``), progress (progress bars),
    checkpoint_dir, checkpoint_every: periodic resumable checkpoints of the final training.
    method_params: extra options of a baseline method.
    """

    def __init__(self, **params: Any) -> None:
        unknown = [k for k in params if k not in PARAM_NAMES]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"unknown parameter '{k}'{closest(k, PARAM_NAMES)}")
        for name in PARAM_NAMES:
            setattr(self, name, params.get(name, getattr(_DEFAULTS, name)))

    # scikit-learn style parameter access
    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def set_params(self, **params: Any) -> SOTAlign:
        for k, v in params.items():
            if k not in PARAM_NAMES:
                raise ConfigError(f"unknown parameter '{k}'{closest(k, PARAM_NAMES)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != getattr(_DEFAULTS, k)}
        return f"SOTAlign({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- helpers used by the methods ------------------------------------------------------
    def train_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`TrainConfig` of this estimator (``alpha`` must be numeric here)."""
        alpha = overrides.pop("alpha", self.alpha)
        if isinstance(alpha, str):
            alpha = 0.0
        kw = dict(
            steps=self.steps,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup=self.warmup,
            optimizer=self.optimizer,
            batch_pairs=self.batch_pairs,
            batch_unpaired=self.batch_unpaired,
            sup_loss=self.sup_loss,
            divergence=self.divergence,
            alpha=float(alpha),
            eps=self.eps,
            eps_teacher=self.eps_teacher,
            sinkhorn_iters=self.sinkhorn_iters,
            sinkhorn_tol=self.sinkhorn_tol,
            ot_mode=self.ot_mode,
            seed=self.seed,
            device=self.device,
            checkpoint_every=self.checkpoint_every,
        )
        kw.update(overrides)
        return TrainConfig(**kw).validate()

    def fit_teacher(self, A: Any, B: Any, name: str | None = None) -> Any:
        """Fit the configured (or named) linear teacher on pairs."""
        name = name or self.teacher
        kwargs: dict[str, Any] = {}
        if name == "cca":
            kwargs["reg"] = self.teacher_reg
        if name == "contrastive":
            kwargs["seed"] = self.seed
        return make_teacher(name, **kwargs).fit(A, B)

    def carve_validation(self, data: TrainData) -> tuple[TrainData, ValData | None]:
        """Hold out ``val_fraction`` of the pairs for early stopping (not below 10 pairs).

        Returns the training data (unpaired pools unchanged) and the validation pairs, or
        ``(data, None)`` when early stopping is off or the pairs are too few.
        """
        if not (self.early_stopping and self.val_fraction > 0 and data.n_pairs >= 10):
            return data, None
        tr, va = split_pairs(data.n_pairs, self.val_fraction, self.seed)
        return _subset(data, tr), _val_data(data, va)

    def train_heads(
        self,
        data: TrainData,
        objective: Objective,
        *,
        teacher: Any = None,
        val: ValData | None = None,
        config: TrainConfig | None = None,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        stop_at: int | None = None,
    ) -> tuple[HeadsAligner, TrainResult]:
        """Train fresh heads on ``data`` with ``objective`` (seeded); early-stop on ``val``;
        ``stop_at`` ends at that step on the schedule of ``config.steps``."""
        cfg = config or self.train_config()
        torch.manual_seed(cfg.seed)
        model = AlignmentModel(
            data.images.dim, data.texts.dim, self.dim, self.head, teacher=teacher
        )
        trainer = Trainer(
            model,
            objective,
            data,
            cfg,
            val=val,
            checkpoint_dir=checkpoint_dir,
            progress=self.progress,
        )
        result = trainer.run(resume=resume, stop_at=stop_at)
        if val is not None and self.early_stopping:
            trainer.restore_best()
        model.teacher = None
        return HeadsAligner(model.cpu(), self.head), result

    # -- fit ------------------------------------------------------------------------------
    def fit(
        self,
        paired_images: Any,
        paired_texts: Any,
        unpaired_images: Any = None,
        unpaired_texts: Any = None,
        *,
        resume: bool = False,
        check_inputs: bool = True,
    ) -> SOTAlign:
        """Fit on pairs (row i of ``paired_images`` ↔ row i of ``paired_texts``) and optional
        unpaired pools. Arrays may be numpy arrays, memmaps or torch tensors. Returns ``self``.

        ``resume`` continues from the checkpoints in ``checkpoint_dir``; ``check_inputs=False``
        skips the input checks (shapes, dtypes, NaN scan) when the caller already ran them."""
        methods = available_methods()
        if self.method not in methods:
            raise ConfigError(
                f"unknown method '{self.method}'{closest(self.method, list(methods))};"
                f" choose one of {', '.join(sorted(methods))}"
            )
        if check_inputs:
            _validate_arrays(paired_images, paired_texts, unpaired_images, unpaired_texts)
        self._resume = resume
        t0 = time.perf_counter()
        data = TrainData.from_arrays(paired_images, paired_texts, unpaired_images, unpaired_texts)
        self.selection_: list[dict[str, Any]] = []
        self.train_history_: list[dict[str, float]] = []
        self.aligner_ = methods[self.method].fit(self, data)
        self.n_pairs_ = data.n_pairs
        self.n_unpaired_ = (
            (len(data.unpaired_images), len(data.unpaired_texts)) if data.has_unpaired else (0, 0)
        )
        self.d_x_, self.d_y_ = data.images.dim, data.texts.dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # -- inference ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "aligner_"):
            raise RuntimeError("this SOTAlign model is not fitted; call fit() or load() first")

    def _encode(self, what: str, X: Any) -> Any:
        self._check_fitted()
        fn = self.aligner_.encode_images if what == "images" else self.aligner_.encode_texts
        d = self.d_x_ if what == "images" else self.d_y_
        is_torch = isinstance(X, Tensor)
        arr = X if is_torch else np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise InputError(
                f"{what} must be a 2-D array with {d} columns, got shape {tuple(arr.shape)}"
            )
        out = fn(arr).float()
        return out if is_torch else out.numpy()

    def encode_images(self, X: Any) -> Any:
        """Aligned, L2-normalised image embeddings (numpy in → numpy out, torch → torch)."""
        return self._encode("images", X)

    def encode_texts(self, Y: Any) -> Any:
        """Aligned, L2-normalised text embeddings (numpy in → numpy out, torch → torch)."""
        return self._encode("texts", Y)

    # open_clip / CLIP_benchmark duck type
    encode_image = encode_images
    encode_text = encode_texts

    def score(self, images: Any, texts: Any, text_to_image: Any = None) -> dict[str, Any]:
        """Retrieval metrics (percent) of the aligned embeddings; see :mod:`sotalign.eval`."""
        from .eval import retrieval_metrics

        return retrieval_metrics(
            self.encode_images(images), self.encode_texts(texts), text_to_image
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Save to a folder: ``config.json`` + ``model.safetensors`` (written atomically)."""
        import safetensors.torch as st

        from .io import atomic_write, write_json_atomic

        self._check_fitted()
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise InputError(
                f"{path}: folder exists and is not empty; pass overwrite=True "
                "(--overwrite) or choose another folder"
            )
        path.mkdir(parents=True, exist_ok=True)
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        cfg = {
            "format_version": FORMAT_VERSION,
            "library": "sotalign",
            "library_version": __version__,
            "params": params,
            "aligner": self.aligner_.get_config(),
            "d_x": self.d_x_,
            "d_y": self.d_y_,
            "n_pairs": self.n_pairs_,
            "n_unpaired": list(self.n_unpaired_),
            "selection": self.selection_,
            "fit_seconds": self.fit_seconds_,
        }
        state = {k: v.contiguous() for k, v in self.aligner_.state_dict().items()}
        with atomic_write(path / WEIGHTS_FILE, "wb") as fh:
            fh.write(st.save(state, metadata={"format": "pt"}))
        write_json_atomic(path / CONFIG_FILE, cfg)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SOTAlign:
        """Load a model folder written by :meth:`save` (never unpickles anything)."""
        from .io import check_format_version, load_safetensors

        path = Path(path)
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise InputError(f"{path}: not a sotalign model folder (no {CONFIG_FILE})")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{cfg_path}: unreadable JSON ({exc})") from exc
        if not isinstance(cfg, dict) or not isinstance(cfg.get("params"), dict):
            raise InputError(f"{cfg_path}: not a sotalign model config (no 'params' mapping)")
        check_format_version(cfg.get("format_version"), FORMAT_VERSION, path)
        state, _ = load_safetensors(path / WEIGHTS_FILE)
        params = {k: v for k, v in cfg["params"].items() if k in PARAM_NAMES}
        if isinstance(params.get("alpha_grid"), list):
            params["alpha_grid"] = tuple(params["alpha_grid"])
        obj = cls(**params)
        obj.aligner_ = aligner_from_state(cfg["aligner"], state)
        obj.d_x_, obj.d_y_ = int(cfg["d_x"]), int(cfg["d_y"])
        obj.n_pairs_ = cfg.get("n_pairs", 0)
        obj.n_unpaired_ = tuple(cfg.get("n_unpaired", (0, 0)))
        obj.selection_ = cfg.get("selection", [])
        obj.fit_seconds_ = cfg.get("fit_seconds", float("nan"))
        return obj


# ----------------------------------------------------------------------------- validation


def _validate_arrays(A: Any, B: Any, X: Any, Y: Any) -> None:
    """Shape, dtype and NaN checks of the training arrays (see :mod:`sotalign.io`)."""
    from .io import validate_training_inputs

    validate_training_inputs(A, B, X, Y)


def split_pairs(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of pair indices into (train, validation); validation has ≥ 2 pairs."""
    rng = np.random.Generator(np.random.PCG64(seed + 7919))
    perm = rng.permutation(n)
    n_val = max(2, round(n * val_fraction))
    if n - n_val < 2:
        raise InputError(
            f"{n} pairs are too few to hold out a validation split; "
            "pass alpha=<number> (e.g. --set alpha=1e-3) to skip selection"
        )
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _subset(data: TrainData, idx: np.ndarray) -> TrainData:
    return TrainData.from_arrays(
        data.images.array[idx],
        data.texts.array[idx],
        None if data.unpaired_images is None else data.unpaired_images.array,
        None if data.unpaired_texts is None else data.unpaired_texts.array,
    )


def _val_data(data: TrainData, idx: np.ndarray) -> ValData:
    return ValData(data.images.gather(idx), data.texts.gather(idx))


def _teacher_score(teacher: Any, val: ValData) -> tuple[float, float]:
    """(mean R@1, MRR) of a fitted aligner on the validation pairs."""
    from .eval import paired_rank_metrics

    m = paired_rank_metrics(teacher.encode_images(val.images), teacher.encode_texts(val.texts))
    return m["mean_R@1"], m["MRR"]


# ----------------------------------------------------------------------------- core methods


def _fit_sotalign(est: SOTAlign, data: TrainData, divergence: str | None = None) -> Aligner:
    """SOTAlign: teacher on pairs, then heads with L_sup + α·D; α selected on validation.

    ``divergence`` replaces ``est.divergence`` (the Table 1 methods)."""
    div = est.divergence if divergence is None else divergence
    uses_div = div != "none" and data.has_unpaired
    auto = isinstance(est.alpha, str)
    if isinstance(est.alpha, str) and est.alpha != "auto":
        raise ConfigError(f"alpha must be a number or 'auto', got {est.alpha!r}")
    if not uses_div and not auto and float(est.alpha) > 0:
        warnings.warn(
            "no unpaired data (or divergence 'none'): training SigLIP on pairs only", stacklevel=3
        )
    if not auto:
        train_data, val = est.carve_validation(data)
        teacher = (
            est.fit_teacher(train_data.images.array, train_data.texts.array) if uses_div else None
        )
        cfg = est.train_config(divergence=div)
        aligner, result = est.train_heads(
            train_data,
            objective_from_config(cfg),
            teacher=teacher,
            val=val,
            config=cfg,
            checkpoint_dir=est.checkpoint_dir,
            resume=getattr(est, "_resume", False),
        )
        est.train_history_ = result.history
        return aligner

    # alpha="auto": select among the teacher alone, α = 0 and the α grid on validation.
    tr, va = split_pairs(data.n_pairs, est.val_fraction, est.seed)
    train_data, val = _subset(data, tr), _val_data(data, va)
    teacher = est.fit_teacher(train_data.images.array, train_data.texts.array)
    sel_file = Path(est.checkpoint_dir) / "selection.json" if est.checkpoint_dir else None
    if getattr(est, "_resume", False) and sel_file is not None and sel_file.is_file():
        cands = json.loads(sel_file.read_text())  # selection of the interrupted run
    else:
        cands = _select_candidates(est, train_data, val, teacher, uses_div, div)
        if sel_file is not None:
            from .io import write_json_atomic

            write_json_atomic(sel_file, cands)
    best = next(c for c in cands if c["selected"])
    est.selection_ = cands
    if best["alpha"] is None:  # the teacher alone wins
        return est.fit_teacher(data.images.array, data.texts.array) if est.refit else teacher
    if not est.refit:
        cfg = est.train_config(alpha=best["alpha"], divergence=div)
        aligner, res = est.train_heads(
            train_data, objective_from_config(cfg), teacher=teacher, val=val, config=cfg
        )
        est.train_history_ = res.history
        return aligner
    # Refit on all pairs along the same schedule, stopping at the step best on validation.
    full_teacher = est.fit_teacher(data.images.array, data.texts.array)
    cfg = est.train_config(alpha=best["alpha"], divergence=div)
    aligner, res = est.train_heads(
        data,
        objective_from_config(cfg),
        teacher=full_teacher,
        config=cfg,
        checkpoint_dir=est.checkpoint_dir,
        resume=getattr(est, "_resume", False),
        stop_at=best["best_step"],
    )
    est.train_history_ = res.history
    return aligner


def _select_candidates(
    est: SOTAlign,
    train_data: TrainData,
    val: ValData,
    teacher: Any,
    uses_div: bool,
    divergence: str,
) -> list[dict[str, Any]]:
    """Score the teacher alone, α = 0 and each α of the grid on validation; mark the best.

    Candidates compare by (mean R@1, MRR) on validation; exact ties keep the earlier (simpler)
    candidate."""
    t_r1, t_mrr = _teacher_score(teacher, val)
    cands: list[dict[str, Any]] = [
        {
            "candidate": f"teacher:{est.teacher}",
            "alpha": None,
            "val_mean_R@1": t_r1,
            "val_MRR": t_mrr,
            "best_step": None,
        }
    ]
    alphas = [0.0] + ([float(a) for a in est.alpha_grid] if uses_div else [])
    for a in alphas:
        cfg = est.train_config(alpha=a, divergence=divergence)
        _, res = est.train_heads(
            train_data, objective_from_config(cfg), teacher=teacher, val=val, config=cfg
        )
        cands.append(
            {
                "candidate": f"alpha={a:g}",
                "alpha": a,
                "val_mean_R@1": res.best_score,
                "val_MRR": res.best_mrr,
                "best_step": res.best_step,
            }
        )
    from .eval import selection_key

    best = max(cands, key=lambda c: selection_key(c["val_mean_R@1"], c.get("val_MRR")))
    for c in cands:
        c["selected"] = c is best
    return cands


def train_selected(
    est: SOTAlign,
    data: TrainData,
    build: Callable[[TrainData], tuple[TrainData, Objective]],
    config: TrainConfig | None = None,
    **overrides: Any,
) -> Aligner:
    """Train heads early-stopped on a validation split carved from the pairs, then refit.

    ``build(pairs_data)`` returns the data the trainer sees and the objective for a given set
    of pairs (objectives such as NNCLR's depend on the pairs). With validation and ``refit``,
    a first run on the training part finds the best step on validation, and a second run on
    all pairs follows the same schedule and stops at that step (the final model sees every
    pair, as SOTAlign's refit does); without validation the single run is the model. Only the
    final run is checkpointed. ``config`` (default: the estimator's, without divergence, with
    ``overrides``) is the training configuration of both runs.
    """
    cfg = config or est.train_config(alpha=0.0, divergence="none", **overrides)
    train_part, val = est.carve_validation(data)
    final = val is None or not est.refit
    tr_data, objective = build(train_part)
    aligner, res = est.train_heads(
        tr_data,
        objective,
        val=val,
        config=cfg,
        checkpoint_dir=est.checkpoint_dir if final else None,
        resume=getattr(est, "_resume", False) and final,
    )
    est.train_history_ = res.history
    if val is not None:
        est.selection_ = [
            {
                "candidate": est.method,
                "alpha": None,
                "val_mean_R@1": res.best_score,
                "val_MRR": res.best_mrr,
                "best_step": res.best_step,
                "selected": True,
            }
        ]
    if final:
        return aligner
    all_data, objective = build(data)
    aligner, res = est.train_heads(
        all_data,
        objective,
        config=cfg,
        checkpoint_dir=est.checkpoint_dir,
        resume=getattr(est, "_resume", False),
        stop_at=res.best_step,
    )
    est.train_history_ = res.history
    return aligner


def _fit_sail(est: SOTAlign, data: TrainData, sup_loss: str = "siglip") -> Aligner:
    """SAIL: SigLIP on the pairs only (heads of the same shape), early-stopped on validation,
    then refitted on all pairs for the best number of steps."""
    cfg = est.train_config(alpha=0.0, sup_loss=sup_loss, divergence="none")
    objective = objective_from_config(cfg)

    def build(d: TrainData) -> tuple[TrainData, Objective]:
        return (TrainData(d.images, d.texts) if sup_loss == "siglip" else d), objective

    return train_selected(est, data, build, cfg)


def _teacher_method(name: str) -> FitFn:
    def fit(est: SOTAlign, data: TrainData) -> Aligner:
        return est.fit_teacher(data.images.array, data.texts.array, name)

    return fit


register_method(
    MethodSpec(
        "sotalign",
        "teacher + heads with SigLIP + α·KLOT (default)",
        _fit_sotalign,
        uses_unpaired=True,
    )
)


def _divergence_method(divergence: str) -> FitFn:
    """SOTAlign with another divergence in place of ``est.divergence`` (the paper's Table 1)."""

    def fit(est: SOTAlign, data: TrainData) -> Aligner:
        return _fit_sotalign(est, data, divergence)

    return fit


for _div, _summary in (
    ("cka", "SOTAlign with CKA between K and K* instead of KLOT (Table 1)"),
    ("ginfonce", "SOTAlign with generalised InfoNCE instead of KLOT (Table 1)"),
):
    register_method(
        MethodSpec(f"sotalign_{_div}", _summary, _divergence_method(_div), uses_unpaired=True)
    )
register_method(MethodSpec("sail", "SigLIP on the pairs only (SAIL, linear heads)", _fit_sail))
register_method(
    MethodSpec(
        "semisup_sail",
        "SigLIP with unpaired samples as extra negatives",
        lambda est, data: _fit_sail(est, data, "semisup_siglip"),
        uses_unpaired=True,
    )
)
for _name, _summary in (
    ("cca", "ridge CCA teacher alone"),
    ("procrustes", "orthogonal Procrustes teacher alone"),
    ("contrastive", "linear SigLIP teacher alone"),
):
    register_method(MethodSpec(_name, _summary, _teacher_method(_name)))

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "HeadsAligner",
    "MethodSpec",
    "SOTAlign",
    "available_methods",
    "register_method",
]
