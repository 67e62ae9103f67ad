"""Measure course_lib against PyTorch's own modules, side by side, in one run.

    python benchmarks/run_benchmarks.py                 # full run (a few minutes on a laptop CPU)
    python benchmarks/run_benchmarks.py --quick         # tiny sizes: a smoke test (seconds)
    python benchmarks/run_benchmarks.py --device cuda --threads 4 --out some/dir

(a) attention   course_lib MultiHeadAttention vs nn.MultiheadAttention, forward + backward
(b) training    course_lib EncoderDecoder vs nn.Transformer (same embeddings and output layer),
                one AdamW training step, tokens per second
(c) generation  greedy decoding with and without the KV cache (decoder-only, encoder-decoder)
(d) prefill     a decoder-only prefill (1024 tokens x batch 1, 256 x 8) vs MinimalGPT's (is_causal=True)
(e) decode floor cached greedy decoding vs a minimal plain-PyTorch GPT of the same shape (MinimalGPT),
                and the encoder-decoder's vs a minimal plain-PyTorch encoder-decoder (MinimalEncDec)

Every ratio comes from runs of the two contestants interleaved in one round-robin, and is reported
with the middle half (25th-75th percentile) of its run-by-run ratios.

Prints a table, and writes ``<out>/<hardware-slug>.json`` and ``<out>/<hardware-slug>.md``.
PASS/FAIL compares each number with its target; the script exits 0 either way (it is a
measurement, not a test). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import timeit
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import DecoderOnly, EncoderDecoder, ModelConfig, MultiHeadAttention, causal_mask, generate
from course_lib.bench import compare, compare_many, hardware_info, hardware_slug, paired, report_header, save_report

TARGETS = {  # name -> (comparison, value)
    "mha_no_mask": ("<=", 1.10),  # time ours / theirs
    "mha_causal": ("<=", 1.10),
    "seq2seq_train": (">=", 1.0),  # tokens/s ours / theirs
    "decoder_generation": (">=", 5.0),  # speedup of the KV cache
    "encdec_generation": (None, None),  # reported, no target
    "prefill_1024x1": ("<=", 1.10),  # prefill time ours / MinimalGPT's
    "prefill_256x8": ("<=", 1.10),
    "decode_vs_minimal": ("<=", 1.10),  # per-token time ours / MinimalGPT's
    "decode_vs_minimal_same_mode": ("<=", 1.10),  # the same, MinimalGPT also under inference_mode
    "decode_general_path": (None, None),  # generate(fast_path=False) vs MinimalGPT under inference_mode: reported
    "encdec_decode_vs_minimal": ("<=", 1.10),  # per-token time ours / MinimalEncDec's, both under inference_mode
}


def middle_half(r: dict, invert: bool = False) -> list[float]:
    """The 25th and 75th percentiles of the run-by-run ratios a_i / b_i of one paired comparison
    (``b_i / a_i`` with ``invert``, for speedups and throughputs): how firmly the median ratio sits
    on its side of a target on a machine that other work slows now and then."""
    ratios = [(y / x) if invert else (x / y) for x, y in zip(r["a"]["runs"], r["b"]["runs"])]
    return statistics.quantiles(ratios, n=4, method="inclusive")[::2] if len(ratios) > 1 else ratios * 2


def _passes(name: str, value: float) -> bool | None:
    op, target = TARGETS[name]
    if op is None:
        return None
    return value <= target if op == "<=" else value >= target


# --------------------------------------------------------------------------- (a) attention


def bench_attention(device: torch.device, *, B: int, T: int, d: int, heads: int, repeat: int) -> dict:
    torch.manual_seed(0)
    ours = MultiHeadAttention(d, heads).to(device)
    theirs = nn.MultiheadAttention(d, heads, batch_first=True).to(device)
    with torch.no_grad():  # same weights (the layouts match), so both compute the same function
        theirs.in_proj_weight.copy_(ours.in_proj.weight)
        theirs.in_proj_bias.copy_(ours.in_proj.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(B, T, d, device=device, requires_grad=True)
    grad = torch.randn(B, T, d, device=device)
    allowed = causal_mask(T, device=device)  # course convention: True = may attend

    results = {}
    for name, causal in (("mha_no_mask", False), ("mha_causal", True)):

        def run_ours():
            out = ours(x, mask=allowed if causal else None)
            out.backward(grad)

        def run_theirs():
            # nn.MultiheadAttention's boolean mask means the opposite: True = masked out.
            kw = dict(attn_mask=~allowed, is_causal=True) if causal else {}
            out, _ = theirs(x, x, x, need_weights=False, **kw)
            out.backward(grad)

        with torch.no_grad():
            a = ours(x, mask=allowed if causal else None)
            b, _ = theirs(x, x, x, need_weights=False, **(dict(attn_mask=~allowed, is_causal=True) if causal else {}))
            max_diff = (a - b).abs().max().item()
        r = compare(run_ours, run_theirs, warmup=3, repeat=repeat)
        results[name] = {
            "shape": {"B": B, "T": T, "d": d, "heads": heads},
            "ours_ms": 1e3 * r["a"]["median_s"],
            "theirs_ms": 1e3 * r["b"]["median_s"],
            "ours_iqr_ms": 1e3 * r["a"]["iqr_s"],
            "theirs_iqr_ms": 1e3 * r["b"]["iqr_s"],
            "ratio": r["ratio"],
            "paired_ratio": r["paired_ratio"],
            "paired_ratio_quartiles": middle_half(r),
            "max_abs_diff": max_diff,
            "runs_s": {"ours": r["a"]["runs"], "theirs": r["b"]["runs"]},
        }
    return results


# --------------------------------------------------------------------------- (b) training


class TorchSeq2Seq(nn.Module):
    """nn.Transformer with the same embeddings and output layer as course_lib's EncoderDecoder:
    one shared token embedding, learned positions for source and target, tied output layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.src_pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.tgt_pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.transformer = nn.Transformer(
            cfg.d_model,
            cfg.n_heads,
            cfg.n_enc_layers,
            cfg.n_dec_layers,
            cfg.d_ff,
            dropout=cfg.dropout,
            activation=cfg.ffn,
            batch_first=True,
            norm_first=cfg.norm_first,
            layer_norm_eps=cfg.norm_eps,
        )
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        S, T = src.shape[1], tgt_in.shape[1]
        pad = src == self.cfg.pad_id  # True = padding (PyTorch's convention)
        x = self.tok(src) + self.src_pos(torch.arange(S, device=src.device))
        y = self.tok(tgt_in) + self.tgt_pos(torch.arange(T, device=src.device))
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)
        h = self.transformer(
            x, y, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True
        )
        return self.head(h)


def bench_training(device: torch.device, *, cfg: ModelConfig, B: int, S: int, T: int, repeat: int) -> dict:
    torch.manual_seed(0)
    ours = EncoderDecoder(cfg).to(device)
    theirs = TorchSeq2Seq(cfg).to(device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    src = torch.randint(3, cfg.vocab_size, (B, S), device=device)
    tgt = torch.randint(3, cfg.vocab_size, (B, T + 1), device=device)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def make_step(model):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = model(src, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), tgt_out.reshape(-1))
            loss.backward()
            opt.step()

        return step

    r = compare(make_step(ours), make_step(theirs), warmup=3, repeat=repeat)
    tokens = B * (S + T)  # source + target tokens per step
    ours_tps, theirs_tps = tokens / r["a"]["median_s"], tokens / r["b"]["median_s"]
    return {
        "seq2seq_train": {
            "config": {**{k: getattr(cfg, k) for k in ("vocab_size", "d_model", "n_heads", "n_enc_layers", "n_dec_layers", "d_ff", "ffn", "norm_first")}, "B": B, "S": S, "T": T},
            "params_ours": n_ours,
            "params_theirs": n_theirs,
            "ours_step_ms": 1e3 * r["a"]["median_s"],
            "theirs_step_ms": 1e3 * r["b"]["median_s"],
            "ours_tokens_per_s": ours_tps,
            "theirs_tokens_per_s": theirs_tps,
            "ratio": ours_tps / theirs_tps,
            "paired_ratio": 1 / r["paired_ratio"],
            "paired_ratio_quartiles": middle_half(r, invert=True),
            "runs_s": {"ours": r["a"]["runs"], "theirs": r["b"]["runs"]},
        }
    }


# --------------------------------------------------------------------------- (c) generation


def bench_generation(device: torch.device, *, quick: bool, repeat: int) -> dict:
    torch.manual_seed(0)
    results = {}
    # decoder-only: d=128, 4 layers, learned positions, batch 1
    n_new, prompt_len = (48, 8) if quick else (512, 16)
    cfg = ModelConfig(vocab_size=256, d_model=128, n_heads=4, n_layers=4, max_len=1024)
    model = DecoderOnly(cfg).to(device).eval()
    prompt = torch.randint(3, cfg.vocab_size, (1, prompt_len), device=device)
    run = lambda cache: generate(model, prompt, n_new, eos_id=None, use_cache=cache)
    same = torch.equal(run(True), run(False))
    r = compare(lambda: run(True), lambda: run(False), warmup=1, repeat=repeat)
    results["decoder_generation"] = {
        "config": {"d_model": 128, "n_layers": 4, "n_heads": 4, "pos": "learned", "max_len": 1024, "batch": 1, "prompt_len": prompt_len, "new_tokens": n_new},
        "cached_s": r["a"]["median_s"],
        "uncached_s": r["b"]["median_s"],
        "cached_ms_per_token": 1e3 * r["a"]["median_s"] / n_new,
        "uncached_ms_per_token": 1e3 * r["b"]["median_s"] / n_new,
        "speedup": 1 / r["ratio"],
        "paired_speedup": 1 / r["paired_ratio"],
        "paired_speedup_quartiles": middle_half(r, invert=True),
        "same_tokens": same,
        "runs_s": {"cached": r["a"]["runs"], "uncached": r["b"]["runs"]},
    }
    # encoder-decoder: 2 + 2 layers, source of 32 tokens, 128 new tokens
    n_new, src_len = (24, 8) if quick else (128, 32)
    cfg = ModelConfig(vocab_size=256, d_model=128, n_heads=4, n_layers=2, max_len=256)
    model = EncoderDecoder(cfg).to(device).eval()
    src = torch.randint(3, cfg.vocab_size, (1, src_len), device=device)
    run = lambda cache: generate(model, src, n_new, eos_id=None, use_cache=cache)
    same = torch.equal(run(True), run(False))
    r = compare(lambda: run(True), lambda: run(False), warmup=1, repeat=repeat)
    results["encdec_generation"] = {
        "config": {"d_model": 128, "n_enc_layers": 2, "n_dec_layers": 2, "n_heads": 4, "batch": 1, "src_len": src_len, "new_tokens": n_new},
        "cached_s": r["a"]["median_s"],
        "uncached_s": r["b"]["median_s"],
        "cached_ms_per_token": 1e3 * r["a"]["median_s"] / n_new,
        "uncached_ms_per_token": 1e3 * r["b"]["median_s"] / n_new,
        "speedup": 1 / r["ratio"],
        "paired_speedup": 1 / r["paired_ratio"],
        "paired_speedup_quartiles": middle_half(r, invert=True),
        "same_tokens": same,
        "runs_s": {"cached": r["a"]["runs"], "uncached": r["b"]["runs"]},
    }
    return results


# --------------------------------------------------------------------------- (d) decode floor


class MinimalGPT(nn.Module):
    """The floor for cached decoding: a plain-PyTorch GPT with nothing but the arithmetic.
    Pre-norm, learned positions, ``F.scaled_dot_product_attention``, a preallocated KV cache,
    no masks (one query may see every cached key), no checks. Same shapes as ``DecoderOnly``."""

    def __init__(self, vocab: int, d: int, n_layers: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.d, self.h, self.max_len = d, n_heads, max_len
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.layers = nn.ModuleList(
            nn.ModuleDict(dict(ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), proj=nn.Linear(d, d),
                               ln2=nn.LayerNorm(d), fc=nn.Linear(d, 4 * d), out=nn.Linear(4 * d, d)))
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor, cache: list[torch.Tensor], start: int) -> torch.Tensor:
        B, T = idx.shape
        h, dh = self.h, self.d // self.h
        x = self.tok(idx) + self.pos.weight[start : start + T]
        end = start + T
        for layer, kv in zip(self.layers, cache):
            q, k, v = layer["qkv"](layer["ln1"](x)).view(B, T, 3, h, dh).permute(2, 0, 3, 1, 4)
            kv[0, :, :, start:end] = k
            kv[1, :, :, start:end] = v
            a = F.scaled_dot_product_attention(q, kv[0, :, :, :end], kv[1, :, :, :end], is_causal=T > 1)
            x = x + layer["proj"](a.transpose(1, 2).reshape(B, T, self.d))
            x = x + layer["out"](F.gelu(layer["fc"](layer["ln2"](x))))
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
        B, P = prompt.shape
        dh = self.d // self.h
        cache = [torch.empty(2, B, self.h, self.max_len, dh, device=prompt.device) for _ in self.layers]
        token = self(prompt, cache, 0)[:, -1].argmax(-1, keepdim=True)
        out = [token]
        for t in range(P, P + n_new - 1):
            token = self(token, cache, t)[:, -1].argmax(-1, keepdim=True)
            out.append(token)
        return torch.cat(out, dim=1)


def python_work(run, n_short: int, n_long: int) -> dict:
    """Python-level work per generated token of ``run(n_new)``: ``nn.Module`` calls, and attribute
    reads that miss the instance dict and go through ``nn.Module.__getattr__`` (every submodule and
    parameter read such as ``self.proj`` or ``self.weight``). Counted, not timed: the difference
    between ``n_long`` and ``n_short`` tokens, divided by the extra tokens."""
    counts = {"module_calls": 0, "getattr": 0}

    def count_call(module, args):
        counts["module_calls"] += 1

    original = nn.Module.__getattr__

    def counting_getattr(self, name):
        counts["getattr"] += 1
        return original(self, name)

    def measure(n: int) -> dict:
        counts.update(module_calls=0, getattr=0)
        handle = torch.nn.modules.module.register_module_forward_pre_hook(count_call)
        nn.Module.__getattr__ = counting_getattr
        try:
            run(n)
        finally:
            nn.Module.__getattr__ = original
            handle.remove()
        return dict(counts)

    short, long = measure(n_short), measure(n_long)
    return {k: (long[k] - short[k]) / (n_long - n_short) for k in counts}


def python_unit_costs(repeat: int = 5, number: int = 20000) -> dict:
    """Seconds one ``nn.Module`` call and one ``__getattr__`` read cost on this machine and Python:
    calling an ``nn.Identity`` minus calling a plain function; reading a parameter (``lin.weight``)
    minus reading a plain attribute (``lin.in_features``). Minimum over ``repeat`` timings."""
    lin, ident = nn.Linear(4, 4), nn.Identity()
    plain = lambda x: x  # noqa: E731
    t = lambda stmt: min(timeit.repeat(stmt, globals={"lin": lin, "ident": ident, "plain": plain}, number=number, repeat=repeat)) / number
    return {
        "module_call_s": max(t("ident(1)") - t("plain(1)"), 0.0),
        "getattr_s": max(t("lin.weight") - t("lin.in_features"), 0.0),
        "python": sys.version.split()[0],
    }


def gpt_pair(device: torch.device, V: int, d: int, L: int, H: int, max_len: int) -> tuple[DecoderOnly, MinimalGPT]:
    """A ``DecoderOnly`` and a :class:`MinimalGPT` of the same shape with the same weights, in eval mode."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, d_model=d, n_heads=H, n_layers=L, max_len=max_len)
    ours = DecoderOnly(cfg).to(device).eval()
    floor = MinimalGPT(V, d, L, H, max_len).to(device).eval()
    with torch.no_grad():  # copy the weights across so both compute the same function
        floor.tok.weight.copy_(ours.embed.tok.weight)
        floor.pos.weight.copy_(ours.embed.pos.weight)
        for mine, b in zip(floor.layers, ours.blocks):
            for a, src in (("ln1", b.norm1), ("ln2", b.norm2)):
                mine[a].load_state_dict(src.state_dict())
            mine["qkv"].load_state_dict(b.self_attn.in_proj.state_dict())
            mine["proj"].load_state_dict(b.self_attn.out_proj.state_dict())
            mine["fc"].load_state_dict(b.ffn.linear1.state_dict())
            mine["out"].load_state_dict(b.ffn.linear2.state_dict())
        floor.ln_f.load_state_dict(ours.norm.state_dict())
    return ours, floor


def bench_prefill(device: torch.device, *, quick: bool, repeat: int) -> dict:
    """One prefill (the prompt through a fresh KV cache, logits at every position) of a ``DecoderOnly``
    vs :class:`MinimalGPT` (``is_causal=True``), same shapes and weights, both under ``inference_mode``."""
    V, d, L, H = 1000, 128, 4, 4
    shapes = {"prefill_1024x1": (1, 64), "prefill_256x8": (2, 32)} if quick else {"prefill_1024x1": (1, 1024), "prefill_256x8": (8, 256)}
    ours, floor = gpt_pair(device, V, d, L, H, max(T for _, T in shapes.values()))
    results = {}
    for name, (B, T) in shapes.items():
        x = torch.randint(3, V, (B, T), device=device)

        def run_ours():
            with torch.inference_mode():
                return ours(x, cache=ours.new_cache())

        def run_floor():
            with torch.inference_mode():
                cache = [torch.empty(2, B, H, floor.max_len, d // H, device=device) for _ in floor.layers]
                return floor(x, cache, 0)

        max_diff = (run_ours() - run_floor()).abs().max().item()
        r = compare(run_ours, run_floor, warmup=2, repeat=repeat)
        results[name] = {
            "config": {"vocab_size": V, "d_model": d, "n_layers": L, "n_heads": H, "batch": B, "tokens": T},
            "ours_ms": 1e3 * r["a"]["median_s"],
            "minimal_ms": 1e3 * r["b"]["median_s"],
            "ratio": r["ratio"],
            "paired_ratio": r["paired_ratio"],
            "paired_ratio_quartiles": middle_half(r),
            "max_abs_diff": max_diff,
            "runs_s": {"ours": r["a"]["runs"], "minimal": r["b"]["runs"]},
        }
    return results


def per_token_row(r: dict, n_new: int) -> dict:
    """Per-token times of one interleaved comparison of two generations, ours (a) vs minimal (b)."""
    return {
        "ours_s": r["a"]["median_s"],
        "minimal_s": r["b"]["median_s"],
        "ours_ms_per_token": 1e3 * r["a"]["median_s"] / n_new,
        "minimal_ms_per_token": 1e3 * r["b"]["median_s"] / n_new,
        "ratio": r["ratio"],
        "paired_ratio": r["paired_ratio"],
        "paired_ratio_quartiles": middle_half(r),
        "runs_s": {"ours": r["a"]["runs"], "minimal": r["b"]["runs"]},
    }


def bench_decode_floor(device: torch.device, *, quick: bool, repeat: int) -> dict:
    """``generate`` (cached, greedy) vs :class:`MinimalGPT`, same shapes, same weights, batch 1."""
    n_new, prompt_len = (48, 8) if quick else (512, 16)
    V, d, L, H = 1000, 128, 4, 4
    ours, floor = gpt_pair(device, V, d, L, H, 1024)
    prompt = torch.randint(3, V, (1, prompt_len), device=device)
    run_ours = lambda: generate(ours, prompt, n_new, eos_id=None)  # steps take the fast path (course_lib.fast_decode)
    run_general = lambda: generate(ours, prompt, n_new, eos_id=None, fast_path=False)  # every step through forward
    run_floor = lambda: floor.generate(prompt, n_new)

    def run_floor_inference_mode():  # the same minimal model under the mode `generate` uses
        with torch.inference_mode():
            return floor.generate(prompt, n_new)

    same = torch.equal(run_ours(), run_floor()) and torch.equal(run_general(), run_floor())
    # all four round-robin, so that every ratio below compares runs made at about the same moment
    t = compare_many({"ours": run_ours, "general": run_general, "minimal": run_floor, "minimal_im": run_floor_inference_mode},
                     warmup=1, repeat=repeat)
    r, r_same, r_general = paired(t["ours"], t["minimal"]), paired(t["ours"], t["minimal_im"]), paired(t["general"], t["minimal_im"])
    # What the gaps are made of: the models run the same tensor operations, so count the Python-level
    # work per token and price it with this machine's cost of one module call and one submodule read.
    work_ours = python_work(lambda n: generate(ours, prompt, n, eos_id=None), 4, 12)
    work_general = python_work(lambda n: generate(ours, prompt, n, eos_id=None, fast_path=False), 4, 12)
    work_min = python_work(lambda n: floor.generate(prompt, n), 4, 12)
    unit = python_unit_costs()

    def work(mine: dict) -> dict:
        extra_s = sum((mine[k] - work_min[k]) * unit[c] for k, c in (("module_calls", "module_call_s"), ("getattr", "getattr_s")))
        return {"ours": mine, "minimal": work_min, "unit_costs": unit, "predicted_extra_ms_per_token": 1e3 * extra_s}

    row = lambda r: per_token_row(r, n_new)
    config = {"vocab_size": V, "d_model": d, "n_layers": L, "n_heads": H, "pos": "learned", "batch": 1, "prompt_len": prompt_len, "new_tokens": n_new}
    return {
        "decode_vs_minimal": {"config": config, **row(r), "same_tokens": same},
        # `generate` runs under torch.inference_mode; the minimal model above under no_grad, as a
        # minimal GPT is usually written. The same model under inference_mode separates what our
        # code costs from what the mode saves.
        "decode_vs_minimal_same_mode": {**row(r_same), "python_work_per_token": work(work_ours)},
        # the general forward pass for every step (no fast path): what the library's structure costs
        "decode_general_path": {**row(r_general), "python_work_per_token": work(work_general)},
    }


class MinimalEncDec(nn.Module):
    """The floor for encoder-decoder decoding: a plain-PyTorch encoder-decoder with nothing but the
    arithmetic, the counterpart of :class:`MinimalGPT`. Pre-norm, learned positions (one table per
    stack, one shared token embedding, tied output layer), ``F.scaled_dot_product_attention``, a
    preallocated self-attention cache, cross-attention keys/values computed once per source; no
    masks (unpadded sources), no checks. Same shapes as ``EncoderDecoder``."""

    def __init__(self, vocab: int, d: int, n_enc: int, n_dec: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.d, self.h, self.max_len = d, n_heads, max_len
        self.tok, self.src_pos, self.tgt_pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d), nn.Embedding(max_len, d)
        ffn = lambda: dict(ln2=nn.LayerNorm(d), fc=nn.Linear(d, 4 * d), out=nn.Linear(4 * d, d))
        self.enc = nn.ModuleList(nn.ModuleDict(dict(ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), proj=nn.Linear(d, d), **ffn()))
                                 for _ in range(n_enc))
        self.dec = nn.ModuleList(
            nn.ModuleDict(dict(ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), proj=nn.Linear(d, d),
                               lnx=nn.LayerNorm(d), xq=nn.Linear(d, d), xkv=nn.Linear(d, 2 * d), xproj=nn.Linear(d, d), **ffn()))
            for _ in range(n_dec)
        )
        self.ln_enc, self.ln_dec = nn.LayerNorm(d), nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def _split(self, t: torch.Tensor, n: int) -> torch.Tensor:  # (B, T, n*d) -> (n, B, h, T, d_head)
        B, T, _ = t.shape
        return t.view(B, T, n, self.h, self.d // self.h).permute(2, 0, 3, 1, 4)

    def _merge(self, a: torch.Tensor) -> torch.Tensor:  # (B, h, T, d_head) -> (B, T, d)
        return a.transpose(1, 2).reshape(a.shape[0], a.shape[2], self.d)

    def encode(self, src: torch.Tensor) -> list[torch.Tensor]:
        """The encoder pass, then every decoder layer's cross-attention K/V ``(2, B, h, S, d_head)``, once."""
        x = self.tok(src) + self.src_pos.weight[: src.shape[1]]
        for layer in self.enc:
            q, k, v = self._split(layer["qkv"](layer["ln1"](x)), 3)
            x = x + layer["proj"](self._merge(F.scaled_dot_product_attention(q, k, v)))
            x = x + layer["out"](F.gelu(layer["fc"](layer["ln2"](x))))
        memory = self.ln_enc(x)
        return [self._split(layer["xkv"](memory), 2) for layer in self.dec]

    def decode(self, idx: torch.Tensor, cache: list[torch.Tensor], cross: list[torch.Tensor], start: int) -> torch.Tensor:
        T = idx.shape[1]
        end = start + T
        x = self.tok(idx) + self.tgt_pos.weight[start:end]
        for layer, kv, xkv in zip(self.dec, cache, cross):
            q, k, v = self._split(layer["qkv"](layer["ln1"](x)), 3)
            kv[0, :, :, start:end] = k
            kv[1, :, :, start:end] = v
            x = x + layer["proj"](self._merge(F.scaled_dot_product_attention(q, kv[0, :, :, :end], kv[1, :, :, :end], is_causal=T > 1)))
            q = self._split(layer["xq"](layer["lnx"](x)), 1)[0]
            x = x + layer["xproj"](self._merge(F.scaled_dot_product_attention(q, xkv[0], xkv[1])))
            x = x + layer["out"](F.gelu(layer["fc"](layer["ln2"](x))))
        return self.head(self.ln_dec(x))

    @torch.no_grad()
    def generate(self, src: torch.Tensor, n_new: int, bos: int = 1) -> torch.Tensor:
        B = src.shape[0]
        cross = self.encode(src)
        cache = [torch.empty(2, B, self.h, self.max_len, self.d // self.h, device=src.device) for _ in self.dec]
        token = torch.full((B, 1), bos, dtype=torch.long, device=src.device)
        out = []
        for t in range(n_new):
            token = self.decode(token, cache, cross, t)[:, -1].argmax(-1, keepdim=True)
            out.append(token)
        return torch.cat(out, dim=1)


def encdec_pair(device: torch.device, V: int, d: int, L: int, H: int, max_len: int) -> tuple[EncoderDecoder, MinimalEncDec]:
    """An ``EncoderDecoder`` (L + L layers) and a :class:`MinimalEncDec` of the same shape with the same weights."""
    torch.manual_seed(0)
    ours = EncoderDecoder(ModelConfig(vocab_size=V, d_model=d, n_heads=H, n_layers=L, max_len=max_len)).to(device).eval()
    floor = MinimalEncDec(V, d, L, L, H, max_len).to(device).eval()
    with torch.no_grad():
        floor.tok.weight.copy_(ours.src_embed.tok.weight)
        floor.src_pos.weight.copy_(ours.src_embed.pos.weight)
        floor.tgt_pos.weight.copy_(ours.tgt_embed.pos.weight)
        for mine, b in zip([*floor.enc, *floor.dec], [*ours.encoder, *ours.decoder]):
            for a, src in (("ln1", b.norm1), ("ln2", b.norm2), ("qkv", b.self_attn.in_proj), ("proj", b.self_attn.out_proj),
                           ("fc", b.ffn.linear1), ("out", b.ffn.linear2)):
                mine[a].load_state_dict(src.state_dict())
            if b.cross_attn is not None:  # our cross-attention keeps W_Q, W_K, W_V in one in_proj: rows [:d] and [d:]
                mine["lnx"].load_state_dict(b.norm_cross.state_dict())
                w, bias = b.cross_attn.in_proj.weight, b.cross_attn.in_proj.bias
                mine["xq"].weight.copy_(w[:d]), mine["xq"].bias.copy_(bias[:d])
                mine["xkv"].weight.copy_(w[d:]), mine["xkv"].bias.copy_(bias[d:])
                mine["xproj"].load_state_dict(b.cross_attn.out_proj.state_dict())
        floor.ln_enc.load_state_dict(ours.enc_norm.state_dict())
        floor.ln_dec.load_state_dict(ours.dec_norm.state_dict())
    return ours, floor


def bench_encdec_floor(device: torch.device, *, quick: bool, repeat: int) -> dict:
    """``generate`` (cached, greedy) of an ``EncoderDecoder`` vs :class:`MinimalEncDec`, same shapes and
    weights, batch 1, both under ``inference_mode``: the encoder pass, then one decoder step per token."""
    n_new, src_len = (24, 8) if quick else (256, 32)
    V, d, L, H = 1000, 128, 2, 4
    ours, floor = encdec_pair(device, V, d, L, H, 512)
    src = torch.randint(3, V, (1, src_len), device=device)
    run_ours = lambda: generate(ours, src, n_new, eos_id=None)

    def run_floor():
        with torch.inference_mode():
            return floor.generate(src, n_new)

    same = torch.equal(run_ours(), run_floor())
    r = compare(run_ours, run_floor, warmup=1, repeat=repeat)
    config = {"vocab_size": V, "d_model": d, "n_enc_layers": L, "n_dec_layers": L, "n_heads": H, "pos": "learned", "batch": 1,
              "src_len": src_len, "new_tokens": n_new}
    return {"encdec_decode_vs_minimal": {"config": config, **per_token_row(r, n_new), "same_tokens": same}}


# --------------------------------------------------------------------------- report

HEADLINE = {  # name -> (what, key of the headline number, unit)
    "mha_no_mask": ("MHA fwd+bwd, no mask: time ours / nn.MultiheadAttention", "paired_ratio", "x"),
    "mha_causal": ("MHA fwd+bwd, causal: time ours / nn.MultiheadAttention", "paired_ratio", "x"),
    "seq2seq_train": ("Enc-dec training step: tokens/s ours / nn.Transformer", "paired_ratio", "x"),
    "decoder_generation": ("Decoder-only greedy: uncached / cached time", "paired_speedup", "x"),
    "encdec_generation": ("Enc-dec greedy: uncached / cached time", "paired_speedup", "x"),
    "decode_vs_minimal": ("Cached decoding, batch 1: time per token ours / minimal GPT", "paired_ratio", "x"),
    "decode_vs_minimal_same_mode": ("... the minimal GPT also under inference_mode", "paired_ratio", "x"),
    "decode_general_path": ("... every step through the general forward pass (fast_path=False)", "paired_ratio", "x"),
    "prefill_1024x1": ("Decoder-only prefill, 1024 tokens x batch 1: time ours / minimal GPT (is_causal)", "paired_ratio", "x"),
    "prefill_256x8": ("Decoder-only prefill, 256 tokens x batch 8: time ours / minimal GPT (is_causal)", "paired_ratio", "x"),
    "encdec_decode_vs_minimal": ("Enc-dec cached decoding, batch 1: time per token ours / minimal enc-dec", "paired_ratio", "x"),
}


def _details(name: str, r: dict) -> str:
    if name.startswith("mha"):
        return f"ours {r['ours_ms']:.2f} ms, theirs {r['theirs_ms']:.2f} ms (ratio of medians {r['ratio']:.2f})"
    if name.startswith("prefill"):
        c = r["config"]
        return (f"{c['batch']} x {c['tokens']} tokens: ours {r['ours_ms']:.2f} ms, minimal {r['minimal_ms']:.2f} ms "
                f"(ratio of medians {r['ratio']:.2f}; largest logit difference {r['max_abs_diff']:.1e})")
    if name == "seq2seq_train":
        return f"ours {r['ours_tokens_per_s']:,.0f} tok/s, theirs {r['theirs_tokens_per_s']:,.0f} tok/s (ratio of medians {r['ratio']:.2f})"
    if "ours_ms_per_token" in r:
        text = f"ours {r['ours_ms_per_token']:.3f} ms/token, minimal {r['minimal_ms_per_token']:.3f} ms/token (ratio of medians {r['ratio']:.2f})"
        if "python_work_per_token" in r:
            w = r["python_work_per_token"]
            text += (f"; per token ours {w['ours']['module_calls']:.0f} module calls and {w['ours']['getattr']:.0f} submodule reads, "
                     f"minimal {w['minimal']['module_calls']:.0f} and {w['minimal']['getattr']:.0f}: "
                     f"{w['predicted_extra_ms_per_token']:.3f} ms/token at this machine's cost of each")
        return text
    c = r["config"]
    return f"{c['new_tokens']} tokens: cached {r['cached_s']:.3f} s, uncached {r['uncached_s']:.3f} s"


def render_markdown(report: dict) -> str:
    lines = [
        *report_header("Benchmarks", report),
        "",
        "| benchmark | measured | target | verdict | details |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        what, key, unit = HEADLINE[name]
        op, target = TARGETS[name]
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r["pass"]]
        target_s = f"{op} {target}{unit}" if op else "-"
        spread = r.get(f"{key}_quartiles")  # the middle half of the run-by-run ratios
        measured = f"{r[key]:.2f}{unit}" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")
        lines.append(f"| {what} | {measured} | {target_s} | {verdict} | {_details(name, r)} |")
    if report.get("earlier_command"):
        lines.insert(len(report_header("Benchmarks", report)), f"- other rows kept from: `{report['earlier_command']}`")
    lines += ["", "Medians of the run-by-run ratios of interleaved runs, in brackets the middle half (25th-75th percentile) "
              "of those ratios; see benchmarks/README.md for what each number means.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the .json and .md")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed runs per function (default 15, quick 3; generation 3, quick 2; decode floor 48, quick 4)")
    p.add_argument("--only", nargs="*", choices=["attention", "training", "generation", "prefill", "floor"],
                   help="run only these parts (updating them in an existing report for this machine)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    quick = args.quick
    repeat = args.repeat or (3 if quick else 15)
    parts = set(args.only or ["attention", "training", "generation", "prefill", "floor"])

    results: dict[str, dict] = {}
    if "attention" in parts:
        shape = dict(B=2, T=16, d=32, heads=4) if quick else dict(B=8, T=128, d=256, heads=4)
        results |= bench_attention(device, **shape, repeat=repeat)
    if "training" in parts:
        if quick:
            cfg = ModelConfig(vocab_size=64, d_model=32, n_heads=4, n_layers=1, d_ff=64, ffn="relu", norm_first=False, max_len=16)
            results |= bench_training(device, cfg=cfg, B=2, S=8, T=8, repeat=repeat)
        else:
            cfg = ModelConfig(vocab_size=1000, d_model=256, n_heads=4, n_enc_layers=3, n_dec_layers=3, d_ff=1024, ffn="relu", norm_first=False, max_len=64)
            results |= bench_training(device, cfg=cfg, B=16, S=64, T=64, repeat=repeat)
    if "generation" in parts:
        results |= bench_generation(device, quick=quick, repeat=args.repeat or (2 if quick else 3))
    if "prefill" in parts:
        results |= bench_prefill(device, quick=quick, repeat=repeat)
    if "floor" in parts:
        # 48 rounds: on a busy 2-core machine the middle half of 24 run-by-run ratios spans about 0.2
        results |= bench_decode_floor(device, quick=quick, repeat=args.repeat or (4 if quick else 48))
        results |= bench_encdec_floor(device, quick=quick, repeat=args.repeat or (4 if quick else 48))

    for name, r in results.items():
        key = HEADLINE[name][1]
        r["target"] = TARGETS[name][1]
        r["pass"] = _passes(name, r[key])

    info = hardware_info()
    slug = hardware_slug(info, device, quick)
    previous = Path(args.out) / f"{slug}.json"
    earlier = None
    if args.only and previous.is_file():  # a partial run updates its parts of this machine's report
        old = json.loads(previous.read_text(encoding="utf-8"))
        kept = {k: v for k, v in old["results"].items() if k in HEADLINE and k not in results}
        for v in kept.values():  # a row remembers the run that measured it, through any number of partial runs
            v.setdefault("measured_by", f"{old['command']} ({old['date']})")
        if kept:
            runs: dict[str, list[str]] = {}
            for k, v in kept.items():
                runs.setdefault(v["measured_by"], []).append(k)
            results, earlier = {**kept, **results}, "; ".join(f"{cmd}: {', '.join(rows)}" for cmd, rows in runs.items())
    report = {
        "slug": slug,
        "hardware": info,
        "device": str(device),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0] if argv is None else "benchmarks/run_benchmarks.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": quick,
        "repeat": repeat,
        "results": results,
    }
    if earlier:
        report["earlier_command"] = earlier
    save_report(report, args.out, render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
