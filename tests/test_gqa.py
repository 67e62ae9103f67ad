"""Grouped-query attention (``ModelConfig.n_kv_heads``): the reference formula, the cache stores
only the K/V heads, cached decoding equals uncached, and the preallocated KV cache."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.attention import KVCache, MultiHeadAttention, attend_all_keys, scaled_dot_product_attention
from course_lib.config import ModelConfig
from course_lib.costs import kv_cache_bytes, layer_params
from course_lib.blocks import DecoderBlock
from course_lib.generation import generate
from course_lib.models import DecoderOnly, EncoderDecoder

torch.set_num_threads(1)


@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_gqa_equals_hand_formula(n_kv):
    torch.manual_seed(0)
    d, H, B, T = 32, 4, 2, 5
    mha = MultiHeadAttention(d, H, n_kv_heads=n_kv).double()
    x = torch.randn(B, T, d, dtype=torch.float64)
    dh, g = d // H, H // n_kv
    w, b = mha.in_proj.weight, mha.in_proj.bias
    q = (x @ w[:d].T + b[:d]).view(B, T, H, dh).transpose(1, 2)
    k = (x @ w[d : d + n_kv * dh].T + b[d : d + n_kv * dh]).view(B, T, n_kv, dh).transpose(1, 2)
    v = (x @ w[d + n_kv * dh :].T + b[d + n_kv * dh :]).view(B, T, n_kv, dh).transpose(1, 2)
    heads = []
    for h in range(H):  # query head h reads K/V head h // g
        s = q[:, h] @ k[:, h // g].transpose(-1, -2) / math.sqrt(dh)
        heads.append(s.softmax(-1) @ v[:, h // g])
    ref = torch.cat(heads, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias
    torch.testing.assert_close(mha(x), ref)
    assert mha.in_proj.weight.shape == (d + 2 * n_kv * dh, d)


@pytest.mark.parametrize("t_q", [1, 3])
@pytest.mark.parametrize("scale", [None, 0.5])
def test_attention_without_mask_reads_grouped_heads_without_copying_them(t_q, scale, monkeypatch):
    """Where every query sees every key (a decoding step, unpadded cross-attention) each group of query heads is
    stacked on its K/V head: the answer of K and V repeated per query head, without repeating them."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, t_q, 8, dtype=torch.float64), torch.randn(2, 2, 5, 8, dtype=torch.float64), torch.randn(2, 2, 5, 8, dtype=torch.float64)
    s = 1 / math.sqrt(8) if scale is None else scale
    expected = ((q @ k.repeat_interleave(3, 1).transpose(-1, -2) * s).softmax(-1)) @ v.repeat_interleave(3, 1)
    torch.testing.assert_close(attend_all_keys(q, k, v, scale=scale), expected)
    monkeypatch.setattr(torch.Tensor, "repeat_interleave", lambda *a, **kw: pytest.fail("K/V were repeated per query head"))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=scale, causal=t_q == 1), expected)


def test_gqa_params_and_cache_bytes():
    cfg = ModelConfig(vocab_size=50, d_model=64, n_heads=8, n_kv_heads=2, n_layers=3, max_len=64)
    assert cfg.kv_heads == 2 and ModelConfig(vocab_size=5).kv_heads == 4
    assert layer_params(cfg, "decoder") == sum(p.numel() for p in DecoderBlock(cfg).parameters())
    model = DecoderOnly(cfg).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(3, 50, (2, 11)), cache=cache)
    assert cache[0]["self"].k.shape == (2, 2, 11, 8)  # stored at n_kv_heads, not n_heads
    held = sum(layer["self"].nbytes() for layer in cache)
    assert held == 2 * kv_cache_bytes(3, 2, 8, 11, 4)  # batch 2


def test_config_rejects_kv_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide n_heads=4"):
        ModelConfig(vocab_size=10, n_heads=4, n_kv_heads=3)


@pytest.mark.parametrize("cls", [DecoderOnly, EncoderDecoder])
def test_gqa_cached_equals_uncached(cls):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=23, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, max_len=64, pos="rope", tie_embeddings=False)
    model = cls(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randint(3, 23, (2, 6))
    a = generate(model, x, 20, eos_id=None, use_cache=True)
    b = generate(model, x, 20, eos_id=None, use_cache=False)
    assert torch.equal(a, b)


def test_kv_cache_grows_in_place_and_keeps_the_values():
    cache, ks = KVCache(), []
    for t in range(40):
        k = torch.full((1, 2, 1 if t else 3, 4), float(t))
        ks.append(k)
        cache.append(k, -k)
    full = torch.cat(ks, dim=-2)
    assert torch.equal(cache.k, full) and torch.equal(cache.v, -full) and len(cache) == 42
    assert cache.nbytes() == 2 * full.numel() * 4
    assert cache.nbytes() <= cache.allocated_bytes() <= 2 * cache.nbytes() + 2 * 16 * 8 * 4
