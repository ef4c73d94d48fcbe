"""Stage 2 of SOTAlign: training the alignment heads (SPEC §3, Algorithm 1).

Each step draws a paired batch (A_b, B_b) and equal-sized unpaired batches (X_b, Y_b) and
minimises

    L = L_sup(cos(f(A_b), g(B_b))) + α·D(K ‖ K*),  K = cos(f(X_b), g(Y_b)),  K* = teacher(X_b, Y_b)

with D = KLOT by default (:func:`sotalign.ot.klot_embeddings`), Lion, a cosine learning-rate
schedule with linear warm-up, and weight decay. The trainer is generic: anything callable as
``objective(model, batch) -> (loss, logs)`` can be trained (the baselines use that).

Checkpoints hold the weights, the optimiser state, the sampler's and torch's RNG states, the
step and the best-so-far weights; they are written atomically (a temporary folder renamed into
place), so ``resume=True`` continues a killed run and ends with the same weights as an
uninterrupted one. Nothing is pickled: tensors go to safetensors, the rest to JSON.

Under ``torchrun`` (an initialised default process group) the trainer runs sharded: every rank
draws the same global batch and reads its rows (:mod:`.data`), computes its share of the loss
(:mod:`.objective`), and the parameter gradients are summed over ranks (one all-reduce of one
flat buffer per step), so every rank takes the same optimiser step and holds the same model —
the one a single process trains. Rank 0 alone writes checkpoints; every rank can resume from
them (a shared folder); logged losses are the whole batch's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lion_pytorch import Lion
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError, SotalignError
from ..eval import paired_rank_metrics, selection_key
from ..io import atomic_dir
from ..models import AlignmentModel
from ..parallel import Comm
from .config import TrainConfig
from .data import Batch, BatchSampler, TrainData
from .progress import current_progress

Objective = Callable[[AlignmentModel, Batch], tuple[Tensor, dict[str, float]]]


class TrainingDivergedError(SotalignError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but this machine has no usable CUDA device;"
            " use device=auto or device=cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} does not exist: this machine has"
            f" {torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def lr_at(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup·total`` steps, then cosine decay to 0."""
    n_warm = round(warmup * total)
    if n_warm > 0 and step < n_warm:
        return base * (step + 1) / n_warm
    progress = (step - n_warm) / max(total - n_warm, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class ValData:
    """Validation pairs (row i of ``images`` ↔ row i of ``texts``) for model selection."""

    images: Tensor
    texts: Tensor


@torch.no_grad()
def validation_score(model: AlignmentModel, val: ValData) -> tuple[float, float]:
    """(mean R@1, MRR), in percent, of the model on the validation pairs.

    Compared as a tuple: R@1 first, the mean reciprocal rank breaks its ties (a small
    validation gallery often scores many steps alike on R@1)."""
    was_training = model.training
    model.eval()
    dev = model.log_scale.device
    zi = model.embed_images(val.images.to(dev)).cpu()
    zt = model.embed_texts(val.texts.to(dev)).cpu()
    model.train(was_training)
    m = paired_rank_metrics(zi, zt)
    return m["mean_R@1"], m["MRR"]


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_step: int | None
    best_score: float | None
    steps_done: int
    seconds: float
    best_mrr: float | None = None


# ----------------------------------------------------------------------------- checkpoints

CKPT_PREFIX = "step-"


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


def latest_checkpoint(ckpt_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder in ``ckpt_dir`` (or ``None``)."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        return None
    done = sorted(
        p for p in root.iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "state.json").exists()
    )
    return done[-1] if done else None


class Trainer:
    """Runs Algorithm 1 for ``config.steps`` steps; see the module docstring."""

    def __init__(
        self,
        model: AlignmentModel,
        objective: Objective,
        data: TrainData,
        config: TrainConfig,
        *,
        val: ValData | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        keep_checkpoints: int = 2,
    ) -> None:
        self.config = config
        self.comm = Comm.from_group()
        if self.comm.sharded and not getattr(objective, "shardable", False):
            raise ConfigError(
                f"this method's training objective ({type(objective).__name__}) does not run"
                " sharded over processes; run it without torchrun"
            )
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        if model.teacher is not None:
            model.teacher.to(self.device)
        self.objective = objective
        self.data = data
        self.val = val
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress = progress and self.comm.rank == 0
        self.keep_checkpoints = keep_checkpoints
        params = [p for p in model.parameters() if p.requires_grad]
        self.params = params
        if config.optimizer == "lion":
            self.opt: torch.optim.Optimizer = Lion(
                params, lr=config.lr, weight_decay=config.weight_decay
            )
        else:
            self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.sampler = BatchSampler(
            data, config.batch_pairs, config.batch_unpaired, config.seed, self.device, self.comm
        )
        self._check_shardable()
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.best_score: float | None = None
        self.best_mrr: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None

    def _check_shardable(self) -> None:
        """Every rank needs at least one row of the paired and of the unpaired batch."""
        w = self.comm.world_size
        if w == 1:
            return
        pairs = min(self.data.n_pairs, self.config.batch_pairs)
        unpaired = self.sampler.unpaired_size
        if pairs < w or (unpaired and unpaired < w):
            raise ConfigError(
                f"{w} processes need at least {w} pairs and {w} unpaired rows per batch"
                f" (got {pairs} and {unpaired}); use fewer processes"
            )

    def _sum_gradients(self) -> None:
        """Sum the parameter gradients over ranks (one all-reduce of one flat buffer)."""
        if not self.comm.sharded:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = self.comm.sum_(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    # -- checkpointing ------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write the full training state atomically; returns the checkpoint folder."""
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"{CKPT_PREFIX}{self.step:09d}"
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
        }
        opt_t, opt_meta = _flatten_optimizer(self.opt)
        tensors.update(opt_t)
        tensors["rng.torch"] = torch.get_rng_state()
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        meta = {
            "step": self.step,
            "sampler": self.sampler.state(),
            "optimizer": opt_meta,
            "history": self.history,
            "best_score": self.best_score,
            "best_mrr": self.best_mrr,
            "best_step": self.best_step,
            "config": asdict(self.config),
        }
        with atomic_dir(final) as tmp:
            save_file(tensors, str(tmp / "tensors.safetensors"))
            with open(tmp / "state.json", "w") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
        olds = sorted(p for p in self.checkpoint_dir.iterdir() if p.name.startswith(CKPT_PREFIX))
        for old in olds[: -self.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore the full training state from a checkpoint folder."""
        path = Path(path)
        try:
            tensors = load_file(str(path / "tensors.safetensors"))
            meta = json.loads((path / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise SotalignError(f"{path}: cannot read checkpoint ({exc})") from exc
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_sd)
        self.opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        self.sampler.set_state(meta["sampler"])
        self.step = int(meta["step"])
        self.history = meta["history"]
        self.best_score, self.best_step = meta["best_score"], meta["best_step"]
        self.best_mrr = meta.get("best_mrr")
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None

    # -- the loop -----------------------------------------------------------------------
    def _eval_every(self) -> int:
        if self.val is None:
            return 0
        return self.config.eval_every or max(self.config.steps // 10, 1)

    def _maybe_validate(self, logs: dict[str, float]) -> None:
        every = self._eval_every()
        if not every or (self.step % every and self.step != self.config.steps):
            return
        assert self.val is not None
        score, mrr = validation_score(self.model, self.val)
        logs["val_mean_R@1"], logs["val_MRR"] = score, mrr
        # ties go to the later step: it has trained longer on the same evidence
        if selection_key(score, mrr) >= selection_key(self.best_score, self.best_mrr):
            self.best_score, self.best_mrr, self.best_step = score, mrr, self.step
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }

    def run(
        self,
        resume: bool = False,
        stop_after: int | None = None,
        stop_at: int | None = None,
        pause: bool = False,
    ) -> TrainResult:
        """Train; with ``resume`` continue from the newest checkpoint in ``checkpoint_dir``.

        ``stop_at`` ends training at that global step while keeping the learning-rate schedule
        of ``config.steps`` (a refit that reproduces an early-stopped run's trajectory).
        ``pause``: the training will be continued by a later ``run`` call (a selection rung),
        so the steps after ``stop_at`` stay planned on the fit's progress bar.
        ``stop_after`` ends the loop early after that many steps in this call (for tests).
        """
        cfg = self.config
        resumed = 0
        if resume and self.checkpoint_dir is not None:
            last = latest_checkpoint(self.checkpoint_dir)
            if last is not None:
                self.load_checkpoint(last)
                resumed = self.step
        t0 = time.perf_counter()
        end = cfg.steps if stop_at is None else max(1, min(int(stop_at), cfg.steps))
        shared = current_progress()  # inside a whole fit: advance its one bar
        bar = tqdm(
            total=end,
            initial=self.step,
            disable=not self.progress or shared is not None,
            desc="train",
            dynamic_ncols=True,
            leave=False,
        )
        if shared is not None and resumed:
            shared.advance(resumed)  # resumed: these steps are done
        done_here = 0
        self.model.train()
        while self.step < end:
            if stop_after is not None and done_here >= stop_after:
                break
            lr = lr_at(self.step, cfg.steps, cfg.lr, cfg.warmup)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = self.sampler.next()
            loss, logs = self.objective(self.model, batch)
            total = self.comm.sum_float(loss.detach())  # the whole batch's loss (every rank)
            if not math.isfinite(total):
                where = (
                    f"; the last good checkpoint is in {self.checkpoint_dir}"
                    if self.checkpoint_dir
                    else ""
                )
                terms = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
                raise TrainingDivergedError(
                    f"loss became non-finite at step {self.step} ({terms}){where};"
                    " lower lr or alpha, or raise eps"
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self._sum_gradients()
            self.opt.step()
            self.step += 1
            done_here += 1
            logs = {"step": self.step, "loss": total, "lr": lr, **logs}
            self._maybe_validate(logs)
            self.history.append(logs)
            bar.update(1)
            if shared is not None:
                shared.advance(1, ", ".join(f"{k}={v}" for k, v in _postfix(logs).items()))
            elif self.progress:
                bar.set_postfix(_postfix(logs), refresh=False)
            if (
                self.checkpoint_dir is not None
                and self.comm.rank == 0
                and cfg.checkpoint_every
                and (self.step % cfg.checkpoint_every == 0 or self.step == end)
            ):
                self.save_checkpoint()
        bar.close()
        if shared is not None and stop_after is None and not pause:
            shared.skip(cfg.steps - self.step)  # planned for the full schedule, stopped before
        return TrainResult(
            self.history,
            self.best_step,
            self.best_score,
            self.step,
            time.perf_counter() - t0,
            self.best_mrr,
        )

    def restore_best(self) -> None:
        """Load the best validation weights seen so far (if any) into the model."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def _postfix(logs: dict[str, float]) -> dict[str, str]:
    keys = ("loss", "sup", "div", "marginal_error", "val_mean_R@1")
    short = {"marginal_error": "marg", "val_mean_R@1": "val"}
    return {short.get(k, k): f"{logs[k]:.3g}" for k in keys if k in logs}
