"""Scaled dot-product attention, multi-head attention (self and cross) and the KV cache.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + mask) V

Shapes: ``q (..., T_q, d_k)``, ``k (..., T_k, d_k)``, ``v (..., T_k, d_v)``; a boolean mask
(``True`` = may attend, see :mod:`course_lib.masks`) broadcastable to ``(..., T_q, T_k)``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import NORM_EPS
from .masks import causal_mask, check_mask

#: PyTorch's fused attention reads grouped K/V heads itself (``enable_gqa``) from torch 2.5 on
_KERNEL_GQA = torch.torch_version.TorchVersion(torch.__version__) >= "2.5"


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of two shapes, or None if they don't broadcast. (Plain Python: this runs
    on every attention call, and ``torch.broadcast_shapes`` is slow enough to show up in decoding.)"""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no argument, CUDA only; the CPU has its own function
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
    # under autocast q, k, v may differ (a norm kept in float32): the kernel casts them, so only say so without it
    if not (q.is_floating_point() and k.is_floating_point() and v.is_floating_point()) or (
            not q.dtype == k.dtype == v.dtype and not _autocast_on(q.device.type)):
        raise TypeError(
            f"q, k and v must be floating-point tensors of one dtype; got {q.dtype}, {k.dtype}, {v.dtype} "
            "(convert them alike, e.g. with .float())."
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension d_k: q has shape {tuple(q.shape)}, k has shape {tuple(k.shape)}."
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of keys (dim -2): k has shape {tuple(k.shape)}, v has shape {tuple(v.shape)}."
        )
    if mask is None:
        return
    check_mask(mask)
    batch = _broadcast(q.shape[:-2], k.shape[:-2])
    if batch is None:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])  # raises PyTorch's own error
    target = (*batch, q.shape[-2], k.shape[-2])
    if _broadcast(mask.shape, target) != target:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores of shape {target} "
            "(batch..., T_q, T_k). A padding mask should be (B, 1, 1, T_k); a causal mask (T_q, T_k)."
        )


def _sync_is_cheap(t: Tensor) -> bool:
    """Reading a value back (``bool(t.all())``) is free on the CPU, but on a GPU it makes Python wait
    for every queued kernel, on every attention call. There we skip the check and always apply the
    (then harmless) empty-row fix-up instead."""
    return t.device.type == "cpu"


def _causal_kernel_exact(t_q: int, t_k: int, causal: bool, mask: Tensor | None, bias: Tensor | None, return_weights: bool) -> bool:
    """Whether PyTorch's causal kernel (``is_causal=True``) computes this attention exactly: causal over more
    than one query, no other mask or bias, no weights wanted, and ``T_q == T_k`` (no cached keys: the kernel's
    causal mask is aligned top-left)."""
    return causal and t_q > 1 and mask is None and bias is None and not return_weights and t_q == t_k


def kv_groups(q: Tensor, k: Tensor) -> int:
    """Query heads per key/value head: ``H / H_kv`` when ``k (..., H_kv, T_k, d)`` has fewer heads (dim -3) than
    ``q (..., H, T_q, d)`` and ``H_kv`` divides ``H`` (grouped-query attention), else 1."""
    if q.dim() < 3 or k.dim() != q.dim():
        return 1
    h, h_kv = q.shape[-3], k.shape[-3]
    return h // h_kv if h_kv < h and h % h_kv == 0 else 1


def attend_all_keys(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
    """softmax(QKᵀ/√d_k) V when every query sees every key (no mask, no bias): ``(..., H, T_q, d_v)``.

    With grouped K/V heads (:func:`kv_groups`: ``k, v (..., H_kv, T_k, d)``) the ``H / H_kv`` query heads of a
    group all read the same keys, so they are stacked as the rows of one head, ``(..., H_kv, groups · T_q, d)``:
    K and V are read as they are instead of being copied once per query head. (Under a mask the rows of a
    group would need the mask repeated instead; :func:`scaled_dot_product_attention` repeats K and V then.)"""
    groups = kv_groups(q, k)
    if groups == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    *batch, h, t_q, d = q.shape
    out = F.scaled_dot_product_attention(q.reshape(*batch, h // groups, groups * t_q, d), k, v, dropout_p=dropout_p, scale=scale)
    return out.reshape(*batch, h, t_q, v.shape[-1])


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    return_weights: bool = False,
    dropout_p: float = 0.0,
    bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(QKᵀ/√d_k) V with a boolean mask. Returns ``out (..., T_q, d_v)``
    and, with ``return_weights=True``, also ``weights (..., T_q, T_k)``.

    ``bias`` (broadcastable to the scores, e.g. T5's relative position bias ``(1, H, T_q, T_k)``)
    is added to the scores; ``scale`` replaces 1/√d_k (T5: 1.0). ``k`` and ``v`` may have fewer heads
    than ``q`` (:func:`kv_groups`, grouped-query attention): each serves ``H / H_kv`` consecutive query heads.

    ``causal=True`` also hides future keys: the ``T_q`` queries are the newest of the ``T_k``
    positions (:func:`~course_lib.masks.causal_mask`), ANDed with ``mask`` if one is given. When
    that is the only mask and ``T_q == T_k`` (no cache: a prefill, a training step) it calls PyTorch's
    causal kernel (``is_causal=True``), which skips the hidden half of the scores instead of
    computing and discarding it: the same answer, up to about twice as fast for long sequences.

    Without weights it calls PyTorch's fused kernel; with weights it runs the formula
    line by line. Both give the same answer, and a query whose keys are *all* masked
    gets an output of zeros (never NaN).
    """
    groups, kernel = kv_groups(q, k), _causal_kernel_exact(q.shape[-2], k.shape[-2], causal, mask, bias, return_weights)
    # every query sees every key: no mask or bias, and causal only for one query (the newest position, a decoding step)
    all_keys = mask is None and bias is None and not return_weights and not (causal and q.shape[-2] > 1)
    if groups > 1 and not (kernel and _KERNEL_GQA) and not all_keys:  # those two read grouped heads as they are
        k, v = k.repeat_interleave(groups, dim=-3), v.repeat_interleave(groups, dim=-3)
    _check_qkv(q, k, v, mask)
    # a mask that hides nothing (an unpadded batch) is no mask: the unmasked kernels give the same answer, faster
    # (only one on q's own device: a mask left elsewhere is a caller's bug that the kernels should still report)
    if mask is not None and mask.device == q.device and _sync_is_cheap(mask) and bool(mask.all()):
        return scaled_dot_product_attention(q, k, v, causal=causal, return_weights=return_weights, dropout_p=dropout_p,
                                            bias=bias, scale=scale)
    if kernel:
        gqa = {"enable_gqa": True} if k.shape[-3] != q.shape[-3] else {}
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale, **gqa)
    if all_keys:
        return attend_all_keys(q, k, v, scale=scale, dropout_p=dropout_p)
    causal = causal and q.shape[-2] > 1  # a single query is the newest position: it may see every key
    has_key = None
    if causal and mask is None:  # the causal mask alone: every query sees its own key, so no row is empty
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    elif mask is not None:
        if causal:
            mask = mask & causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): rows with at least one visible key
        if _sync_is_cheap(mask) and bool(has_key.all()):
            has_key = None  # no empty row (the usual case): nothing to fix up
        else:
            mask = mask | ~has_key  # let empty rows attend anywhere; their output is zeroed below

    if bias is not None:  # one additive float mask: the bias where attending is allowed, -inf elsewhere
        bias = bias.to(q.dtype)
        mask = bias if mask is None else torch.where(mask, bias, torch.tensor(float("-inf"), dtype=q.dtype, device=q.device))

    if not return_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return out if has_key is None else out.masked_fill(~has_key, 0.0)

    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)  # (..., T_q, T_k)
    if bias is not None:
        scores = scores + mask  # bias, with -inf at masked keys
    elif mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # masked keys get probability exactly 0
    weights = scores.softmax(dim=-1)  # normalise over the keys
    if has_key is not None:
        weights = weights.masked_fill(~has_key, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class KVCache:
    """Keys and values one attention layer has already computed, each ``(B, H_kv, T, d_head)``.

    Decoder self-attention *appends* one step at a time; cross-attention fills it once
    from the encoder output and then only reads it.

    Appending by ``torch.cat`` would copy the whole cache every step (quadratic in the
    length). Instead the cache keeps a buffer with spare room, doubling it when full, and
    writes each step into the next free slot; ``k`` and ``v`` are views of the filled part.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None  # (B, H_kv, T, d_head): the filled part
        self.v: Tensor | None = None
        self._kbuf: Tensor | None = None  # (B, H_kv, capacity, d_head), capacity >= T
        self._vbuf: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None:  # first call (the prompt, or the encoder output): keep the tensors as they are
            self.k, self.v = k, v
            return k, v
        n, new = self.k.shape[-2], k.shape[-2]
        if self._kbuf is None or n + new > self._kbuf.shape[-2]:  # out of room: double the buffer
            capacity = max(2 * n, n + new, 16)
            self._kbuf = self.k.new_empty(*self.k.shape[:-2], capacity, self.k.shape[-1])
            self._vbuf = self.v.new_empty(*self.v.shape[:-2], capacity, self.v.shape[-1])
            self._kbuf.narrow(-2, 0, n).copy_(self.k)  # narrow(-2, start, length) = [..., start:start+length, :]
            self._vbuf.narrow(-2, 0, n).copy_(self.v)
        self._kbuf.narrow(-2, n, new).copy_(k)  # write into the next free slots
        self._vbuf.narrow(-2, n, new).copy_(v)
        self.k, self.v = self._kbuf.narrow(-2, 0, n + new), self._vbuf.narrow(-2, 0, n + new)
        return self.k, self.v

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` positions and forget the rest; the next :meth:`append` writes at ``n``."""
        if not 0 <= n <= len(self):
            raise ValueError(f"cannot keep {n} positions of a cache that holds {len(self)}; n must be in 0..{len(self)}.")
        if self.k is not None:
            self.k, self.v = self.k.narrow(-2, 0, n), self.v.narrow(-2, 0, n)  # still views of the buffer, if any

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search reshuffles its beams every step)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)
            self._kbuf = self._vbuf = None

    def nbytes(self) -> int:
        """Bytes of the keys and values held (the filled part: ``2 · B · H_kv · T · d_head · element size``)."""
        return 0 if self.k is None else self.k.numel() * self.k.element_size() * 2

    def allocated_bytes(self) -> int:
        """Bytes actually reserved, spare room of the buffer included (at most about 2 × :meth:`nbytes`)."""
        if self._kbuf is None:
            return self.nbytes()
        return self._kbuf.numel() * self._kbuf.element_size() * 2


def _rms_normalize(x: Tensor, eps: float) -> Tensor:
    """Parameter-free RMSNorm over the last dimension: ``x / √(mean(x²) + ε)`` (the recipe's V-norm)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class MultiHeadAttention(nn.Module):
    """Multi-head attention. Self-attention by default; cross-attention when given ``context``
    (queries from ``x``, keys and values from ``context``, e.g. the encoder output).

    Parameter layout matches ``nn.MultiheadAttention`` (one ``in_proj`` for Q, K, V) so
    weights can be copied across and the results compared.

    ``n_kv_heads < n_heads`` is grouped-query attention (GQA, Ainslie et al. 2023, arXiv 2305.13245):
    only ``n_kv_heads`` key/value heads are computed and cached, and each serves a group of
    ``n_heads // n_kv_heads`` query heads (``n_kv_heads=1`` is multi-query attention).
    """

    #: Set by :func:`recording_max_logit` (on the class: every layer; or on a model's layers): each call
    #: appends its largest pre-softmax logit ``|q·k| · scale`` to this list.
    max_logit_log: list[float] | None = None

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        qk_norm: bool = False,
        norm_eps: float = NORM_EPS,
        n_kv_heads: int | None = None,
        scale: float | None = None,
        v_norm: bool = False,
        out_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; each head needs d_model / n_heads "
                f"dimensions. Try n_heads in {[h for h in range(1, d_model + 1) if d_model % h == 0 and h <= 32]}."
            )
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if self.n_kv_heads < 1 or n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={n_heads}.")
        self.d_kv = self.n_kv_heads * self.d_head  # width of K (and of V): d_model without GQA
        self.in_proj = nn.Linear(d_model, d_model + 2 * self.d_kv, bias=bias)  # rows: W_Q, W_K, W_V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.dropout = dropout
        self.scale = scale  # None: 1/√d_head; T5 uses 1.0
        # QK-norm: normalise each head's queries and keys, keeping the logits bounded.
        from .layers import RMSNorm  # local import: layers imports nothing from here

        self.q_norm = RMSNorm(self.d_head, eps=norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.d_head, eps=norm_eps) if qk_norm else None
        # V-norm: the values get the same per-head normalisation, without a learned scale.
        self.v_norm_eps = norm_eps if v_norm else None
        self.out_norm = out_norm  # the recipe's extra norm on the attention output (merged heads, before W_O)
        self.record = False  # set by `recording_attention` to keep the last weights
        self.last_weights: Tensor | None = None

    def _heads(self, t: Tensor) -> Tensor:
        # split the features into heads of d_head: rearrange(t, "b t (h d) -> b h t d"), in plain
        # torch because einops' pattern parsing costs more than the arithmetic of one decoding step
        return t.view(t.shape[0], t.shape[1], -1, self.d_head).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        rope=None,
        positions: Tensor | None = None,
        bias: Tensor | None = None,
        context_positions: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """``x (B, T_q, d_model)``, ``context (B, T_k, d_model)`` or None -> ``(B, T_q, d_model)``.
        ``bias`` (e.g. T5's relative position bias ``(1, H, T_q, T_k)``) is added to the scores.

        ``mask`` broadcasts to ``(B, H, T_q, T_k)`` where T_k counts cached keys too.
        ``causal=True`` hides future keys as well (see :func:`scaled_dot_product_attention`).
        ``rope`` (a :class:`~course_lib.layers.RotaryEmbedding`) rotates queries and keys
        of *self*-attention by their absolute ``positions (T_q,)`` or ``(B, T_q)``. In cross-attention
        a ``rope`` rotates the queries by ``positions`` and the keys by ``context_positions`` (T_k,).
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected x of shape (B, T, d_model={self.d_model}); got {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise TypeError(f"attention reads vectors, a floating-point x; got dtype {x.dtype} (token ids go through an embedding first).")
        d = self.d_model
        is_cross = context is not None
        if is_cross:
            if context.dim() != 3 or context.shape[-1] != d or context.shape[0] != x.shape[0]:
                raise ValueError(
                    f"context must be (B={x.shape[0]}, T_k, d_model={d}) to match x {tuple(x.shape)}; got {tuple(context.shape)}."
                )
            w, b = self.in_proj.weight, self.in_proj.bias  # rows: W_Q (from x), then W_K, W_V (from context)
            q = self._heads(F.linear(x, w[:d], None if b is None else b[:d]))
            if cache is not None and len(cache) > 0:
                k, v = cache.k, cache.v  # encoder K/V: computed once per sequence, then reused
            else:
                k, v = self._heads(F.linear(context, w[d:], None if b is None else b[d:])).split(self.n_kv_heads, dim=1)
                if self.k_norm is not None:
                    k = self.k_norm(k)
                if self.v_norm_eps is not None:
                    v = _rms_normalize(v, self.v_norm_eps)
                if rope is not None:  # keys carry the encoder's positions, rotated once and cached
                    k = rope(k, context_positions)
                if cache is not None:
                    cache.append(k, v)
            if self.q_norm is not None:
                q = self.q_norm(q)
            if rope is not None:  # queries carry the decoder's positions
                q = rope(q, positions)
        else:
            # one matmul for Q, K and V; split into heads of d_head, then the heads into Q's, K's and V's
            q, k, v = self._heads(self.in_proj(x)).split_with_sizes([self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=1)
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            if self.v_norm_eps is not None:
                v = _rms_normalize(v, self.v_norm_eps)
            if rope is not None:
                q, k = rope(q, positions), rope(k, positions)
            if cache is not None:
                k, v = cache.append(k, v)  # keys/values of earlier steps + this one
        # GQA: K/V keep their n_kv_heads heads; scaled_dot_product_attention lets each serve a group of query heads
        if self.max_logit_log is not None:  # every query-key pair, masked ones too (the kernels compute them all)
            scale = 1 / math.sqrt(q.shape[-1]) if self.scale is None else self.scale
            k_all = k.detach().repeat_interleave(kv_groups(q, k), dim=-3)
            with torch.no_grad():
                self.max_logit_log.append(float((q.detach() @ k_all.transpose(-2, -1)).abs().max()) * scale)
        p = self.dropout if self.training else 0.0
        if self.record:
            out, weights = scaled_dot_product_attention(q, k, v, mask, causal=causal, return_weights=True, dropout_p=p, bias=bias,
                                                        scale=self.scale)
            self.last_weights = weights.detach()
        else:
            out = scaled_dot_product_attention(q, k, v, mask, causal=causal, dropout_p=p, bias=bias, scale=self.scale)
        out = out.transpose(1, 2).flatten(2)  # merge the heads back: "b h t d -> b t (h d)"
        return self.out_proj(out if self.out_norm is None else self.out_norm(out))


def cross_attention(mha: MultiHeadAttention, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
    """Cross-attention: queries from the decoder stream ``x (B, T, d)``, keys and values from
    ``context (B, S, d)`` (the encoder output). ``context_mask`` hides padded source tokens."""
    return mha(x, context=context, mask=context_mask)


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Collect every attention layer's weights ``(B, H, T_q, T_k)`` from the forward passes inside
    the ``with`` block, keyed by module name (e.g. ``"decoder.0.cross_attn"``)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    maps: dict[str, Tensor] = {}
    for m in layers.values():
        m.record, m.last_weights = True, None
    try:
        yield maps
    finally:
        for name, m in layers.items():
            if m.last_weights is not None:
                maps[name] = m.last_weights
            m.record, m.last_weights = False, None


@contextmanager
def recording_max_logit(record: list | None = None, *, model: nn.Module | None = None) -> Iterator[list[float]]:
    """Inside the ``with`` block every attention call appends its largest pre-softmax logit
    ``|q·k| · scale`` (QK-norm and RoPE applied, over every query-key pair) to the yielded list, in call
    order: every layer of every model, or only ``model``'s. Wortsman et al. 2023, "Small-scale proxies
    for large-scale Transformer training instabilities" (arXiv 2309.14322), track this quantity: without
    QK-norm it can grow until the softmax saturates. Lesson 07 calls it ``redllm.tracking_max_logit``."""
    log = [] if record is None else record
    layers = [MultiHeadAttention] if model is None else [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for m in layers:
        m.max_logit_log = log
    try:
        yield log
    finally:
        for m in layers:
            if m is MultiHeadAttention:
                m.max_logit_log = None
            else:
                del m.max_logit_log  # back to the class's setting
