"""One training loop for every lesson: AdamW, warm-up + decay, clipping, mixed precision,
checkpoint/resume that is *exact*, and optional DistributedDataParallel.

The pieces, top to bottom:

* :class:`TrainConfig` - every knob in one dataclass.
* :func:`lr_at` - the learning-rate schedule as a pure function of the step.
* :func:`batch_indices` - which examples step ``s`` uses, computed from ``s`` alone (no sampler
  state), so a resumed run sees exactly the batches the uninterrupted run would have seen.
* :func:`save_checkpoint` / :func:`load_checkpoint` - plain-tensor checkpoints that load with
  ``torch.load(path, weights_only=True)`` (nothing is unpickled).
* :func:`train` - the loop.

Why resume is exact (on CPU, bit for bit): after step ``k`` the checkpoint holds everything the
next step depends on - parameters, AdamW moments, scheduler position, grad-scaler scale, the
RNG states (torch CPU/CUDA, Python ``random``, NumPy) that dropout or a random ``collate`` draw
from, and the loss accumulated since the last log line. The data order needs no state at all:
:func:`batch_indices` recomputes it from the step number.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import random
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import default_collate

from .runtime import pick_device, pick_dtype, seed_everything

__all__ = [
    "TrainConfig",
    "lr_at",
    "batch_indices",
    "param_groups",
    "save_checkpoint",
    "load_checkpoint",
    "check_writable",
    "CheckpointError",
    "TrainingInterrupted",
    "train",
]


# --------------------------------------------------------------------------------------------
# Configuration and schedule
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything :func:`train` needs besides the model, the loss and the data.

    ``batch_size`` is the GLOBAL batch: under ``torchrun`` with W processes each one takes
    ``batch_size // W`` examples of the same global batch.
    """

    steps: int = 1000  # optimizer updates in total (not epochs)
    batch_size: int = 32  # global batch size
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.1  # decoupled (AdamW), applied only to matrices; see param_groups
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100  # linear warm-up from lr/warmup_steps to lr
    decay: str = "cosine"  # "cosine" | "linear" | "none" after warm-up ...
    min_lr_ratio: float = 0.1  # ... down to lr * min_lr_ratio at the last step
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 = no clipping
    eval_every: int | None = 200  # call evaluate(model) every this many steps (and at the end)
    log_every: int = 10  # one history row every this many steps (and at the end)
    ckpt_path: str | None = None  # None = no checkpoints
    ckpt_every: int | None = 200  # save every this many steps (and at the end)
    seed: int = 0  # seeds the data order and the RNGs (dropout)
    amp: str = "auto"  # "auto": autocast on CUDA (pick_dtype), fp32 elsewhere; "on": autocast on MPS too; "off": fp32
    device: str | None = None  # None = pick_device()
    progress: bool = True  # tqdm progress bar with the live loss

    def __post_init__(self):
        if self.decay not in ("cosine", "linear", "none"):
            raise ValueError(f"TrainConfig.decay must be 'cosine', 'linear' or 'none'; got {self.decay!r}.")
        if self.amp not in ("auto", "on", "off"):
            raise ValueError(f"TrainConfig.amp must be 'auto', 'on' or 'off'; got {self.amp!r}.")
        for name, low in (("steps", 1), ("batch_size", 1), ("log_every", 1), ("warmup_steps", 0), ("seed", None),
                          ("eval_every", 0), ("ckpt_every", 0)):
            value = getattr(self, name)
            if value is None and name in ("eval_every", "ckpt_every"):
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or (low is not None and value < low):
                more = "" if low is None else f" >= {low}"
                raise ValueError(f"TrainConfig.{name} must be a whole number{more}; got {value!r}.")
        for name, ok, what in (("lr", lambda v: v > 0, "> 0 (3e-4 is typical)"), ("weight_decay", lambda v: v >= 0, ">= 0"),
                               ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
                               ("grad_clip", lambda v: v >= 0, ">= 0 (None or 0 = no clipping)")):
            value = getattr(self, name)
            if value is None and name == "grad_clip":
                continue
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or not ok(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number {what}; got {value!r}.")
        self.betas = tuple(self.betas)
        if len(self.betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), e.g. (0.9, 0.95); got {self.betas!r}.")


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    """The schedule as a multiple of the peak ``cfg.lr`` (what ``LambdaLR`` wants)."""
    if step < cfg.warmup_steps:  # linear warm-up; step 0 already gets a non-zero lr
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "none":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.decay == "linear":
        shape = 1.0 - progress
    else:  # cosine: 1 -> 0 along half a cosine period
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of update ``step`` (0-based).

    Warm-up: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``. Then, with
    ``p = (step - warmup_steps) / (steps - warmup_steps)`` going from 0 towards 1:
    cosine ``lr * (r + (1 - r) * (1 + cos(pi p)) / 2)``, linear ``lr * (r + (1 - r)(1 - p))``,
    none ``lr``, where ``r = min_lr_ratio``. ``lr * r`` is reached at ``step == steps``.
    """
    return cfg.lr * _lr_factor(step, cfg)


# --------------------------------------------------------------------------------------------
# Data order without sampler state
# --------------------------------------------------------------------------------------------
def batch_indices(step: int, n_examples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the examples in global batch ``step``.

    Think of training as reading one long stream: epoch 0's shuffled order, then epoch 1's, ...
    Epoch ``e`` is ``torch.randperm(n_examples)`` seeded with ``seed + e``. Step ``s`` reads
    stream positions ``s*batch_size ... (s+1)*batch_size - 1``, i.e. it starts in epoch
    ``(s*batch_size) // n_examples`` (a batch may run over into the next epoch). Every example
    appears exactly once per epoch, and any step's batch is known without replaying the others.
    """
    if n_examples < 1:
        raise ValueError("the dataset is empty; training needs at least one example.")
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = positions // n_examples
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed + e))
        here = epochs == e
        out[here] = perm[positions[here] % n_examples]
    return out


def _local_batch_size(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} is the GLOBAL batch and must be divisible by the number of "
            f"processes ({world_size}); use e.g. batch_size={world_size * max(1, batch_size // world_size)}"
        )
    return batch_size // world_size


# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on 2-D weight matrices of non-embedding layers (Linear,
    attention projections, output head) and none on biases, norm gains (1-D) and embedding
    tables (a row that is rarely used should not be shrunk towards zero every step)."""
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a tied weight only once
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in embedding_params else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


# --------------------------------------------------------------------------------------------
# Checkpoints: plain tensors and containers only, so weights_only=True can load them
# --------------------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


#: What to do with a checkpoint that cannot be used (the command line shows its own flag instead).
FRESH_HINT = "delete it, or start fresh with train(..., resume=False) (command line: --fresh)"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C, a notebook's stop button) or SIGTERM stopped :func:`train` after a step that it
    saved: ``path``, ``step`` (updates done) and ``steps`` (asked for). Running the same call again resumes."""

    def __init__(self, path: str, step: int, steps: int) -> None:
        super().__init__(f"training stopped after step {step} of {steps}; saved {path!r}, so the same call resumes from there.")
        self.path, self.step, self.steps = path, step, steps


def _unwritable(path: str, err: OSError, what: str) -> ValueError:
    """One sentence for an ``OSError`` met writing ``path``: a file where a folder should be, or a folder
    that cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.exists(folder):  # the deepest part of the path that exists
        folder = os.path.dirname(folder)
    if os.path.isfile(folder):
        reason = f"{folder!r} is a file, not a folder"
    else:
        reason = f"the folder {folder!r} cannot be written ({err.strerror or err})"
    return ValueError(f"cannot write the {what} {path!r}: {reason}; choose another path.")


def check_writable(path, what: str = "checkpoint") -> None:
    """Fail now, naming ``path``, if a file cannot be written there: before training starts, not at
    the first save hundreds of steps later. Creates the missing folders, as saving would."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"the {what} path {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'model.pt')!r}.")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)), prefix=".write-test-"):
            pass
    except OSError as err:
        raise _unwritable(path, err, what) from None


def save_checkpoint(path, model, optimizer=None, scheduler=None, scaler=None, **extra) -> None:
    """Atomically write ``{"model", "optimizer", "scheduler", "scaler", **extra}`` to ``path``
    (a temporary file, then ``os.replace``, so a crash mid-write never leaves a broken file)."""
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        **extra,
    }
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"the checkpoint path {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'ckpt.pt')!r}.")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise _unwritable(path, err, "checkpoint") from None


def _check_state_dict(model: nn.Module, state: dict, path) -> None:
    """Raise a readable error if ``state`` was saved from a different model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def show(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")
        problems = [f"{name} ({len(xs)}): {show(xs)}" for name, xs in
                    [("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches", shapes)] if xs]
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not match this model (saved from a different "
            "architecture or config?): " + "; ".join(problems) + f"; {FRESH_HINT}."
        )


def _read_checkpoint(path) -> dict:
    """The checkpoint dict in ``path``, or a :class:`CheckpointError` naming the file and the way out
    (never PyTorch's advice to unpickle arbitrary code)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"there is no checkpoint {path!r}; check the path (train() writes one at TrainConfig.ckpt_path).")
    if os.path.isdir(path):
        raise CheckpointError(f"{path!r} is a folder, not a checkpoint file; give the path of the file itself.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - every unreadable file gets the same answer
        what = "is empty" if os.path.getsize(path) == 0 else "is cut short or is not a checkpoint saved by course_lib"
        raise CheckpointError(f"the checkpoint {path!r} {what}, so it cannot be loaded; {FRESH_HINT}.") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or \
            not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise CheckpointError(f"{path!r} is not a checkpoint saved by course_lib (it has no model weights); {FRESH_HINT}.")
    return ckpt


def load_checkpoint(path, model, optimizer=None, scheduler=None, scaler=None) -> dict:
    """Load ``path`` (with ``weights_only=True``, onto the CPU first) into the given objects and
    return the whole checkpoint dict (``step``, ``history``, ``cfg``, ... when :func:`train`
    wrote it). The model may live on any device; tensors are copied to it."""
    ckpt = _read_checkpoint(path)
    model = _unwrap(model)
    _check_state_dict(model, ckpt["model"], path)
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt


def _get_rng_state() -> dict:
    """All RNG states as tensors/numbers (weights_only-friendly)."""
    version, mt, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": None,
    }
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                          "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    except ImportError:  # pragma: no cover
        pass
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
    if state.get("numpy") is not None:
        try:
            import numpy as np

            s = state["numpy"]
            np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"],
                                 s["has_gauss"], s["cached"]))
        except ImportError:  # pragma: no cover
            pass


def _cfg_dict(cfg: TrainConfig) -> dict:
    plain = (int, float, str, bool, type(None))
    return {k: (v if isinstance(v, plain) or isinstance(v, tuple) else str(v))
            for k, v in dataclasses.asdict(cfg).items()}


# --------------------------------------------------------------------------------------------
# Devices, processes
# --------------------------------------------------------------------------------------------
def _setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts the process group under torchrun if needed."""
    device = pick_device(cfg.device)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not (dist.is_available() and (dist.is_initialized() or launched)):
        return 0, 1, device
    if device.type == "cuda" and device.index is None:  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), device


def _amp_for(device: torch.device, cfg: TrainConfig) -> tuple[bool, torch.dtype]:
    """(autocast on?, its dtype). ``amp="auto"`` turns it on for CUDA only: on Apple MPS float16
    autocast has given wrong or diverging losses (PyTorch issue 109457; LLMs-from-scratch issues 635,
    791, 1020), so MPS trains in float32 unless ``amp="on"`` asks for autocast."""
    wanted = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    use = wanted and device.type in ("cuda", "mps")
    return use, pick_dtype(device) if use else torch.float32


@contextlib.contextmanager
def _save_on_interrupt(enabled: bool):
    """While active, the first SIGINT or SIGTERM only sets ``flag["stop"]``: the loop finishes its step,
    saves a checkpoint and raises :class:`TrainingInterrupted`. A second signal stops at once.
    Signal handlers can only be set from the main thread; elsewhere this does nothing."""
    flag = {"stop": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    # a signal the process was told to ignore (a background job's SIGINT) stays ignored; None: a handler
    # installed outside Python, which could not be put back
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = {s: h for s, h in previous.items() if h is not None and h is not signal.SIG_IGN}

    def handler(signum, frame):
        if flag["stop"]:  # the second one: give up on the clean stop
            for s, h in previous.items():
                signal.signal(s, h)
            raise KeyboardInterrupt
        flag["stop"] = True

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [_to_device(v, device) for v in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)
    return obj


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    dataset: Sequence,
    cfg: TrainConfig,
    *,
    collate: Callable[[list], Any] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    resume: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``cfg.steps`` updates and return the history.

    * ``dataset``: anything with ``len`` and ``[i]``; ``collate(list_of_examples) -> batch``
      (default: ``torch.utils.data.default_collate``, which stacks tensors, tuples, dicts).
    * ``loss_fn(model, batch)``: scalar loss, the MEAN over the examples of the batch (then the
      gradients of W processes x batch/W examples average to the gradient of the global batch).
    * ``evaluate(model) -> {name: float}``: called after every ``eval_every`` steps and after the
      last one, in eval mode, under ``no_grad`` (and autocast), on every process, with the plain
      (unwrapped) model; the model goes back to train mode afterwards.
    * History: one dict per logged step: ``step`` (updates done), ``loss`` (mean training loss
      since the previous row, averaged over processes), ``lr`` (of that step), ``elapsed_s``
      (training wall time including earlier sessions), plus evaluate's metrics when it ran.
    * With ``cfg.ckpt_path`` a checkpoint is written every ``ckpt_every`` steps and at the end;
      with ``resume=True`` an existing checkpoint is loaded and training continues from its step
      (re-running a notebook cell after a Colab disconnect just carries on). A fresh run seeds
      every RNG with ``cfg.seed`` (+ rank) first.
    """
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must support len() and [i] (a list, a Dataset); got {type(dataset).__name__} (wrap it: list(...)).")
    n = len(dataset)
    if n < 1:
        raise ValueError("the dataset is empty; train() needs at least one example (check how it was built or filtered).")
    if cfg.ckpt_path:
        check_writable(cfg.ckpt_path)  # now, not at the first save
    rank, world, device = _setup(cfg)
    local_bs = _local_batch_size(cfg.batch_size, world)
    collate = collate or default_collate

    model.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=cfg.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    use_amp, amp_dtype = _amp_for(device, cfg)
    # fp16 has a narrow range: scale the loss so small gradients don't flush to zero (bf16 and
    # fp32 need no scaler; a disabled scaler passes everything through unchanged).
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda"
                                  and amp_dtype == torch.float16)

    start, history, elapsed_before = 0, [], 0.0
    pending = torch.zeros(2, device=device)  # [sum of losses, number of steps] since last row
    if resume and cfg.ckpt_path and os.path.exists(cfg.ckpt_path):
        ckpt = load_checkpoint(cfg.ckpt_path, model, optimizer, scheduler, scaler)
        if not {"step", "history", "rng", "pending", "cfg"} <= set(ckpt):
            raise CheckpointError(f"{cfg.ckpt_path!r} holds weights but no training state, so training cannot resume from it; "
                                  f"load it with load_checkpoint, use another ckpt_path, or {FRESH_HINT.split(', or ')[1]}.")
        start, history = int(ckpt["step"]), list(ckpt["history"])
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        pending = ckpt["pending"].to(device)
        for g, base in zip(optimizer.param_groups, scheduler.base_lrs):  # the current cfg's lr
            g["lr"] = base * _lr_factor(start, cfg)
        now = _cfg_dict(cfg)
        changed = {k: (v, now.get(k)) for k, v in ckpt["cfg"].items() if now.get(k) != v and k
                   not in ("ckpt_path", "ckpt_every", "eval_every", "log_every", "progress", "device")}
        if changed and rank == 0:
            warnings.warn(f"resuming {cfg.ckpt_path} with a changed config (saved, now): {changed}")
        rng = ckpt["rng"]
        if rank < len(rng):
            _set_rng_state(rng[rank])
        else:
            seed_everything(cfg.seed + rank)
    else:
        seed_everything(cfg.seed + rank)

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean_over_processes(t: torch.Tensor) -> torch.Tensor:
        if world > 1:
            t = t.clone()
            dist.all_reduce(t)
            t /= world
        return t

    def checkpoint(step: int) -> None:
        nonlocal pending
        pending = mean_over_processes(pending)  # every process now holds the same value
        rng = [_get_rng_state()]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, _get_rng_state())
        if rank == 0:
            save_checkpoint(cfg.ckpt_path, model, optimizer, scheduler, scaler, step=step,
                            history=history, cfg=_cfg_dict(cfg), rng=rng, pending=pending.cpu(),
                            elapsed_s=elapsed_before + time.perf_counter() - t0)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress or rank != 0,
               desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    # one process with a checkpoint: Ctrl-C / SIGTERM save the step just done (with DDP every process
    # would have to agree on that step first, so there the periodic checkpoints are what is kept)
    with _save_on_interrupt(bool(cfg.ckpt_path) and world == 1) as interrupt:
        for step in range(start, cfg.steps):
            # 1. this process's share of the global batch (same indices on every process)
            idx = batch_indices(step, n, cfg.batch_size, cfg.seed)
            idx = idx[rank * local_bs:(rank + 1) * local_bs]
            batch = _to_device(collate([dataset[i] for i in idx.tolist()]), device)

            # 2. forward in mixed precision, backward, clip, update
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(net, batch)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return the batch's mean loss as a 0-dim tensor; got {got} (take .mean()).")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # DDP averages the gradients over processes here
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            pending += torch.stack([loss.detach().float(), torch.ones((), device=device)])
            bar.update(1)

            # 3. evaluate / log / checkpoint
            done = step + 1
            last = done == cfg.steps
            metrics = None
            if evaluate is not None and (last or (cfg.eval_every and done % cfg.eval_every == 0)):
                model.eval()
                with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    metrics = evaluate(model)
                    if not isinstance(metrics, dict):
                        raise TypeError(f"evaluate(model) must return a dict of metrics, e.g. {{'valid_loss': 1.2}}; got {type(metrics).__name__}.")
                    metrics = {k: float(v) for k, v in metrics.items()}
                model.train()
            if last or metrics is not None or done % cfg.log_every == 0:
                total, count = mean_over_processes(pending).tolist()
                pending.zero_()
                row = {"step": done, "loss": total / count, "lr": lr,
                       "elapsed_s": elapsed_before + time.perf_counter() - t0, **(metrics or {})}
                if not math.isfinite(row["loss"]):
                    bar.close()
                    raise FloatingPointError(f"training loss is {row['loss']} at step {done}; "
                                             "try a lower lr, warm-up or grad_clip")
                history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            if cfg.ckpt_path and (last or interrupt["stop"] or (cfg.ckpt_every and done % cfg.ckpt_every == 0)):
                checkpoint(done)
            if interrupt["stop"] and not last:
                bar.close()
                raise TrainingInterrupted(os.fspath(cfg.ckpt_path), done, cfg.steps)
    bar.close()
    if world > 1:
        dist.barrier()  # the final checkpoint exists before any process returns
    return history
