"""The fast path of cached decoding: one token at a time, with the lookups done once.

A decoding step of a small model is a few hundred tiny operations, and on a CPU most of its time is
Python, not arithmetic. The general forward pass (``DecoderOnly.forward``, ``EncoderDecoder.decode``) redoes per token and per
layer work whose answer never changes between tokens: it finds each submodule by name (``self.norm1``,
``self.self_attn.in_proj``: on Python 3.11 each such read of an ``nn.Module`` first fails the normal
attribute lookup, building and discarding an ``AttributeError``), calls three nested modules (block,
attention, feed-forward) with keyword arguments, and checks masks and options that are all off in a
plain decoding step.

:class:`FlatDecoder` does the lookups once per generation (a tuple of modules per layer) and then runs
the same arithmetic as the blocks, written out flat. The whole GPT decoding step:

    x = Embed(token, position)                                    (B, 1, d)
    for each layer:
        q, k, v = split_heads(W_qkv · Norm₁(x))                   (B, H, 1, d_head) each
        K, V = cache.append(k, v)                                 (B, H, n_ctx, d_head)
        x = x + W_O · merge_heads(softmax(q Kᵀ / √d_head) V)       one query may see every key: no mask
        x = x + FFN(Norm₂(x))
    logits = Head(Norm_f(x))                                      (B, 1, V)

An encoder-decoder's step adds one sublayer per layer, after self-attention: cross-attention of the
new position over the encoder output's keys and values, computed by the first decoder call (BOS) and
read from the cache ever after::

        x = x + W_O · merge_heads(softmax(W_q·Norm_x(x) K_srcᵀ / √d_head + source padding) V_src)

It covers pre-norm decoders (decoder-only, and the encoder-decoder's decoder) with learned, sinusoidal,
rotary or no positions, full or grouped-query attention and any norm and FFN: the config options listed
in :data:`_HANDLED`. Anything else (post-norm, T5's relative bias, QK-/V-norm, RoPE in cross-attention,
an option not on that list, training mode, attention being recorded, hooks on a module it skips, a
subclass) takes the general path.
Both give the same logits bit for bit: ``tests/test_fast_decode.py`` checks it config by config.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention, attend_all_keys, scaled_dot_product_attention
from .blocks import CrossDecoderBlock, DecoderBlock, DecoderCache
from .models import DecoderOnly, EncoderDecoder


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


_ANY = None
#: Every ModelConfig field the flat step is known to handle, with the values it handles (``_ANY``: the
#: modules it calls as they are, the embeddings, norms, FFN, RoPE table and output layer, read the
#: field themselves; or it only concerns other families). An allow-list: a field missing here, such as a
#: new option, sends the model to the general path until someone checks the flat step and adds it.
_HANDLED: dict[str, tuple | None] = {
    "norm_first": (True,), "pos": ("learned", "sinusoidal", "rope", "none"),
    "qk_norm": (False,), "v_norm": (False,), "attn_out_norm": (False,),
    **dict.fromkeys(("vocab_size", "d_model", "n_heads", "n_kv_heads", "n_layers", "n_enc_layers", "n_dec_layers", "d_ff",
                     "dropout", "norm", "ffn", "max_len", "rope_cross", "tie_embeddings", "bias", "norm_eps", "final_norm",
                     "scale_embeddings", "pad_id", "rope_base", "gelu_approx", "embed_norm", "embed_norm_eps",
                     "type_vocab_size", "pos_offset", "mlm_head", "head_bias", "output_scale", "attn_scale", "rel_buckets",
                     "rel_max_distance", "rope_scaling"), _ANY),
}


def _config_handled(cfg) -> bool:
    return all(name in _HANDLED and (_HANDLED[name] is _ANY or value in _HANDLED[name]) for name, value in vars(cfg).items())


def _decoder_parts(model: nn.Module):
    """(block class, blocks, token embedding, final norm) of a decoder-only model or an encoder-decoder's decoder."""
    if type(model) is DecoderOnly:
        return DecoderBlock, model.blocks, model.embed, model.norm
    return CrossDecoderBlock, model.decoder, model.tgt_embed, model.dec_norm


class FlatDecoder:
    """Cached decoding steps of a :class:`DecoderOnly` or of an :class:`EncoderDecoder`'s decoder,
    with their modules looked up once.

    ``FlatDecoder(model).step(token (B, 1), cache, context_mask)`` returns the logits ``(B, V)`` of the
    next token and appends this position's keys and values to ``cache`` (filled by a prefill through the
    general ``model(prompt, cache=cache)``, or by the encoder-decoder's first ``model.decode(bos, ...,
    cache=cache)``, which also stores the source's cross-attention keys/values). ``context_mask`` is the
    source padding mask ``(B, 1, 1, S)`` of an encoder-decoder (None: no padding). Use :meth:`supports` first.
    """

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Whether the flat step computes exactly what ``model``'s forward pass would: a plain
        :class:`DecoderOnly` or :class:`EncoderDecoder` (not a subclass) in eval mode, every config option
        in :data:`_HANDLED` (and no RoPE in cross-attention), no hooks on the modules it skips, and no
        attention being recorded."""
        if type(model) not in (DecoderOnly, EncoderDecoder) or model.training or _hooked(model) or not _config_handled(model.cfg):
            return False
        if type(model) is EncoderDecoder and model.cfg.rope_cross:
            return False
        block_type, blocks, _, _ = _decoder_parts(model)
        for block in blocks:
            attns = [block.self_attn] + ([block.cross_attn] if block_type is CrossDecoderBlock else [])
            if type(block) is not block_type or _hooked(block):
                return False
            for attn in attns:
                if type(attn) is not MultiHeadAttention or _hooked(attn) or attn.record or attn.max_logit_log is not None:
                    return False
        return True

    def __init__(self, model: DecoderOnly | EncoderDecoder) -> None:
        if not self.supports(model):
            raise ValueError("FlatDecoder only runs a pre-norm DecoderOnly or EncoderDecoder in eval mode without QK-/V-norm, "
                             "relative position bias, hooks or attention recording; use the model's forward pass.")
        _, blocks, self.embed, self.norm = _decoder_parts(model)
        self.rope, self.head = model.rope, model.head
        self.layers = []
        for b in blocks:
            cross = None
            if b.cross_attn is not None:  # W_Q is the first d_model rows of in_proj (W_K, W_V made the cached keys/values)
                c, d = b.cross_attn, b.cross_attn.d_model
                w, bias = c.in_proj.weight, c.in_proj.bias
                cross = (b.norm_cross, w[:d], None if bias is None else bias[:d], c.out_proj, c)
            self.layers.append((b.norm1, b.self_attn.in_proj, b.self_attn.out_proj, b.norm2, b.ffn, b.self_attn, cross))

    def step(self, token: Tensor, cache: DecoderCache, context_mask: Tensor | None = None) -> Tensor:
        """``token (B, 1)`` at position ``len(cache)`` -> next-token logits ``(B, V)``."""
        past = len(cache)
        x = self.embed(token, start=past)  # (B, 1, d)
        positions = None if self.rope is None else torch.arange(past, past + 1, device=token.device)
        for (norm1, in_proj, out_proj, norm2, ffn, attn, cross), layer_cache in zip(self.layers, cache):
            h, h_kv = attn.n_heads, attn.n_kv_heads
            q, k, v = attn._heads(in_proj(norm1(x))).split_with_sizes([h, h_kv, h_kv], dim=1)  # (B, heads, 1, d_head)
            if positions is not None:
                q, k = self.rope(q, positions), self.rope(k, positions)
            k, v = layer_cache["self"].append(k, v)  # (B, h_kv, past + 1, d_head)
            a = attend_all_keys(q, k, v, scale=attn.scale)  # one query sees every key: no mask; GQA heads read as they are
            x = x + out_proj(a.transpose(1, 2).flatten(2))  # merge the heads, W_O
            if cross is not None:  # the new position reads the source: keys/values cached by the first decoder call
                norm_x, w_q, b_q, out_x, attn_x = cross
                q = attn_x._heads(F.linear(norm_x(x), w_q, b_q))  # (B, h, 1, d_head)
                k, v = layer_cache["cross"].k, layer_cache["cross"].v  # (B, h_kv, S, d_head)
                if context_mask is None:  # no padded source token: nothing to hide
                    a = attend_all_keys(q, k, v, scale=attn_x.scale)
                else:  # the library's attention: it also answers a source of padding only with zeros, as the general path
                    a = scaled_dot_product_attention(q, k, v, context_mask, scale=attn_x.scale)
                x = x + out_x(a.transpose(1, 2).flatten(2))
            x = x + ffn(norm2(x))
        return self.head(self.norm(x))[:, -1]
