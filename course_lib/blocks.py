"""Transformer blocks. All three families use the *same* block; only the mask and where
keys/values come from differ.

    pre-norm : x = x + Dropout(Sublayer(Norm(x)))
    post-norm: x = Norm(x + Dropout(Sublayer(x)))

* :class:`EncoderBlock`       self-attention (padding mask only) + FFN
* :class:`DecoderBlock`       causal self-attention + FFN                      (GPT)
* :class:`CrossDecoderBlock`  causal self-attention + cross-attention + FFN    (T5, original Transformer)
"""
from __future__ import annotations

from typing import Iterator

from torch import Tensor, nn

from .attention import KVCache, MultiHeadAttention
from .config import ModelConfig
from .layers import make_ffn, make_norm
from .masks import combine_masks


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig, cross: bool) -> None:
        super().__init__()
        self.norm_first = cfg.norm_first
        mha = lambda: MultiHeadAttention(
            cfg.d_model, cfg.n_heads, bias=cfg.bias, dropout=cfg.dropout, qk_norm=cfg.qk_norm, n_kv_heads=cfg.n_kv_heads,
            scale=cfg.attn_scale, norm_eps=cfg.norm_eps, v_norm=cfg.v_norm,
            out_norm=make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.attn_out_norm else None,
        )
        self.rope_cross = cfg.rope_cross  # RoPE in cross-attention too (queries: decoder positions, keys: encoder's)
        self.self_attn = mha()
        self.norm1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.cross_attn = mha() if cross else None
        self.norm_cross = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cross else None
        self.ffn = make_ffn(cfg.ffn, cfg.d_model, cfg.d_ff, cfg.dropout, cfg.bias, gelu_approx=cfg.gelu_approx)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def _drop(self, h: Tensor) -> Tensor:
        return self.dropout(h) if self.training else h  # dropout is the identity in eval mode: skip the call

    def _forward(self, x, self_mask, context=None, context_mask=None, cache=None, rope=None, positions=None, attn_bias=None,
                 context_positions=None, causal=False):
        # pre-norm: x = x + Sublayer(Norm(x));  post-norm: x = Norm(x + Sublayer(x)).
        # Written out rather than through a helper that takes the sublayer as a function: in cached
        # decoding this runs once per layer per token, and every extra Python call shows up per token.
        pre = self.norm_first
        self_cache, cross_cache = (None, None) if cache is None else (cache["self"], cache["cross"])
        h = self.self_attn(self.norm1(x) if pre else x, mask=self_mask, cache=self_cache, rope=rope, positions=positions, bias=attn_bias,
                           causal=causal)
        x = x + self._drop(h) if pre else self.norm1(x + self._drop(h))
        if self.cross_attn is not None:
            h = self.cross_attn(self.norm_cross(x) if pre else x, context, context_mask, cache=cross_cache,
                                rope=rope if self.rope_cross else None, positions=positions, context_positions=context_positions)
            x = x + self._drop(h) if pre else self.norm_cross(x + self._drop(h))
        h = self.ffn(self.norm2(x) if pre else x)
        return x + self._drop(h) if pre else self.norm2(x + self._drop(h))


class EncoderBlock(_Block):
    """Bidirectional self-attention + FFN. ``x (B, T, d)``, ``mask`` (usually a padding mask ``(B,1,1,T)``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cross=False)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, context: Tensor | None = None, rope=None, positions=None, attn_bias=None
    ) -> Tensor:
        if context is not None:
            raise TypeError(
                "An EncoderBlock has no cross-attention, so it cannot take a context. "
                "Use CrossDecoderBlock for a decoder that reads the encoder output."
            )
        return self._forward(x, mask, rope=rope, positions=positions, attn_bias=attn_bias)


class DecoderBlock(_Block):
    """Causal self-attention + FFN. Without an explicit ``mask`` attention is causal (aligned to the
    newest positions when a KV ``cache`` holds earlier ones; attention decides how, see
    :func:`~course_lib.attention.scaled_dot_product_attention`); an explicit ``mask`` (e.g. a
    prefix-LM mask) is used as given."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cross=False)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, cache: dict[str, KVCache] | None = None, rope=None, positions=None, attn_bias=None
    ) -> Tensor:
        return self._forward(x, mask, cache=cache, rope=rope, positions=positions, attn_bias=attn_bias, causal=mask is None)


class CrossDecoderBlock(_Block):
    """The encoder-decoder's decoder block: causal self-attention, then cross-attention
    (queries from here, keys/values from the encoder output ``context (B, S, d)``), then FFN.
    Self-attention is causal unless an explicit ``mask`` is given, as in :class:`DecoderBlock`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cross=True)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        cache: dict[str, KVCache] | None = None,
        rope=None,
        positions=None,
        attn_bias=None,
        context_positions=None,
    ) -> Tensor:
        return self._forward(x, mask, context, context_mask, cache=cache, rope=rope, positions=positions, attn_bias=attn_bias,
                             context_positions=context_positions, causal=mask is None)


class DecoderCache:
    """The KV cache of a decoder stack (``model.new_cache()``): per layer a :class:`KVCache` for
    self-attention (``"self"``: one more position per token read) and one for cross-attention
    (``"cross"``: the encoder output's keys and values, filled by the first decoder call).

    ``len(cache)`` is the number of positions the decoder has read; ``cache[i]`` and iteration give
    each layer's ``{"self": KVCache, "cross": KVCache}`` (what the blocks take).
    """

    def __init__(self, n_layers: int) -> None:
        self.layers = [{"self": KVCache(), "cross": KVCache()} for _ in range(n_layers)]

    def __len__(self) -> int:
        return len(self.layers[0]["self"]) if self.layers else 0

    def __getitem__(self, i: int) -> dict[str, KVCache]:
        return self.layers[i]

    def __iter__(self) -> Iterator[dict[str, KVCache]]:
        return iter(self.layers)

    def truncate(self, n: int) -> None:
        """Forget every position from ``n`` on (as if only ``n`` had been read); cross-attention keeps the source."""
        for layer in self.layers:
            layer["self"].truncate(n)

    def reorder(self, index: Tensor, *, cross: bool = True) -> None:
        """Keep batch rows ``index``. ``cross=False`` leaves the cross-attention keys/values as they are:
        beam search reshuffles one input's beams among themselves, and those beams share one source,
        so its encoder keys/values are already the same in every row."""
        for layer in self.layers:
            layer["self"].reorder(index)
            if cross:
                layer["cross"].reorder(index)


__all__ = ["EncoderBlock", "DecoderBlock", "CrossDecoderBlock", "DecoderCache", "combine_masks"]
