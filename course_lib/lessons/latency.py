"""Latency experiments for the three families: time to first token, time per token, the machine's
roofline, and the "1000 + 1000" comparison. Lesson 06 and ``benchmarks/latency.py`` share them.

Every function *measures* (medians of repeated runs, see :mod:`course_lib.bench`) and returns
plain dicts, so that the same numbers can be printed, plotted and saved as JSON.

A simple model of one forward call that the lesson tests against the measurements::

    time ≈ overhead + max(FLOPs / peak FLOP/s, bytes moved / bandwidth)

``overhead`` is what a call costs when there is almost no arithmetic (Python, dispatch, and on a
GPU kernel launches): measured by timing the same architecture at a tiny width.

Decoding goes through :class:`course_lib.generation.DecodingSession` on its general path
(``fast_path=False``), so both decoders run the same code: the model's forward pass per token.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .. import costs
from ..bench import time_fn
from ..config import ModelConfig
from ..costs import count_flops
from ..families import ARCHITECTURES, Family, build, of
from ..generation import DecodingSession


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _untrained(family: str, cfg: ModelConfig, device: torch.device | str = "cpu", seed: int = 0) -> torch.nn.Module:
    """An untrained model of ``family`` in eval mode (timings do not depend on the weights' values)."""
    torch.manual_seed(seed)
    return build(family, cfg).to(device).eval()


def _session(model, inputs: Tensor, use_cache: bool = True) -> DecodingSession:
    """A decoding session on the general path (see the module docstring)."""
    return DecodingSession(model, inputs, use_cache=use_cache, fast_path=False)


# --------------------------------------------------------------------------- the machine


@torch.no_grad()
def measure_peak_flops(device: torch.device | str = "cpu", n: int = 1024, repeat: int = 5, dtype=torch.float32) -> float:
    """FLOP/s of one large square matmul (``2·n³`` FLOPs): the compute roof the machine reaches."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    r = time_fn(lambda: a @ b, warmup=2, repeat=repeat)
    return 2 * n**3 / r["median_s"]


@torch.no_grad()
def measure_bandwidth(device: torch.device | str = "cpu", mbytes: int = 256, repeat: int = 5) -> float:
    """Bytes/s of copying a large float32 tensor (each byte read once and written once: 2 × size)."""
    device = torch.device(device)
    src = torch.randn(mbytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    r = time_fn(lambda: dst.copy_(src), warmup=2, repeat=repeat)
    return 2 * src.numel() * 4 / r["median_s"]


# --------------------------------------------------------------------------- one model: TTFT and per-token time


@torch.no_grad()
def time_generation(model, inputs: Tensor, n_new: int, *, use_cache: bool = True, repeat: int = 3) -> dict[str, float]:
    """Time a greedy generation of ``n_new`` tokens, split into time to first token (TTFT) and
    the steps after it. Returns medians over ``repeat`` runs, in seconds:
    ``{"ttft_s", "per_token_s", "total_s"}`` (``per_token_s`` = (total − TTFT) / (n_new − 1)), and
    every timed run in ``"ttft_runs"`` and ``"total_runs"`` (their spread, for a verdict).

    * :class:`EncoderOnly`: one pass over ``inputs`` (``n_new`` must be 0); TTFT = total.
    * :class:`DecoderOnly`: prefill of the prompt, then one step per token (``use_cache=False``
      feeds the whole sequence again every step).
    * :class:`EncoderDecoder`: encoder pass + the BOS step, then one decoder step per token.
    """
    device, generates = inputs.device, of(model).generates
    if n_new and not generates:
        raise ValueError("an encoder-only model does not generate: n_new must be 0.")
    ttfts, totals = [], []
    for _ in range(repeat + 1):  # the first run warms up
        _sync(device)
        t0 = time.perf_counter()
        if not generates:
            model(inputs)
            _sync(device)
            t1 = t2 = time.perf_counter()
        else:
            session = _session(model, inputs, use_cache)
            token = session.start().argmax(-1)
            _sync(device)
            t1 = time.perf_counter()
            for _ in range(n_new - 1):
                token = session.step(token).argmax(-1)
            _sync(device)
            t2 = time.perf_counter()
        ttfts.append(t1 - t0)
        totals.append(t2 - t0)
    ttft, total = sorted(ttfts[1:])[repeat // 2], sorted(totals[1:])[repeat // 2]
    return {"ttft_s": ttft, "per_token_s": (total - ttft) / max(n_new - 1, 1), "total_s": total,
            "ttft_runs": ttfts[1:], "total_runs": totals[1:]}


# --------------------------------------------------------------------------- equal-parameter pair


def matched_pair(d_model: int = 64, n_heads: int = 4, dec_layers: int = 9, vocab: int = 512, max_len: int = 4096) -> dict[str, ModelConfig]:
    """A decoder-only model and an encoder-decoder with (almost) the same non-embedding parameters:
    the modern recipe (RMSNorm, SwiGLU with d_ff = 4d, RoPE, no biases), where matching needs about
    0.44 × the depth in each stack (9 decoder-only layers ≈ 4 + 4)."""
    base = dict(vocab_size=vocab, d_model=d_model, n_heads=n_heads, ffn="swiglu", norm="rms", bias=False, pos="rope", max_len=max_len)
    ed_layers = round(costs.matched_depth(dec_layers, d_model))
    return {"decoder-only": ModelConfig(n_layers=dec_layers, **base), "encoder-decoder": ModelConfig(n_layers=ed_layers, **base)}


class _CallCounter(TorchFunctionMode):
    """Counts, by name, the torch functions and tensor methods called inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", repr(func))
        if name != "__get__":  # attribute reads (.shape, .device) are not kernels
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def count_step_calls(model, inputs: Tensor, *, fast_path: bool = False) -> Counter[str]:
    """The torch functions and tensor methods, by name (``"linear"``, ``"add"``, ``"dim"``...), that one
    cached decoding step calls after the session has read ``inputs`` ``(B, n)``. Counted with a
    ``TorchFunctionMode``, so plain Python around the calls is not seen. ``fast_path=False``: the
    general forward pass (lesson 06's path); ``True``: the flat step ``generate`` uses where it can."""
    session, token = DecodingSession(model, inputs, fast_path=fast_path), inputs[:, -1]  # any valid id costs the same
    with torch.inference_mode():  # as generate runs
        session.start()
        with _CallCounter() as counter:
            session.step(token)
    return counter.calls


def count_step_ops(model, inputs: Tensor) -> int:
    """How many torch calls one cached decoding step makes on the general path: the total of
    :func:`count_step_calls`. At toy width each costs about the same fixed overhead, so the time per
    token grows with this count."""
    return sum(count_step_calls(model, inputs).values())


# --------------------------------------------------------------------------- experiments (lesson 06)


def _random_ids(batch: int, n: int, vocab: int, device) -> Tensor:
    return torch.randint(3, vocab, (batch, n), device=device)


@torch.no_grad()
def _started(model, inputs: Tensor) -> tuple[DecodingSession, Tensor]:
    """A session that has read ``inputs`` (decoder-only: the prompt; encoder-decoder: the source, then
    BOS), and a token ``(B,)`` to feed it (the last input token; any valid id costs the same)."""
    session = _session(model, inputs)
    session.start()
    return session, inputs[:, -1]


def time_step(model, inputs: Tensor, repeat: int = 15) -> float:
    """Median seconds of **one** cached decoding step after reading ``inputs`` (decoder-only: the
    prompt; encoder-decoder: the source, then BOS). Each timed step is forgotten again, so every
    run sees the same cache length."""
    session, token = _started(model, inputs)
    n = len(session.cache)

    def step():
        session.step(token)
        session.cache.truncate(n)  # forget the step: the cache keeps its length

    with torch.no_grad():
        return time_fn(step, warmup=3, repeat=repeat)["median_s"]


def step_overhead(cfg: ModelConfig, family: str, device="cpu", repeat: int = 15) -> float:
    """Seconds per cached decoding step (or per encoder pass) of the same architecture at a tiny
    width (d = 8, vocab 16, 8 cached positions): almost no arithmetic, so this is the fixed cost
    of running its operations, the "empty-ish step"."""
    tiny = ModelConfig(**{**cfg.to_dict(), "d_model": 8, "n_heads": 2, "n_kv_heads": None, "d_ff": 32, "vocab_size": 16})
    model = _untrained(family, tiny, device)
    x = _random_ids(1, 8, 16, device)
    if not Family(family).generates:
        with torch.no_grad():
            return time_fn(lambda: model(x), warmup=3, repeat=repeat)["median_s"]
    return time_step(model, x, repeat)


def predict_time(flops: float, overhead_s: float, peak_flops: float, bytes_moved: float = 0.0, bandwidth: float = float("inf")) -> float:
    """The lesson's model of one call: ``overhead + max(FLOPs / peak, bytes / bandwidth)``."""
    return overhead_s + max(flops / peak_flops, bytes_moved / bandwidth)


def machine(device="cpu", quick: bool = False) -> dict[str, float]:
    """Peak matmul FLOP/s and copy bandwidth of this machine (measured)."""
    return {"peak_flops": measure_peak_flops(device, n=512 if quick else 1024, repeat=3 if quick else 7),
            "bandwidth": measure_bandwidth(device, mbytes=32 if quick else 256, repeat=3 if quick else 7)}


def parallel_vs_sequential(cfg: ModelConfig, n_tokens: int, hw: dict, device="cpu", repeat: int = 3) -> dict[str, Any]:
    """Claim 2: one teacher-forced forward over T target tokens vs generating T tokens, per family.
    Counted FLOPs of both, measured times, and the predicted time ratio from :func:`predict_time`
    (``time_ratio["runs"]``: generation / forward, repeat by repeat)."""
    T, V = n_tokens, cfg.vocab_size
    out: dict[str, Any] = {}
    for family in ARCHITECTURES:
        model = _untrained(family, cfg, device)
        x = _random_ids(1, T, V, device)
        o = step_overhead(cfg, family, device)
        with torch.no_grad():
            fwd = (lambda: model(x, x)) if family.cross_attention else (lambda: model(x))
            t_fwd = time_fn(fwd, warmup=1, repeat=repeat)
            t_train = t_fwd["median_s"]
        f_train = count_flops(torch.no_grad()(fwd))
        row = {"train_forward_s": t_train, "train_forward_flops": f_train, "overhead_s": o}
        if family.generates:
            prompt = x if family.cross_attention else x[:, :1]  # dec-only: generate T after a 1-token prompt
            g = time_generation(model, prompt, T, repeat=repeat)
            f_gen = costs.generation_flops(cfg, family, prompt.shape[1], T)["total"]
            pred = (predict_time(f_gen, T * o, hw["peak_flops"])) / predict_time(f_train, o, hw["peak_flops"])
            row |= {"generate_s": g["total_s"], "generate_flops_predicted": f_gen,
                    "time_ratio": {"predicted": pred, "measured": g["total_s"] / t_train,
                                   # repeat i: generation i / forward i (the spread, for a verdict)
                                   "runs": [gen / f for gen, f in zip(g["total_runs"], t_fwd["runs"])]}}
        out[family.value] = row
    return out


def ttft_sweep(cfg: ModelConfig, prompts: list[int], n_new: int, hw: dict, device="cpu", repeat: int = 3) -> list[dict[str, Any]]:
    """Time to first token and time per token vs prompt length P (G = ``n_new``) for the three
    families (decoder-only with and without the cache), with predictions from :func:`predict_time`."""
    rows = []
    overhead = {f: step_overhead(cfg, f, device) for f in ARCHITECTURES}
    models = {f: _untrained(f, cfg, device) for f in ARCHITECTURES}
    peak = hw["peak_flops"]
    enc, dec, encdec = ARCHITECTURES
    for P in prompts:
        x = _random_ids(1, P, cfg.vocab_size, device)
        for name, family, cache in (("encoder-only", enc, True), ("decoder-only", dec, True),
                                    ("decoder-only, no cache", dec, False), ("encoder-decoder", encdec, True)):
            G = n_new if family.generates else 0
            t = time_generation(models[family], x, G, use_cache=cache, repeat=repeat)
            first = costs.generation_flops(cfg, family, P, G)["first_token"]
            # a step at the middle of the generation; without the cache it re-reads the whole sequence
            step = costs.step_flops(cfg, family, P, G // 2, use_cache=cache) if G else 0.0
            rows.append({"family": name, "P": P, "G": G, **t,
                         "ttft_predicted_s": predict_time(first, overhead[family], peak),
                         "per_token_predicted_s": predict_time(step, overhead[family], peak) if G else 0.0,
                         "first_token_flops": first, "step_flops": step if G else 0.0})
    return rows


@torch.no_grad()
def _fill_cache(model, x: Tensor, n_fed: int):
    """A cache as decoding leaves it after reading the prompt ``x`` (decoder-only: into the cache;
    encoder-decoder: into cross-attention) and then ``n_fed`` decoder tokens (the encoder-decoder's
    first is BOS)."""
    session, token = _started(model, x)
    while len(session.cache) < session.n_prompt + n_fed:
        session.step(token)
    return session.cache


def scenario(pair: dict[str, ModelConfig], P: int, G: int, hw: dict, device="cpu", repeat: int = 3, count: bool = True) -> dict[str, Any]:
    """The "1000 + 1000" comparison at equal non-embedding parameters: a prompt of P tokens, G
    generated. For both models: parameters, FLOPs (predicted; counted by the FLOP counter when
    ``count``), KV bytes (predicted; measured from the cache tensors), TTFT, time per token, total
    time and the operations per decoding step. Ratios are encoder-decoder / decoder-only; TTFT's
    prediction is the first output's FLOPs with attention counted in full (``predicted_causal``: the
    decoder-only prefill's masked half left out)."""
    res: dict[str, Any] = {"P": P, "G": G, "models": {}}
    x = torch.randint(3, pair["decoder-only"].vocab_size, (1, P), device=device)
    models = {family: _untrained(family, cfg, device) for family, cfg in pair.items()}
    runs: dict[str, list[dict[str, float]]] = {f: [] for f in models}
    for _ in range(repeat):  # interleave the two models' runs: background load then hits both alike
        for family, model in models.items():
            runs[family].append(time_generation(model, x, G, repeat=1))
    for family, cfg in pair.items():
        model = models[family]
        # generating G tokens feeds G - 1 of them back, after BOS in an encoder-decoder's decoder
        fed = G if Family(family).cross_attention else G - 1
        row: dict[str, Any] = {"layers": cfg.n_layers, "params_non_embedding": costs.stack_params(cfg, family)["total"],
                               "flops_predicted": costs.generation_flops(cfg, family, P, G, attention="full")["total"],
                               "flops_needed_causal": costs.generation_flops(cfg, family, P, G)["total"],
                               # what the first output waits for; "full" also counts the causal prefill's masked half
                               "first_flops_full": costs.generation_flops(cfg, family, P, G, attention="full")["first_token"],
                               "first_flops_causal": costs.generation_flops(cfg, family, P, G)["first_token"],
                               "kv_bytes_predicted": costs.kv_cache_bytes_for(cfg, family, P, fed)["total"]}
        if count:
            from ..generation import generate

            row["flops_counted"] = count_flops(generate, model, x, G, eos_id=None)
        row["kv_bytes_measured"] = costs.cache_bytes(_fill_cache(model, x, fed))["total"]
        row["ops_per_step"] = count_step_ops(model, x[:, :8])
        row |= {k: sorted(r[k] for r in runs[family])[len(runs[family]) // 2] for k in ("ttft_s", "per_token_s", "total_s")}
        res["models"][family] = row
    a, b = res["models"]["encoder-decoder"], res["models"]["decoder-only"]
    ratio = lambda k: a[k] / b[k]
    # each repeat's ratio (its two runs were taken back to back): the spread is the timing's resolution
    paired = lambda k: [e[k] / d[k] for e, d in zip(runs["encoder-decoder"], runs["decoder-only"])]
    res["ratios"] = {
        "params": {"predicted": 1.0, "measured": ratio("params_non_embedding")},
        "flops": {"predicted": ratio("flops_predicted"), "measured": ratio("flops_counted") if count else None},
        "kv_bytes": {"predicted": ratio("kv_bytes_predicted"), "measured": ratio("kv_bytes_measured")},
        "per_token_time": {"predicted": ratio("ops_per_step"), "measured": ratio("per_token_s"), "runs": paired("per_token_s"),
                           "basis": "operations per step (a toy-width step is overhead-bound)"},
        "ttft": {"predicted": ratio("first_flops_full"), "measured": ratio("ttft_s"), "runs": paired("ttft_s"),
                 "predicted_causal": ratio("first_flops_causal"),
                 "basis": "first-output FLOPs, attention counted in full (compute-bound view)"},
        "total_time": {"predicted": ratio("flops_predicted"), "measured": ratio("total_s"), "runs": paired("total_s"),
                       "basis": "FLOPs ratio (compute-bound view)"},
    }
    return res


def roofline_points(cfg: ModelConfig, batches: list[int], n_prompt: int, hw: dict, device="cpu", repeat: int = 5) -> list[dict[str, Any]]:
    """Prefill (``n_prompt`` tokens) and one decoding step (after the prompt) of a decoder-only model
    at several batch sizes: counted FLOPs, bytes moved (weights once + the KV cache read + logits),
    arithmetic intensity, measured time, achieved FLOP/s and the time :func:`predict_time` predicts."""
    model = _untrained("decoder-only", cfg, device)
    n_w = sum(p.numel() for p in model.parameters())  # tied output layer counted once
    o = step_overhead(cfg, "decoder-only", device)
    rows = []
    for B in batches:
        x = torch.randint(3, cfg.vocab_size, (B, n_prompt), device=device)
        with torch.no_grad():
            pre = lambda: model(x, cache=model.new_cache())
            t_pre = time_fn(pre, warmup=1, repeat=repeat)["median_s"]
            f_pre = count_flops(pre)
            cache = model.new_cache()
            model(x, cache=cache)
            kv = costs.cache_bytes(cache)["self"]
            t_step = time_step(model, x, repeat)
            f_step = count_flops(model, x[:, -1:], cache=cache)
        logits = 4 * B * cfg.vocab_size  # bytes of the logits written per position
        for kind, f, t, moved in (("prefill", f_pre, t_pre, 4 * n_w + kv + logits * n_prompt), ("decode", f_step, t_step, 4 * n_w + kv + logits)):
            rows.append({"kind": kind, "batch": B, "flops": f, "bytes": moved, "intensity": f / moved, "time_s": t,
                         "achieved_flops": f / t, "time_predicted_s": predict_time(f, o, hw["peak_flops"], moved, hw["bandwidth"]),
                         "tokens_per_s": B * (n_prompt if kind == "prefill" else 1) / t, "overhead_s": o})
    return rows


def memory_sweep(cfg: ModelConfig, lengths: list[tuple[int, int]], device="cpu") -> list[dict[str, Any]]:
    """KV-cache bytes after a prompt of P tokens and G fed decoder tokens, both decoders: the
    formula and the bytes of the actual cache tensors."""
    rows = []
    for family in ("decoder-only", "encoder-decoder"):
        model = _untrained(family, cfg, device)
        for P, G in lengths:
            x = torch.randint(3, cfg.vocab_size, (1, P), device=device)
            rows.append({"family": family, "P": P, "G": G, "predicted": costs.kv_cache_bytes_for(cfg, family, P, G),
                         "measured": costs.cache_bytes(_fill_cache(model, x, G))})
    return rows


__all__ = [
    "scenario",
    "roofline_points",
    "memory_sweep",
    "ttft_sweep",
    "parallel_vs_sequential",
    "machine",
    "predict_time",
    "step_overhead",
    "time_step",
    "measure_peak_flops",
    "measure_bandwidth",
    "time_generation",
    "matched_pair",
    "count_step_calls",
    "count_step_ops",
    "count_flops",
]
