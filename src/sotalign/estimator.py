"""The estimator: ``SOTAlign(...).fit(A, B, X, Y)`` → ``encode_images`` / ``encode_texts``.

Scikit-learn style: every hyper-parameter is a keyword of ``__init__``, stored as given and
checked once, when :meth:`SOTAlign.fit` builds the typed configuration tree
(:class:`sotalign.config.SOTAlignConfig`, whose defaults the signature reads); learned state
sits in attributes ending in ``_``; ``fit`` returns ``self``.

The work is done by a registered method (:mod:`sotalign.methods`): ``sotalign`` (default) —
teacher fitted on the pairs, then heads trained with ``L_sup + α·KLOT`` on pairs plus unpaired
pools (SPEC §2-§3); ``sail``, ``semisup_sail``; the teachers alone (``procrustes``, ``cca``,
``contrastive``); the baselines of SPEC §7. With ``alpha="auto"`` a validation split is carved
from the pairs only and the teacher alone, α = 0 and every α of ``alpha_grid`` compete on it
(mean R@1, ties broken by the MRR); the winner is refitted on all pairs, stopped at its best
validation step (:func:`sotalign.methods.selection.select`). The test split is never seen.
``selection_`` holds the table of candidates and scores.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import DEFAULTS, PARAM_NAMES, RECIPE_FIELDS, SOTAlignConfig
from .errors import ConfigError, InputError, SotalignError, closest
from .eval import retrieval_metrics
from .io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_finite_weights,
    read_model_folder,
    validate_training_inputs,
    write_model_folder,
)
from .io.files import reason
from .methods import get_method
from .models import ALIGNERS, aligner_from_state
from .parallel import Comm
from .training import TrainData
from .version import __version__

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "SOTAlign"]

FORMAT_VERSION = 1

_D: dict[str, Any] = {**DEFAULTS.to_flat(), **dict.fromkeys(RECIPE_FIELDS)}  # None: the recipe's


class SOTAlign:
    """Semi-supervised alignment of two frozen encoders (SOTAlign, SPEC §1-§3).

    Parameters (all optional; defaults written once in :data:`sotalign.config.DEFAULTS` and
    :data:`sotalign.config.RECIPES`)
    ----------------------------------------------------------------------------------------
    recipe: the training schedule of the parameters left at ``None`` (``steps``, ``lr``,
        ``optimizer``, ``dim``, ``batch_unpaired``, ``alpha_grid``, ``head``): ``paper``
        (below), ``cpu`` (300 AdamW steps at lr 1e-3, d = 512, unpaired batches of 1,024,
        α ∈ {1, 0.1}, teacher-initialised heads for SOTAlign) or ``auto`` (default: ``paper``
        on CUDA, ``cpu`` otherwise). Explicit values always win.
    budget: a time for the whole fit (seconds, or ``"10m"``, ``"1.5h"``): a few timed steps
        estimate the cost of a step and the steps per training are lowered to fit it.
    method: ``sotalign`` | ``sail`` | ``semisup_sail`` | ``cca`` | ``procrustes`` |
        ``contrastive`` | a registered baseline (``sotalign methods``).
    teacher, teacher_reg: linear teacher (``cca`` with ridge 0.1, ``procrustes``,
        ``contrastive``); ``teacher_reg="auto"`` selects the CCA ridge on the validation split
        among ``teacher_reg_grid`` (0.1, 0.01, 0.001, 1; ties keep the earlier).
    dim, head: output width (1024) and head type (``linear``, ``mlp`` or ``teacher``).
    sup_loss: ``siglip`` (entry-mean SigLIP on the pairs), ``semisup_siglip`` or ``infonce``.
    divergence: ``klot`` (default), ``cka``, ``ginfonce`` or ``none``.
    alpha: weight of the divergence, or ``"auto"`` to select on validation over ``alpha_grid``
        (together with the teacher alone and α = 0).
    eps, eps_teacher, sinkhorn_iters, sinkhorn_tol, ot_mode: KLOT's entropic OT (0.05, 0.01,
        100 iterations, no tolerance, ``auto``: dense or tiled by memory; ``log``: reference).
    steps, lr, weight_decay, warmup, optimizer: Lion, 2000 steps, lr 1e-4, wd 1e-5, 10 %
        warm-up then cosine.
    batch_pairs, batch_unpaired: paired batch cap (all pairs up to 10k) and unpaired batch size.
    ginfonce_temperature: τ of the generalised InfoNCE divergence (0.05).
    val_fraction: share of the pairs held out for selection when selection runs.
    early_stopping: keep the weights with the best validation score during training.
    refit: after selection, retrain the chosen candidate on all pairs.
    selection: ``halving`` (default): every candidate is trained to a third of its steps and
        only the best third continues (successive halving); ``full``: all to the end.
    eval_every: validation interval in steps (0: every steps/10).
    seed, device (``auto``/``cpu``/``cuda``), progress (progress bars),
    checkpoint_dir, checkpoint_every: periodic resumable checkpoints of the final training.
    method_params: extra options of a baseline method.

    Attributes after ``fit``: ``aligner_``, ``selection_``, ``train_history_``, ``plan_`` (the
    planned trainings, steps and expected time; ``None`` for methods that do not plan),
    ``teacher_search_`` (with ``teacher_reg="auto"``: each ridge's validation scores),
    ``n_pairs_``, ``n_unpaired_``, ``d_x_``, ``d_y_``, ``fit_seconds_``.
    """

    def __init__(
        self,
        *,
        method: str = _D["method"],
        teacher: str = _D["teacher"],
        teacher_reg: float | str = _D["teacher_reg"],
        teacher_reg_grid: Sequence[float] = _D["teacher_reg_grid"],
        dim: int | None = _D["dim"],
        head: str | None = _D["head"],
        sup_loss: str = _D["sup_loss"],
        divergence: str = _D["divergence"],
        alpha: float | str = _D["alpha"],
        alpha_grid: Sequence[float] | None = _D["alpha_grid"],
        eps: float = _D["eps"],
        eps_teacher: float = _D["eps_teacher"],
        sinkhorn_iters: int = _D["sinkhorn_iters"],
        sinkhorn_tol: float | None = _D["sinkhorn_tol"],
        ot_mode: str = _D["ot_mode"],
        steps: int | None = _D["steps"],
        lr: float | None = _D["lr"],
        weight_decay: float = _D["weight_decay"],
        warmup: float = _D["warmup"],
        optimizer: str | None = _D["optimizer"],
        batch_pairs: int = _D["batch_pairs"],
        batch_unpaired: int | None = _D["batch_unpaired"],
        ginfonce_temperature: float = _D["ginfonce_temperature"],
        val_fraction: float = _D["val_fraction"],
        early_stopping: bool = _D["early_stopping"],
        refit: bool = _D["refit"],
        selection: str = _D["selection"],
        eval_every: int = _D["eval_every"],
        seed: int = _D["seed"],
        device: str = _D["device"],
        progress: bool = _D["progress"],
        checkpoint_dir: str | None = _D["checkpoint_dir"],
        checkpoint_every: int = _D["checkpoint_every"],
        method_params: dict[str, Any] | None = _D["method_params"],
        recipe: str = _D["recipe"],
        budget: float | str | None = _D["budget"],
    ) -> None:
        given = locals()
        for name in PARAM_NAMES:
            setattr(self, name, given[name])

    # -- scikit-learn style parameter access --------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters as given to ``__init__`` (or :meth:`set_params`)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> SOTAlign:
        """Set hyper-parameters by name; unknown names raise :class:`ConfigError`."""
        names = self._param_names()
        for k, v in params.items():
            if k not in names:
                raise ConfigError(f"unknown parameter '{k}'{closest(k, names)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _D[k]}
        return f"SOTAlign({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def config(self) -> SOTAlignConfig:
        """The validated configuration tree of the current hyper-parameters."""
        return SOTAlignConfig.from_flat(self.get_params())

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
        image_encoder: str | Mapping[str, Any] | None = None,
        text_encoder: str | Mapping[str, Any] | None = None,
    ) -> SOTAlign:
        """Fit on pairs (row i of ``paired_images`` ↔ row i of ``paired_texts``) and optional
        unpaired pools. Arrays may be numpy arrays, memmaps or torch tensors. Returns ``self``.

        ``resume`` continues from the checkpoints in ``checkpoint_dir``; ``check_inputs=False``
        skips the input checks (shapes, dtypes, NaN scan) when the caller already ran them.
        ``image_encoder``, ``text_encoder``: the frozen encoders that made the embeddings (a
        spec of :mod:`sotalign.encoders`, or the ``encoder`` record of a ``sotalign embed``
        sidecar); kept in ``encoders_`` and saved with the model, so that
        :class:`sotalign.AlignedModel` can take raw images and texts."""
        cfg = self.config()
        encoders = {
            "image": _encoder_record(image_encoder, "image"),
            "text": _encoder_record(text_encoder, "text"),
        }
        spec = get_method(cfg.method)
        paired_images = _array(paired_images, "paired images", required=True)
        paired_texts = _array(paired_texts, "paired texts", required=True)
        unpaired_images = _array(unpaired_images, "unpaired images")
        unpaired_texts = _array(unpaired_texts, "unpaired texts")
        if check_inputs:
            validate_training_inputs(paired_images, paired_texts, unpaired_images, unpaired_texts)
        t0 = time.perf_counter()
        data = TrainData.from_arrays(paired_images, paired_texts, unpaired_images, unpaired_texts)
        result = spec.fit(cfg, data, resume)
        self.aligner_ = result.aligner
        self.selection_: list[dict[str, Any]] = result.selection
        self.train_history_: list[dict[str, float]] = result.history
        self.plan_: dict[str, Any] | None = result.plan
        self.teacher_search_: list[dict[str, Any]] = result.teacher_search
        self.n_pairs_ = data.n_pairs
        self.n_unpaired_ = (
            (len(data.unpaired_images), len(data.unpaired_texts)) if data.has_unpaired else (0, 0)
        )
        self.d_x_, self.d_y_ = data.images.dim, data.texts.dim
        for side, d in (("image", self.d_x_), ("text", self.d_y_)):
            rec = encoders[side]
            if rec is not None and rec.get("dim") not in (None, d):
                raise InputError(
                    f"the {side} encoder {rec['spec']!r} gives {rec['dim']}-d embeddings but the"
                    f" {side}s given to fit are {d}-d; name the encoder that made them"
                )
        self.encoders_: dict[str, dict[str, Any] | None] = encoders
        self.fit_seconds_ = time.perf_counter() - t0
        comm = Comm.from_group()  # under torchrun: the group the heads were trained on
        self.world_size_, self.backend_ = comm.world_size, comm.backend
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
        arr = X if is_torch else _array(X, what, required=True)
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
        return retrieval_metrics(
            self.encode_images(images), self.encode_texts(texts), text_to_image
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Save to a folder: ``config.json`` (with the manifest of the weights, see
        :mod:`sotalign.io.model_folder`) + ``model.safetensors``, each written atomically.

        Refused, before anything is written: non-finite weights, and hyper-parameters that
        :meth:`load` would refuse (set after ``fit``)."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: exists and is a file; save() writes a folder, give its path")
        state = dict(self.aligner_.state_dict())
        check_finite_weights(state, path / WEIGHTS_FILE, "refusing to save them; re-fit the model")
        get_method(self.config().method)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise InputError(
                f"{path}: folder exists and is not empty; pass overwrite=True "
                "(--overwrite) or choose another folder"
            )
        path.mkdir(parents=True, exist_ok=True)
        resolved = self.config().to_flat()  # the recipe's values written out, not None
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolved.items()}
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
        encoders = getattr(self, "encoders_", None)
        if encoders and any(encoders.values()):
            cfg["encoders"] = encoders
        return write_model_folder(path, cfg, state, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> SOTAlign:
        """Load a model folder written by :meth:`save` (never unpickles anything).

        The folder is checked before it is trusted: the weights against the manifest (sha256,
        shape and dtype of every tensor), every weight for NaN/inf, the configuration's schema
        (parameters, registered method and aligner kind, input widths that fit the weights).
        Any failure is a one-line :class:`InputError` naming the file and the fix. A folder
        saved before manifests existed loads with a :class:`UserWarning` that it cannot be
        verified."""
        path = Path(path)
        cfg, state, _ = read_model_folder(path, FORMAT_VERSION)
        cfg_path = path / CONFIG_FILE
        params, meta = _check_config(cfg, cfg_path)
        obj = cls(**params)
        obj.d_x_, obj.d_y_ = meta["d_x"], meta["d_y"]
        obj.aligner_ = _build_aligner(cfg["aligner"], state, obj.d_x_, obj.d_y_, path)
        obj.n_pairs_ = meta["n_pairs"]
        obj.n_unpaired_ = meta["n_unpaired"]
        obj.selection_ = meta["selection"]
        obj.fit_seconds_ = meta["fit_seconds"]
        obj.encoders_ = _check_encoders(cfg.get("encoders"), cfg_path)
        return obj


# ------------------------------------------------------------------------ loading, checked


def _encoder_record(value: Any, side: str) -> dict[str, Any] | None:
    """The record of a frozen encoder: ``{"spec": …}`` plus what a sidecar tells (dim, …)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return {"spec": value.strip()}
    if isinstance(value, Mapping) and isinstance(value.get("spec"), str):
        keep = ("spec", "dim", "class", "versions")
        return {k: value[k] for k in keep if k in value}
    raise ConfigError(
        f"{side}_encoder must be an encoder spec such as 'efficientnet-lite0', got {value!r}"
    )


def _check_encoders(value: Any, cfg_path: Path) -> dict[str, dict[str, Any] | None]:
    if value is None:
        return {"image": None, "text": None}
    ok = isinstance(value, dict) and all(
        value.get(side) is None
        or (isinstance(value[side], dict) and isinstance(value[side].get("spec"), str))
        for side in ("image", "text")
    )
    if not ok:
        raise _bad_config(cfg_path, "'encoders' must map image and text to {\"spec\": …}")
    return {"image": value.get("image"), "text": value.get("text")}


def _bad_config(cfg_path: Path, what: str) -> InputError:
    return InputError(
        f"{cfg_path}: {what}; the file is damaged or was edited: restore it, or re-save or"
        " re-fit the model"
    )


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_config(cfg: dict[str, Any], cfg_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor parameters and the fitted attributes of a model's ``config.json``,
    checked: the parameters through :meth:`SOTAlignConfig.from_flat`, the method and the
    aligner kind against their registries, the widths and counts for their types."""
    params = {k: v for k, v in cfg["params"].items() if k in PARAM_NAMES}
    for key in ("alpha_grid", "teacher_reg_grid"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    try:
        get_method(SOTAlignConfig.from_flat(params).method)
    except ConfigError as exc:
        raise _bad_config(cfg_path, f"bad 'params' ({exc})") from exc
    aligner = cfg.get("aligner")
    if not isinstance(aligner, dict) or not isinstance(aligner.get("kind"), str):
        raise _bad_config(cfg_path, "'aligner' must be a mapping with a 'kind'")
    kind = aligner["kind"]
    if kind not in ALIGNERS:
        raise _bad_config(
            cfg_path, f"unknown aligner kind {kind!r}{closest(kind, sorted(ALIGNERS))}"
        )
    meta: dict[str, Any] = {}
    for key in ("d_x", "d_y"):
        v = cfg.get(key)
        if not (_is_count(v) and v >= 1):
            raise _bad_config(cfg_path, f"'{key}' must be an integer >= 1, got {v!r}")
        meta[key] = v
    n_pairs = cfg.get("n_pairs", 0)
    if not _is_count(n_pairs):
        raise _bad_config(cfg_path, f"'n_pairs' must be an integer >= 0, got {n_pairs!r}")
    n_unpaired = cfg.get("n_unpaired", [0, 0])
    if not (
        isinstance(n_unpaired, list) and len(n_unpaired) == 2 and all(map(_is_count, n_unpaired))
    ):
        raise _bad_config(cfg_path, f"'n_unpaired' must be two integers >= 0, got {n_unpaired!r}")
    selection = cfg.get("selection", [])
    if not (isinstance(selection, list) and all(isinstance(r, dict) for r in selection)):
        raise _bad_config(cfg_path, "'selection' must be a list of mappings")
    fit_seconds = cfg.get("fit_seconds", math.nan)
    if isinstance(fit_seconds, bool) or not isinstance(fit_seconds, (int, float)):
        raise _bad_config(cfg_path, f"'fit_seconds' must be a number, got {fit_seconds!r}")
    meta.update(
        n_pairs=n_pairs,
        n_unpaired=tuple(n_unpaired),
        selection=selection,
        fit_seconds=float(fit_seconds),
    )
    return params, meta


def _build_aligner(
    config: dict[str, Any], state: dict[str, Tensor], d_x: int, d_y: int, path: Path
) -> Any:
    """The registered aligner rebuilt from ``config`` and ``state``, with one image and one
    text of widths ``d_x``, ``d_y`` encoded as a probe: weights of another shape (a size
    mismatch, a missing tensor, a width that does not fit) end in one-line InputError."""
    kind = config["kind"]
    try:
        aligner = aligner_from_state(config, state)
        zi = aligner.encode_images(torch.ones(1, d_x))
        zt = aligner.encode_texts(torch.ones(1, d_y))
        fits = zi.ndim == 2 and zt.ndim == 2 and zi.shape[0] == zt.shape[0] == 1
        if not (fits and zi.shape[1] == zt.shape[1]):
            raise InputError(f"images map to {tuple(zi.shape)} but texts to {tuple(zt.shape)}")
    except (SotalignError, KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise InputError(
            f"{path / WEIGHTS_FILE}: the weights do not fit the '{kind}' aligner of"
            f" {CONFIG_FILE} with d_x={d_x}, d_y={d_y} ({reason(exc)}): the folder mixes files of"
            " different models; re-save or re-fit the model"
        ) from exc
    return aligner


def _array(X: Any, what: str, required: bool = False) -> Any:
    """Arrays, memory maps and tensors as they are; other array-likes (lists, tuples) as a
    float32 numpy array; ``None`` only where optional. Anything else: one-line InputError."""
    if X is None:
        if required:
            raise InputError(f"{what}: required, got None")
        return None
    if isinstance(X, (np.ndarray, Tensor)):
        return X
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{what}: expected a 2-D array of embeddings (numpy, torch or a list of rows),"
            f" got {type(X).__name__} ({exc})"
        ) from exc
    if arr.ndim != 2:
        raise InputError(f"{what}: expected a 2-D array of embeddings, got shape {arr.shape}")
    return arr
