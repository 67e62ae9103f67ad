"""What a transformer costs: parameters, FLOPs, KV-cache memory, and a FLOP counter that sees attention.

    attention (Q, K, V, O)          4·d²                      (+ 4·d biases)
    FFN, ReLU/GELU                  2·d·d_ff                  (+ d_ff + d biases)
    FFN, SwiGLU                     3·d·d_ff
    decoder layer + cross-attention + 4·d²
    forward FLOPs per token         ≈ 2·N + 2·L·n_ctx·d       (Kaplan et al. 2020, Table 1)
    training FLOPs per token        ≈ 3 × forward ≈ 6·N       (backward = 2 × forward)
    KV cache bytes per token        = 2 · L · n_kv_heads · d_head · bytes per element
    one decoding step (KV cache)    = 2·N + 4·L·n_ctx·d + 2·d·V   (one query over n_ctx cached keys, + logits)

``N`` is the number of *non-embedding* parameters (what :meth:`~course_lib.models.DecoderOnly.num_parameters`
returns by default), ``L`` the number of layers, ``n_ctx`` the context length, ``d`` the model width.

Why "2·N": every weight is used once per token in one multiply and one add. Why "2·L·n_ctx·d":
the scores ``QKᵀ`` and the mix ``softmax(·) V`` each cost ``2·n_ctx·d`` per token and layer
(4·n_ctx·d together), and a causal mask lets a token see only half the context on average.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from .config import ModelConfig

# --------------------------------------------------------------------------- parameters


def attention_params(d: int, bias: bool = False, d_kv: int | None = None) -> int:
    """Parameters of one multi-head attention layer: W_Q, W_K, W_V, W_O, each d×d -> ``4·d²``
    (``+ 4·d`` with biases). The number of heads does not matter: heads split d, they don't add to it.

    With grouped-query attention K and V are only ``d_kv = n_kv_heads · d_head`` wide:
    ``2·d² + 2·d·d_kv`` (+ ``2·d + 2·d_kv`` biases)."""
    d_kv = d if d_kv is None else d_kv
    return 2 * d * d + 2 * d * d_kv + ((2 * d + 2 * d_kv) if bias else 0)


def ffn_params(d: int, d_ff: int, swiglu: bool = False, bias: bool = False) -> int:
    """Parameters of the position-wise FFN: ``2·d·d_ff`` (ReLU/GELU: up and down projection) or
    ``3·d·d_ff`` (SwiGLU: gate, up and down). Biases add ``d_ff + d`` (or ``2·d_ff + d`` for SwiGLU)."""
    if swiglu:
        return 3 * d * d_ff + ((2 * d_ff + d) if bias else 0)
    return 2 * d * d_ff + ((d_ff + d) if bias else 0)


def norm_params(d: int, kind: str = "layer") -> int:
    """LayerNorm has a scale and a shift (``2·d``); RMSNorm only a scale (``d``)."""
    return 2 * d if kind == "layer" else d


def layer_params(cfg: ModelConfig, kind: str = "decoder") -> int:
    """Exact parameter count of one block built from ``cfg``.

    ``kind``: ``"encoder"`` or ``"decoder"`` (self-attention + FFN; the same size) or
    ``"cross-decoder"`` (the encoder-decoder's decoder block: one more attention and one more norm).
    Matches ``sum(p.numel() for p in block.parameters())`` of the course's blocks.
    """
    if kind not in ("encoder", "decoder", "cross-decoder"):
        raise ValueError(f"kind must be 'encoder', 'decoder' or 'cross-decoder'; got {kind!r}.")
    d = cfg.d_model
    attn = attention_params(d, cfg.bias, cfg.kv_heads * cfg.d_head) + (2 * norm_params(cfg.d_head, "rms") if cfg.qk_norm else 0)
    attn += norm_params(d, cfg.norm) if getattr(cfg, "attn_out_norm", False) else 0  # V-norm has no parameters
    n_attn = 2 if kind == "cross-decoder" else 1
    total = n_attn * (attn + norm_params(d, cfg.norm))
    total += ffn_params(d, cfg.d_ff, cfg.ffn == "swiglu", cfg.bias) + norm_params(d, cfg.norm)
    return total


def matched_depth(n_layers: int, d: int, d_ff: int | None = None, *, swiglu: bool = True) -> float:
    """Depth of *each* stack of an encoder-decoder with the same non-embedding parameters as a
    decoder-only model of ``n_layers`` layers (biases and norms ignored, as in the brief).

        decoder-only : L · (4d² + f)              f = FFN parameters (3·d·d_ff for SwiGLU)
        enc-dec      : L' · (4d² + f) + L' · (8d² + f)
        => L' = L · (4d² + f) / (12d² + 2f)

    With ``d_ff = 4d`` and SwiGLU, ``f = 12d²`` and ``L' = 16/36 · L ≈ 0.44 L``.
    Returns a float; round it (and check the parameter counts) when building models.
    """
    d_ff = 4 * d if d_ff is None else d_ff
    f = ffn_params(d, d_ff, swiglu)
    attn = attention_params(d)
    return n_layers * (attn + f) / (3 * attn + 2 * f)


# --------------------------------------------------------------------------- FLOPs


def forward_flops_per_token(n_params: int, n_layers: int, n_ctx: int, d: int) -> float:
    """Kaplan et al.'s estimate ``2·N + 2·L·n_ctx·d`` for one token of a forward pass.

    ``N`` non-embedding parameters; the second term is attention over the context (already
    halved for a causal mask, see the module docstring). Leaves out the output layer (2·d·V),
    norms, softmax and other element-wise work.
    """
    return 2 * n_params + 2 * n_layers * n_ctx * d


def train_flops_per_token(n_params: int, n_layers: int, n_ctx: int, d: int) -> float:
    """Forward + backward ≈ 3 × forward (backward computes gradients for both the activations and
    the weights: two matmuls for every forward one). ``≈ 6·N`` when ``n_ctx`` is small next to ``d``."""
    return 3 * forward_flops_per_token(n_params, n_layers, n_ctx, d)


def decoder_only_sequence_flops(n_params: int, n_layers: int, d: int, n_prompt: int, n_generated: int) -> float:
    """Forward FLOPs for one sequence of a decoder-only model: prompt (prefill) + generated tokens
    with a KV cache, or equally one teacher-forced training pass over ``P + G`` tokens.

    Token ``t`` (1-based) attends to ``t`` keys: ``2·N + 4·L·t·d``. Summed over ``t = 1 .. P+G``.
    Multiply by 3 for training.
    """
    T = n_prompt + n_generated
    return 2 * n_params * T + 4 * n_layers * d * T * (T + 1) / 2


def encoder_decoder_sequence_flops(
    n_enc_params: int, n_dec_params: int, n_enc_layers: int, n_dec_layers: int, d: int, n_source: int, n_target: int
) -> float:
    """Forward FLOPs for one sequence of an encoder-decoder: the encoder reads ``P = n_source`` tokens
    once, bidirectionally (each attends to ``P`` keys); the decoder produces ``G = n_target`` tokens,
    token ``t`` attending to ``t`` earlier targets (self) and to all ``P`` source tokens (cross).

    Only the *encoder's* parameters see the source and (almost) only the *decoder's* see the target,
    which is why at equal total parameters the encoder-decoder needs about half the FLOPs per
    sequence. The exception: each cross-attention's W_K and W_V (2·d² per decoder layer, counted
    in ``n_dec_params``) project the ``P`` source tokens, once, not the targets.
    """
    P, G = n_source, n_target
    cross_kv = 2 * d * d * n_dec_layers
    enc = 2 * n_enc_params * P + 4 * n_enc_layers * d * P * P
    dec = 2 * (n_dec_params - cross_kv) * G + 2 * cross_kv * P + 4 * n_dec_layers * d * (G * (G + 1) / 2 + G * P)
    return enc + dec


def stack_params(cfg: ModelConfig, family: str) -> dict[str, int]:
    """Non-embedding parameters of a model built from ``cfg``, per stack, from :func:`layer_params`
    (blocks + the final norm of each stack): ``{"encoder": ..., "decoder": ..., "total": ...}``.

    ``family``: ``"encoder-only"``, ``"decoder-only"`` or ``"encoder-decoder"``. Equals
    ``model.num_parameters()`` for the course's models (embeddings and output layer left out).
    """
    final = norm_params(cfg.d_model, cfg.norm) if cfg.final_norm else 0
    if family == "encoder-only":
        out = {"encoder": cfg.n_layers * layer_params(cfg, "encoder") + final, "decoder": 0}
    elif family == "decoder-only":
        out = {"encoder": 0, "decoder": cfg.n_layers * layer_params(cfg, "decoder") + final}
    elif family == "encoder-decoder":
        out = {"encoder": cfg.n_enc_layers * layer_params(cfg, "encoder") + final,
               "decoder": cfg.n_dec_layers * layer_params(cfg, "cross-decoder") + final}
    else:
        raise ValueError(f"family must be 'encoder-only', 'decoder-only' or 'encoder-decoder'; got {family!r}.")
    return {**out, "total": out["encoder"] + out["decoder"]}


def _keys_seen(n_new: int, n_past: int, attention: str) -> float:
    """Query-key pairs when ``n_new`` queries follow ``n_past`` cached positions.
    ``"causal"``: query i sees ``n_past + i`` keys (what the model needs); ``"full"``: every query
    scores every key (a bidirectional encoder, or what a fused kernel computes under a causal mask)."""
    if attention == "causal":
        return n_new * n_past + n_new * (n_new + 1) / 2
    if attention == "full":
        return n_new * (n_past + n_new)
    raise ValueError(f"attention must be 'causal' or 'full'; got {attention!r}.")


def prefill_flops(n_params: int, n_layers: int, d: int, n_prompt: int, vocab: int = 0, *, attention: str = "causal") -> float:
    """Forward FLOPs of the prompt pass (prefill) of a decoder-only model, or of one encoder pass
    (``attention="full"``): ``2·N·P`` for the weights, ``4·L·d`` per query-key pair for ``QKᵀ``
    and ``·V``, and ``2·d·V·P`` for the logits when ``vocab`` is given (the course's models
    compute logits at every position). For a causal model token t attends to t keys:
    ``P(P+1)/2`` pairs; ``attention="full"`` counts all ``P²`` (what the fused CPU kernel
    computes even under a causal mask, and what a FLOP counter reports)."""
    return 2 * n_params * n_prompt + 4 * n_layers * d * _keys_seen(n_prompt, 0, attention) + 2 * d * vocab * n_prompt


def decode_step_flops(n_params: int, n_layers: int, n_ctx: int, d: int, vocab: int = 0) -> float:
    """FLOPs of **one** decoding step of a decoder-only model with a KV cache:
    ``2·N + 4·L·n_ctx·d + 2·d·V``.

    One new query attends to ``n_ctx`` cached keys (itself included): ``QKᵀ`` and ``·V`` cost
    ``2·n_ctx·d`` each per layer, so ``4·L·n_ctx·d``, **not** the training-averaged ``2·L·n_ctx·d``
    of :func:`forward_flops_per_token` (that one halves the context because in a causal pass over
    n_ctx tokens the average token sees half of them). ``2·d·V`` is the output layer (``vocab``).
    """
    return 2 * n_params + 4 * n_layers * n_ctx * d + 2 * d * vocab


def encdec_decode_step_flops(n_dec_params: int, n_layers: int, n_ctx: int, n_source: int, d: int, vocab: int = 0, d_kv: int | None = None) -> float:
    """FLOPs of one decoding step of an encoder-decoder's decoder with its caches:
    ``2·(N_dec − 2·L·d·d_kv) + 4·L·d·(n_ctx + P) + 2·d·V``.

    Self-attention over ``n_ctx`` earlier targets and cross-attention over the ``P = n_source``
    encoder outputs; the cross-attention K and V were projected once (cached), so their weights
    ``2·d·d_kv`` per layer do no work in a step. ``N_dec`` = the decoder's non-embedding parameters.
    """
    d_kv = d if d_kv is None else d_kv
    cross_kv = 2 * d * d_kv * n_layers
    return 2 * (n_dec_params - cross_kv) + 4 * n_layers * d * (n_ctx + n_source) + 2 * d * vocab


def generation_flops(cfg: ModelConfig, family: str, n_prompt: int, n_generated: int, *, vocab: bool = True,
                     attention: str = "causal", params: dict[str, int] | None = None) -> dict[str, float]:
    """Forward FLOPs to read a prompt of ``P`` tokens and generate ``G`` with a KV cache, by part:
    ``{"first_token": ..., "decode": ..., "total": ...}`` (``first_token`` is what the first
    new token waits for: the prefill, or the encoder pass + cross K/V + the BOS step).

    * decoder-only: prefill over P, then G − 1 steps at n_ctx = P+1 .. P+G−1;
    * encoder-decoder: encoder over P (bidirectional), cross K/V of the P outputs once per decoder
      layer, then G steps at n_ctx = 1 .. G (the first one reads BOS);
    * encoder-only: one pass over P (no generation: ``n_generated`` must be 0).

    ``params`` overrides :func:`stack_params` (e.g. measured ``num_parameters``); ``vocab=False``
    leaves out the output layer; ``attention`` as in :func:`prefill_flops`.
    """
    P, G, d, V = n_prompt, n_generated, cfg.d_model, cfg.vocab_size if vocab else 0
    n = params or stack_params(cfg, family)
    d_kv = cfg.kv_heads * cfg.d_head
    if family == "encoder-only":
        if G:
            raise ValueError("an encoder-only model does not generate: n_generated must be 0.")
        first = prefill_flops(n["encoder"], cfg.n_layers, d, P, V, attention="full")
        return {"first_token": first, "decode": 0.0, "total": first}
    if family == "decoder-only":
        first = prefill_flops(n["decoder"], cfg.n_layers, d, P, V, attention=attention)
        steps = sum(decode_step_flops(n["decoder"], cfg.n_layers, P + t, d, V) for t in range(1, G))
    elif family == "encoder-decoder":
        L = cfg.n_dec_layers
        first = prefill_flops(n["encoder"], cfg.n_enc_layers, d, P, attention="full")  # no logits on the encoder
        first += 2 * (2 * d * d_kv * L) * P  # cross-attention K and V of the P source tokens, once
        first += encdec_decode_step_flops(n["decoder"], L, 1, P, d, V, d_kv)  # the BOS step
        steps = sum(encdec_decode_step_flops(n["decoder"], L, t, P, d, V, d_kv) for t in range(2, G + 1))
    else:
        raise ValueError(f"family must be 'encoder-only', 'decoder-only' or 'encoder-decoder'; got {family!r}.")
    return {"first_token": first, "decode": steps, "total": first + steps}


# --------------------------------------------------------------------------- memory


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, d_head: int, n_tokens: int, bytes_per_el: int = 4, *, n_source_tokens: int = 0
) -> int:
    """Bytes of keys and values a decoder keeps: ``2 · L · n_kv_heads · d_head · bytes`` per token.

    ``n_tokens`` are the tokens in the self-attention cache (prompt + generated for a decoder-only
    model, generated only for an encoder-decoder). ``n_source_tokens`` adds the encoder-decoder's
    cross-attention K/V: every decoder layer stores K and V of all ``P`` source tokens once.
    ``bytes_per_el``: 4 for float32 (the course's CPU default), 2 for fp16/bf16.
    """
    return 2 * n_layers * n_kv_heads * d_head * bytes_per_el * (n_tokens + n_source_tokens)


def kv_cache_bytes_for(cfg: ModelConfig, family: str, n_prompt: int, n_generated: int, *, batch: int = 1,
                       bytes_per_el: int = 4) -> dict[str, int]:
    """KV-cache bytes after reading ``P`` prompt tokens and feeding ``G`` decoder tokens, by kind:
    ``{"self": ..., "cross": ..., "total": ...}``.

    * decoder-only: self-attention K/V of all ``P + G`` positions in each of ``n_layers`` layers;
    * encoder-decoder: self-attention K/V of the ``G`` decoder positions and cross-attention K/V
      of the ``P`` source tokens, each in every one of ``n_dec_layers`` decoder layers;
    * encoder-only: nothing is cached.

    Uses ``cfg.kv_heads`` (grouped-query attention stores fewer heads).
    """
    L = {"decoder-only": cfg.n_layers, "encoder-decoder": cfg.n_dec_layers, "encoder-only": 0}.get(family)
    if L is None:
        raise ValueError(f"family must be 'encoder-only', 'decoder-only' or 'encoder-decoder'; got {family!r}.")
    per = lambda n: batch * kv_cache_bytes(L, cfg.kv_heads, cfg.d_head, n, bytes_per_el)
    if family == "decoder-only":
        out = {"self": per(n_prompt + n_generated), "cross": 0}
    elif family == "encoder-decoder":
        out = {"self": per(n_generated), "cross": per(n_prompt)}
    else:
        out = {"self": 0, "cross": 0}
    return {**out, "total": out["self"] + out["cross"]}


def cache_bytes(cache) -> dict[str, int]:
    """Bytes held by a model's KV cache (``model.new_cache()`` after use), measured from the
    tensors themselves: ``{"self": ..., "cross": ..., "total": ...}``."""
    out = {kind: sum(layer[kind].nbytes() for layer in cache) for kind in ("self", "cross")}
    return {**out, "total": out["self"] + out["cross"]}


# --------------------------------------------------------------------------- counting
# --------------------------------------------------------------------------- counting


def _sdpa_cpu_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _cpu_attention_formulas() -> dict[Any, Callable[..., int]]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one
    (``_scaled_dot_product_flash_attention_for_cpu``), so SDPA on CPU counts as 0 FLOPs.
    Register the same formulas PyTorch uses for the CUDA kernels (non-causal: the full T_q×T_k)."""
    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop),
    ):
        if hasattr(aten, name):  # present in every torch the course supports; be safe anyway
            formulas[getattr(aten, name)] = formula
    return formulas


def flop_counter(display: bool = False, depth: int | None = 2) -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts attention run by ``F.scaled_dot_product_attention``
    on CPU. Use as ``with flop_counter() as fc: ...; fc.get_total_flops()``."""
    return FlopCounterMode(display=display, depth=depth, custom_mapping=_cpu_attention_formulas())


def count_flops(fn: Callable[..., Any], *args: Any, by_op: bool = False, **kwargs: Any) -> int | dict[str, int]:
    """FLOPs of the matrix multiplies (and attention) that ``fn(*args, **kwargs)`` runs, counting
    a multiply-add as 2 FLOPs. Element-wise work (norms, softmax outside SDPA, activations) is not counted.

    Include a backward pass inside ``fn`` to count training FLOPs. ``by_op=True`` returns
    ``{op name: FLOPs}`` instead of the total.
    """
    with flop_counter() as fc:
        fn(*args, **kwargs)
    if by_op:
        return {str(op): n for op, n in fc.get_flop_counts().get("Global", {}).items()}
    return fc.get_total_flops()


def attention_flops(batch: int, n_heads: int, t_q: int, t_k: int, d_head: int) -> int:
    """FLOPs of one attention call: ``QKᵀ`` and ``weights @ V`` -> ``4 · B · H · T_q · T_k · d_head``
    (no saving for a causal mask: the kernels compute the full score matrix)."""
    return 4 * batch * n_heads * t_q * t_k * d_head


__all__ = [
    "attention_params",
    "ffn_params",
    "norm_params",
    "layer_params",
    "matched_depth",
    "forward_flops_per_token",
    "train_flops_per_token",
    "decoder_only_sequence_flops",
    "encoder_decoder_sequence_flops",
    "kv_cache_bytes",
    "kv_cache_bytes_for",
    "cache_bytes",
    "stack_params",
    "prefill_flops",
    "decode_step_flops",
    "encdec_decode_step_flops",
    "generation_flops",
    "flop_counter",
    "count_flops",
    "attention_flops",
]
