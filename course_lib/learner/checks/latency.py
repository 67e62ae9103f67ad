"""Checks for lesson 06: KV-cache bytes and the FLOPs of one decoding step, by hand.

* ``kv_cache_bytes(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0)``
* ``decode_step_flops(n_params, n_layers, n_ctx, d, vocab)``

Each known mistake (the factor 2 for K and V forgotten, cross-attention K/V counted once per
generated token, the training-averaged attention term used for one step, the output layer left
out, …) is a :class:`~._core.Variant` whose hint names it.
"""
from __future__ import annotations

from typing import Callable

from ...costs import decode_step_flops as _ref_decode_step_flops
from ...costs import kv_cache_bytes as _ref_kv_cache_bytes
from ._core import Case, Variant, constant_argument_probe, number_hint_probe, product_factor_probe, register, run_check, variant_grid

__all__ = ["check_kv_cache_bytes", "check_decode_step_flops"]


# --------------------------------------------------------------------------------------------
# KV-cache bytes
# --------------------------------------------------------------------------------------------
def _kv_formula(L, h, dh, n, bytes_per_el=4, n_source_tokens=0, *, kv=2, layers=True, bytes_="bytes", cross="once"):
    b = bytes_per_el
    s = {"once": n_source_tokens, "ignored": 0, "per step": n_source_tokens * n, "k only": n_source_tokens / 2,
         "both stacks": 2 * n_source_tokens}[cross]
    unit = {"bytes": b, "none": 1, "bits": 8 * b, "MiB": b / 2 ** 20, "MB": b / 1e6, "KiB": b / 1024}[bytes_]
    return kv * (L if layers else 1) * h * dh * unit * (n + s)


_KV_VARIANTS = variant_grid(
    _kv_formula,
    {
        "kv": {2: "", 1: "the factor 2 is missing: every layer stores a key AND a value vector per token (2 · L · n_kv_heads · d_head)."},
        "layers": {True: "", False: "the number of layers is missing: every layer keeps its own keys and values (× n_layers)."},
        "bytes_": {"bytes": "", "none": "that is a count of numbers, not bytes: multiply by bytes_per_el (4 for float32, 2 for fp16/bf16).",
                   "bits": "that is bits, not bytes: multiply by bytes_per_el, without the factor 8.",
                   "MiB": "that is in MiB (÷ 2**20); return plain bytes, the cell converts them itself.",
                   "MB": "that is in MB (÷ 10**6); return plain bytes, the cell converts them itself.",
                   "KiB": "that is in KiB (÷ 1024); return plain bytes."},
        "cross": {"once": "", "ignored": "the n_source_tokens argument is ignored: the encoder-decoder's cross-attention K/V are missing — every decoder layer also stores K and V "
                                         "of the n_source_tokens source positions (add them to n_tokens).",
                  "per step": "you counted the cross-attention K/V once per generated token; they are computed once from the "
                              "encoder output and then only read: add n_source_tokens once, not n_tokens × n_source_tokens.",
                  "k only": "the cross-attention cache lacks its factor 2: it keeps a key AND a value per source position, just like "
                            "self-attention, so it adds 2 · n_layers · n_kv_heads · d_head · bytes_per_el · n_source_tokens.",
                  "both stacks": "the cross-attention K/V are counted twice (as if the encoder layers kept them too); only the "
                                 "n_layers decoder layers keep K and V of the n_source_tokens source positions."},
    },
) + [
    Variant(lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: _kv_formula(L, h, dh, n, 4, n_source_tokens),
            "the bytes_per_el argument is ignored: use it instead of a hard-coded 4 (fp16 and bf16 take 2 bytes)."),
]


@register("kv_cache_bytes")
def check_kv_cache_bytes(fn: Callable) -> bool:
    """Check ``fn(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0)`` against
    :func:`course_lib.costs.kv_cache_bytes`."""
    cases = [
        Case("decoder-only: 3 layers, 5 heads of 16, 10 tokens, float32", (3, 5, 16, 10)),
        Case("fp16 (2 bytes), 6 layers, 7 K/V heads of 64, 100 tokens", (6, 7, 64, 100), {"bytes_per_el": 2}),
        Case("encoder-decoder: 3 decoder layers, 7 generated, 12 source tokens", (3, 5, 8, 7), {"n_source_tokens": 12}),
        Case("int8 (1 byte), 9 layers, 3 heads of 24, 11 tokens", (9, 3, 24, 11), {"bytes_per_el": 1}),
        Case("one token, one layer, one head of 1", (1, 1, 1, 1), {"bytes_per_el": 2}),
        Case("encoder-decoder, nothing generated yet", (5, 3, 32, 0), {"bytes_per_el": 4, "n_source_tokens": 9}),
    ]
    labels = {0: "n_layers", 1: "n_kv_heads", 2: "d_head", 3: "n_tokens", "bytes_per_el": "bytes_per_el", "n_source_tokens": "n_source_tokens"}
    return run_check("kv_cache_bytes", fn, cases, _ref_kv_cache_bytes, _KV_VARIANTS, output="number", exact=True,
                     arg_names=("n_layers", "n_kv_heads", "d_head", "n_tokens"),
                     probes=[constant_argument_probe("kv_cache_bytes", _ref_kv_cache_bytes, labels),
                             product_factor_probe("kv_cache_bytes", {k: v for k, v in labels.items() if k not in (3, "n_source_tokens")}),
                             number_hint_probe("kv_cache_bytes", "2 (K and V) × n_layers × n_kv_heads × d_head × bytes_per_el × "
                                                            "(n_tokens + n_source_tokens)")])


# --------------------------------------------------------------------------------------------
# FLOPs of one decoding step
# --------------------------------------------------------------------------------------------
def _step_formula(N, L, n, d, V, *, weights=2, attn="step", head=2):
    w = {2: 2 * N, 1: N, 6: 6 * N}[weights]
    a = {"step": 4 * L * n * d, "averaged": 2 * L * n * d, "no layers": 4 * n * d, "none": 0, "quadratic": 4 * L * n * n * d,
         "plus one": 4 * L * (n + 1) * d}[attn]
    return w + a + {2: 2 * d * V, 1: d * V, 0: 0, "per layer": 2 * d * V * L}[head]


_STEP_VARIANTS = variant_grid(
    _step_formula,
    {
        "weights": {2: "", 1: "the weights cost 2 FLOPs each (one multiply and one add): 2·N, not N.",
                    6: "6·N is a training step's cost per token (forward 2·N plus backward 4·N); decoding runs the forward pass only, 2·N."},
        "attn": {"step": "",
                 "averaged": "that is the training-averaged attention term 2·L·n_ctx·d: in a causal pass a token sees half the "
                             "context on average, but ONE decoding step's query sees all n_ctx cached keys: QKᵀ and ·V cost "
                             "2·n_ctx·d each per layer, so 4·L·n_ctx·d.",
                 "no layers": "the attention term is per layer: 4 · n_layers · n_ctx · d.",
                 "none": "the attention over the n_ctx cached keys is missing: 4·L·n_ctx·d (QKᵀ and ·V, 2·n_ctx·d each, per layer).",
                 "quadratic": "the attention term grows with n_ctx²: that is a whole sequence attending to itself (prefill); one "
                              "decoding step's single query reads the n_ctx cached keys once, 4·L·n_ctx·d.",
                 "plus one": "the attention runs over n_ctx keys — the cached ones, the new token's included — not n_ctx + 1."},
        "head": {2: "", 0: "the output layer is missing: turning the last hidden vector into V logits costs 2·d·V, paid every step "
                           "(it is not in the non-embedding N).",
                 1: "the output layer costs 2·d·V (a multiply and an add per weight), not d·V.",
                 "per layer": "the output layer is counted in every layer; it runs once per step, after the last layer: 2·d·V."},
    },
) + [
    Variant(lambda N, L, n, d, V: n * (2 * N + 2 * d * V) + 4 * L * d * n * (n + 1) / 2,
            "that is a whole causal pass over all n_ctx positions (decoding without a cache); with a KV cache a step "
            "processes ONE new token: 2·N + 4·L·n_ctx·d + 2·d·V."),
    Variant(lambda N, L, n, d, V: n * (2 * N + 2 * d * V) + 4 * L * d * n * n,
            "that is a whole pass over all n_ctx positions (decoding without a cache); with a KV cache a step "
            "processes ONE new token: 2·N + 4·L·n_ctx·d + 2·d·V."),
]


@register("decode_step_flops")
def check_decode_step_flops(fn: Callable) -> bool:
    """Check ``fn(n_params, n_layers, n_ctx, d, vocab)`` against :func:`course_lib.costs.decode_step_flops`."""
    cases = [
        Case("N = 1000, 3 layers, 10 cached keys, d = 8, V = 50", (1000, 3, 10, 8, 50)),
        Case("the lesson's model at n_ctx = 512", (793_344, 4, 512, 128, 1000)),
        Case("first step after a 1-token prompt (n_ctx = 2)", (5000, 3, 2, 16, 7)),
        Case("a large model: N = 6.4e9, 32 layers, n_ctx = 4096, d = 4096, V = 32000", (6_400_000_000, 32, 4096, 4096, 32000)),
    ]
    labels = {0: "n_params", 1: "n_layers", 2: "n_ctx", 3: "d", 4: "vocab"}
    return run_check("decode_step_flops", fn, cases, _ref_decode_step_flops, _STEP_VARIANTS, output="number", exact=True,
                     arg_names=("n_params", "n_layers", "n_ctx", "d", "vocab"),
                     probes=[constant_argument_probe("decode_step_flops", _ref_decode_step_flops, labels),
                             number_hint_probe("decode_step_flops", "2·n_params (the weights) + 4·n_layers·n_ctx·d (QKᵀ and ·V over the "
                                                               "cached keys, per layer) + 2·d·vocab (the output layer)")])
