"""Where the code runs: seeding, device and dtype choice, and the course's fast mode.

Every notebook calls these instead of repeating the boilerplate.
"""
from __future__ import annotations

import numbers
import os
import random

import torch

FAST_ENV = "COURSE_FAST"


def fast_mode() -> bool:
    """True when ``COURSE_FAST=1``: training cells shrink their schedules (CI, quick checks).

    Full mode (the default) is what learners run and what committed outputs show.
    """
    return os.environ.get(FAST_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise (e.g. ``steps = pick(2000, 30)``)."""
    return fast if fast_mode() else full


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded the same way."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be a whole number (e.g. 0); got {seed!r}.")
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    try:  # numpy is optional
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    return torch.Generator().manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    """The best available device: ``cuda``, then Apple ``mps``, then ``cpu``.

    ``prefer`` (or the ``COURSE_DEVICE`` environment variable) forces one, e.g. ``"cpu"``; a name
    PyTorch does not know, or a GPU this machine lacks, is refused here with the names to use.
    """
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError):
            raise ValueError(f"{prefer!r} is not a device name PyTorch knows; use 'cpu', 'cuda' or 'mps'.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was asked for, but PyTorch sees no CUDA GPU on this machine; use 'cpu'.")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {prefer!r} was asked for, but this machine has no Apple GPU; use 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """Mixed-precision dtype for autocast on ``device``.

    bf16 where the GPU supports it (Ampere and newer), fp16 on older CUDA GPUs such as
    Colab's T4 (needs a grad scaler), fp16 on MPS, and fp32 on CPU (CPU autocast gains
    little for these tiny models and changes results). On MPS, :func:`course_lib.train.train`
    uses it only when asked (``TrainConfig(amp="on")``): its default there is fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def describe_device(device: torch.device | str | None = None) -> str:
    """One line naming the device (and GPU model), used by every notebook's setup cell."""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"cuda ({name}), autocast dtype {str(pick_dtype(device)).replace('torch.', '')}"
    if device.type == "mps":  # fp16 autocast on MPS has given wrong or diverging losses (PyTorch issue 109457)
        return "mps (Apple GPU), training in float32 by default (float16 autocast is opt-in: TrainConfig(amp='on'))"
    return f"cpu ({torch.get_num_threads()} threads)"


THREADS_ENV = "COURSE_THREADS"


def _probe_step_seconds(threads: int, repeats: int = 5) -> float:
    """Median time of one training step of a course-sized model (2 layers, d=64) with ``threads``."""
    import time

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = torch.nn.Sequential(*[
            torch.nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True) for _ in range(2)])
    x = torch.randn(16, 32, 64, generator=gen)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        layers(x).square().mean().backward()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def configure_threads(threads: int | None = None) -> str:
    """Choose torch's CPU thread count for the course's tiny models; return a one-line summary.

    Tiny models gain little from many threads and lose a lot when the CPU is small or busy:
    synchronising threads costs more than the matmuls they share. So, unless ``threads`` or the
    ``COURSE_THREADS`` environment variable says otherwise, this times one training step of a
    course-sized model with 1 thread and with PyTorch's default (and 2 and 4 in between) and keeps
    the fastest. Takes well under a second; called by every notebook's setup cell.
    """
    requested = threads if threads is not None else os.environ.get(THREADS_ENV, "").strip()
    if requested not in ("", None):
        try:
            n = int(requested)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {requested!r}") from None
        if n < 1:
            raise ValueError(f"the thread count must be at least 1, got {n}")
        torch.set_num_threads(n)
        return f"torch threads: {n} (set by you)"
    default = torch.get_num_threads()
    candidates = sorted({c for c in (1, 2, 4, default) if c <= default})
    if len(candidates) == 1:
        torch.set_num_threads(default)
        return f"torch threads: {default}"
    times = {c: _probe_step_seconds(c) for c in candidates}
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    timed = ", ".join(f"{c} thread{'s' if c > 1 else ''} {t * 1e3:.1f} ms" for c, t in times.items())
    return f"torch threads: {best} (one tiny training step took {timed}; {THREADS_ENV}=n overrides)"
