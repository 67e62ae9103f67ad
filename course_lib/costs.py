"""What a transformer costs: parameters, FLOPs, KV-cache memory, and a FLOP counter that sees attention.

    attention (Q, K, V, O)          4·d²                      (+ 4·d biases)
    FFN, ReLU/GELU                  2·d·d_ff                  (+ d_ff + d biases)
    FFN, SwiGLU / GeGLU             3·d·d_ff
    decoder layer + cross-attention + 4·d²
    forward FLOPs per token         ≈ 2·N + 2·L·n_ctx·d       (Kaplan et al. 2020, Table 1)
    training FLOPs per token        ≈ 3 × forward ≈ 6·N       (backward = 2 × forward)
    KV cache bytes per token        = 2 · L · n_kv_heads · d_head · bytes per element
    one decoding step (KV cache)    = 2·N + 4·L·n_ctx·d + 2·d·V   (one query over n_ctx cached keys, + logits)

``N`` is the number of *non-embedding* parameters (what :meth:`~course_lib.models.DecoderOnly.num_parameters`
returns by default), ``L`` the number of layers, ``n_ctx`` the context length, ``d`` the model width.

Why "2·N": every weight is used once per token in one multiply and one add. Why "2·L·n_ctx·d"
in Kaplan et al.'s estimate ("Scaling Laws for Neural Language Models", arXiv 2001.08361, Table 1):
the paper does not say how it counted the term. This course reads it as a causal pass's average:
the scores ``QKᵀ`` and the mix ``softmax(·) V`` each cost ``2·n_ctx·d`` per token and layer
(4·n_ctx·d together), and a causal mask lets a token see only half the context on average.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from .config import ModelConfig
from .families import Family
from .layers import GATED_FFNS

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
    ``3·d·d_ff`` (``swiglu``: any gated FFN, SwiGLU or GeGLU: gate, up and down). Biases add
    ``d_ff + d`` (or ``2·d_ff + d`` with a gate)."""
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
    total += ffn_params(d, cfg.d_ff, cfg.ffn in GATED_FFNS, cfg.bias) + norm_params(d, cfg.norm)
    return total


def depth_ratio(d: int, d_ff: int | None = None, *, swiglu: bool = True) -> float:
    """Layers in *each* stack of an encoder-decoder per layer of a decoder-only model with the same
    non-embedding parameters (biases and norms ignored, as in the block formulas of lessons 06 and 07):

        decoder-only : L · (4d² + f)              f = FFN parameters (3·d·d_ff gated, 2·d·d_ff plain)
        enc-dec      : L' · (4d² + f) + L' · (8d² + f)
        => L' / L = (4d² + f) / (12d² + 2f)

    ``d_ff = 4d``: 16/36 ≈ 0.44 with a gated FFN (``swiglu``, SwiGLU or GeGLU), 12/28 ≈ 0.43 without.
    """
    d_ff = 4 * d if d_ff is None else d_ff
    f = ffn_params(d, d_ff, swiglu)
    attn = attention_params(d)
    return (attn + f) / (3 * attn + 2 * f)


def matched_depth(n_layers: int, d: int, d_ff: int | None = None, *, swiglu: bool = True) -> float:
    """Depth of *each* stack of an encoder-decoder with the same non-embedding parameters as a
    decoder-only model of ``n_layers`` layers: ``n_layers ·`` :func:`depth_ratio`.
    With ``d_ff = 4d`` and SwiGLU, ``L' = 16/36 · L ≈ 0.44 L``.
    Returns a float; round it (and check the parameter counts) when building models.
    """
    return n_layers * depth_ratio(d, d_ff, swiglu=swiglu)


def stack_params(cfg: ModelConfig, family: str) -> dict[str, int]:
    """Non-embedding parameters of a model built from ``cfg``, per stack, from :func:`layer_params`:
    ``{"encoder": ..., "decoder": ..., "total": ...}`` (0 for a stack the family lacks).

    A stack is its blocks, its final norm and, with T5's relative positions, its bias table
    (``n_heads × rel_buckets``). ``family``: any name :class:`~course_lib.families.Family` accepts.
    Equals ``model.num_parameters()`` for every model the course builds (embeddings and output layer
    left out); :func:`course_lib.families.stack_parameters` gives it for a built model.
    """
    final = norm_params(cfg.d_model, cfg.norm) if cfg.final_norm else 0
    rel_bias = cfg.n_heads * cfg.rel_buckets if cfg.pos == "relative" else 0
    out = {"encoder": 0, "decoder": 0}
    for stack, (kind, n_layers) in Family(family).stacks(cfg).items():
        out[stack] = n_layers * layer_params(cfg, kind) + final + rel_bias
    return {**out, "total": out["encoder"] + out["decoder"]}


# --------------------------------------------------------------------------- FLOPs


def forward_flops_per_token(n_params: int, n_layers: int, n_ctx: int, d: int) -> float:
    """Kaplan et al.'s estimate ``2·N + 2·L·n_ctx·d`` for one token of a forward pass (arXiv 2001.08361, Table 1).

    ``N`` non-embedding parameters; the second term is attention over the context (read by this
    course as halved for a causal mask, see the module docstring). Leaves out the output layer (2·d·V),
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


def sequence_flops(cfg: ModelConfig, family: str, n_prompt: float, n_continuation: float, *,
                   params: dict[str, int] | None = None) -> float:
    """Forward FLOPs of one sequence: a prompt of ``P`` tokens and a continuation of ``C`` tokens,
    teacher-forced in one pass or generated with a KV cache (the same arithmetic); ×3 for training.
    Decoder-only (or prefix-LM): :func:`decoder_only_sequence_flops` over ``P + C`` positions;
    encoder-decoder: :func:`encoder_decoder_sequence_flops` (the encoder reads the prompt, the decoder
    the continuation). ``params`` overrides :func:`stack_params`; weights and attention only."""
    f, n = Family(family), params or stack_params(cfg, family)
    if not f.generates:
        raise ValueError("an encoder-only model has no continuation; use prefill_flops(..., attention='full').")
    if f.cross_attention:
        return encoder_decoder_sequence_flops(n["encoder"], n["decoder"], cfg.n_enc_layers, cfg.n_dec_layers, cfg.d_model,
                                              n_prompt, n_continuation)
    return decoder_only_sequence_flops(n["decoder"], cfg.n_layers, cfg.d_model, n_prompt, n_continuation)


def training_flops_6n(params: dict[str, int], tokens: dict[str, float]) -> float:
    """The rule of thumb "6·N per token" (forward 2N, backward 4N), each stack's parameters times the
    tokens *it* reads: ``6 · Σ params[stack] · tokens[stack]`` over ``"encoder"`` and ``"decoder"``.
    Leaves out attention over the context and the output layer (:func:`train_flops_per_token` has the first)."""
    return 6 * sum(params.get(stack, 0) * tokens.get(stack, 0) for stack in ("encoder", "decoder"))


def _keys_seen(n_new: int, n_past: int, attention: str) -> float:
    """Query-key pairs when ``n_new`` queries follow ``n_past`` cached positions.
    ``"causal"``: query i sees ``n_past + i`` keys (what the model needs); ``"full"``: every query
    scores every key (a bidirectional encoder, or what a fused kernel computes under a causal mask)."""
    if attention == "causal":
        return n_new * n_past + n_new * (n_new + 1) / 2
    if attention == "full":
        return n_new * (n_past + n_new)
    raise ValueError(f"attention must be 'causal' or 'full'; got {attention!r}.")


def prefill_flops(n_params: int, n_layers: int, d: int, n_prompt: int, vocab: int = 0, *, attention: str = "causal",
                  all_logits: bool = True) -> float:
    """Forward FLOPs of the prompt pass (prefill) of a decoder-only model, or of one encoder pass
    (``attention="full"``): ``2·N·P`` for the weights, ``4·L·d`` per query-key pair for ``QKᵀ``
    and ``·V``, and ``2·d·V·P`` for the logits when ``vocab`` is given (a forward pass, as in
    training, computes logits at every position). Generation reads only the last position's logits,
    so its prefill maps that one position through the output layer (``all_logits=False``: ``2·d·V``;
    ``DecoderOnly(..., last_only=True)``). For a causal model token t attends to t keys:
    ``P(P+1)/2`` pairs; ``attention="full"`` counts all ``P²`` (what the fused CPU kernel
    computes even under a causal mask, and what a FLOP counter reports)."""
    logit_positions = n_prompt if all_logits else min(n_prompt, 1)
    return 2 * n_params * n_prompt + 4 * n_layers * d * _keys_seen(n_prompt, 0, attention) + 2 * d * vocab * logit_positions


def decode_step_flops(n_params: int, n_layers: int, n_ctx: int, d: int, vocab: int = 0) -> float:
    """FLOPs of **one** decoding step of a decoder-only model with a KV cache:
    ``2·N + 4·L·n_ctx·d + 2·d·V``.

    One new query attends to ``n_ctx`` cached keys (itself included): ``QKᵀ`` and ``·V`` cost
    ``2·n_ctx·d`` each per layer, so ``4·L·n_ctx·d``, **not** the ``2·L·n_ctx·d`` of Kaplan et al.'s
    estimate (:func:`forward_flops_per_token`; this course reads that term as a causal pass's average,
    in which a token sees half of the n_ctx keys). ``2·d·V`` is the output layer (``vocab``).
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


def step_flops(cfg: ModelConfig, family: str, n_prompt: int, n_fed: int, *, vocab: bool = True, use_cache: bool = True,
               params: dict[str, int] | None = None) -> float:
    """FLOPs of the decoding step that reads the ``n_fed``-th decoder token after a prompt of ``P`` tokens.

    * decoder-only: :func:`decode_step_flops` with ``n_ctx = P + n_fed`` (the prompt is in the cache);
      without the cache the step re-reads all ``P + n_fed`` positions (:func:`prefill_flops`, ``"full"``,
      logits at the last position only);
    * encoder-decoder: :func:`encdec_decode_step_flops` with ``n_ctx = n_fed`` (BOS is the first)
      and cross-attention over the ``P`` source tokens.
    """
    f, n, d, V = Family(family), params or stack_params(cfg, family), cfg.d_model, cfg.vocab_size if vocab else 0
    if not f.generates:
        raise ValueError("an encoder-only model does not generate: it has no decoding step.")
    if f.cross_attention:
        return encdec_decode_step_flops(n["decoder"], cfg.n_dec_layers, n_fed, n_prompt, d, V, cfg.kv_heads * cfg.d_head)
    if not use_cache:
        return prefill_flops(n["decoder"], cfg.n_layers, d, n_prompt + n_fed, V, attention="full", all_logits=False)
    return decode_step_flops(n["decoder"], cfg.n_layers, n_prompt + n_fed, d, V)


def generation_flops(cfg: ModelConfig, family: str, n_prompt: int, n_generated: int, *, vocab: bool = True,
                     attention: str = "causal", params: dict[str, int] | None = None) -> dict[str, float]:
    """Forward FLOPs to read a prompt of ``P`` tokens and generate ``G`` with a KV cache, by part:
    ``{"first_token": ..., "decode": ..., "total": ...}`` (``first_token`` is what the first
    new token waits for: the prefill, or the encoder pass + cross K/V + the BOS step).

    * decoder-only: prefill over P (logits at its last position only), then G − 1 steps at n_ctx = P+1 .. P+G−1;
    * encoder-decoder: encoder over P (bidirectional), cross K/V of the P outputs once per decoder
      layer, then G steps at n_ctx = 1 .. G (the first one reads BOS);
    * encoder-only: one pass over P (no generation: ``n_generated`` must be 0).

    ``params`` overrides :func:`stack_params` (e.g. measured ``num_parameters``); ``vocab=False``
    leaves out the output layer; ``attention`` as in :func:`prefill_flops`.
    """
    f, P, G, d = Family(family), n_prompt, n_generated, cfg.d_model
    n = params or stack_params(cfg, family)
    if not f.generates:
        if G:
            raise ValueError("an encoder-only model does not generate: n_generated must be 0.")
        first = prefill_flops(n["encoder"], cfg.n_layers, d, P, cfg.vocab_size if vocab else 0, attention="full")
        return {"first_token": first, "decode": 0.0, "total": first}
    step = lambda t: step_flops(cfg, family, P, t, vocab=vocab, params=n)
    if f.cross_attention:
        first = prefill_flops(n["encoder"], cfg.n_enc_layers, d, P, attention="full")  # no logits on the encoder
        first += 2 * (2 * d * cfg.kv_heads * cfg.d_head * cfg.n_dec_layers) * P  # cross-attention K and V of the P source tokens, once
        first += step(1)  # the BOS step
        steps = sum(step(t) for t in range(2, G + 1))
    else:
        first = prefill_flops(n["decoder"], cfg.n_layers, d, P, cfg.vocab_size if vocab else 0, attention=attention,
                              all_logits=False)
        steps = sum(step(t) for t in range(1, G))
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
    f = Family(family)
    L = f.stacks(cfg)["decoder"][1] if f.generates else 0
    per = lambda n: batch * kv_cache_bytes(L, cfg.kv_heads, cfg.d_head, n, bytes_per_el)
    if f.cross_attention:  # the prompt sits in cross-attention, the decoder's own tokens in self-attention
        out = {"self": per(n_generated), "cross": per(n_prompt)}
    else:
        out = {"self": per(n_prompt + n_generated), "cross": 0}
    return {**out, "total": out["self"] + out["cross"]}


def cache_bytes(cache) -> dict[str, int]:
    """Bytes held by a model's KV cache (``model.new_cache()`` after use), measured from the
    tensors themselves: ``{"self": ..., "cross": ..., "total": ...}``."""
    out = {kind: sum(layer[kind].nbytes() for layer in cache) for kind in ("self", "cross")}
    return {**out, "total": out["self"] + out["cross"]}


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


def counted_training_flops(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                           batches: Sequence[Any]) -> float:
    """Mean FLOPs of one forward and backward pass of ``loss_fn(model, batch)`` per batch, counted by
    :func:`count_flops` (matrix multiplies, attention on CPU included, the output layer too).
    Gradients are cleared afterwards."""
    total = sum(count_flops(lambda: loss_fn(model, batch).backward()) for batch in batches)
    model.zero_grad(set_to_none=True)
    return total / len(batches)


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
    "depth_ratio",
    "sequence_flops",
    "training_flops_6n",
    "counted_training_flops",
    "prefill_flops",
    "decode_step_flops",
    "encdec_decode_step_flops",
    "step_flops",
    "generation_flops",
    "flop_counter",
    "count_flops",
    "attention_flops",
]
