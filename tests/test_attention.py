"""Tests for course_lib.attention against independent references (PyTorch's kernels, hand loops)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib.attention import (
    KVCache,
    MultiHeadAttention,
    cross_attention,
    recording_attention,
    scaled_dot_product_attention,
)
from course_lib.blocks import CrossDecoderBlock, EncoderBlock
from course_lib.config import ModelConfig
from course_lib.layers import RotaryEmbedding
from course_lib.masks import causal_mask, padding_mask, prefix_mask
from course_lib.models import DecoderOnly, EncoderDecoder, EncoderOnly


pytestmark = pytest.mark.usefixtures("one_torch_thread")

DT = torch.float64


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


def reference_masked_attention(q, k, v, mask=None):
    """Independent reference: exp of shifted scores, zeroed with `where`, normalised by hand.
    Rows with no visible key give 0 (matching the library's documented convention)."""
    scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool)
    mask = torch.broadcast_to(mask, scores.shape)
    big = torch.where(mask, scores, torch.full_like(scores, -1e300)).amax(-1, keepdim=True)
    big = torch.where(torch.isfinite(big) & (big > -1e299), big, torch.zeros_like(big))
    e = torch.where(mask, torch.exp(scores - big), torch.zeros_like(scores))
    denom = e.sum(-1, keepdim=True)
    w = torch.where(denom > 0, e / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(e))
    return torch.einsum("...qk,...kd->...qd", w, v), w


def both_paths(q, k, v, mask=None):
    out_fast = scaled_dot_product_attention(q, k, v, mask)
    out_slow, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    return out_fast, out_slow, w


# ---------------------------------------------------------------- scaled dot-product attention
def hand_loop_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v, one query and one key at a time, in plain Python floats."""
    t_q, d_k = q.shape
    t_k = k.shape[0]
    out = torch.zeros(t_q, v.shape[1], dtype=DT)
    for i in range(t_q):
        s = {j: sum(float(q[i, c]) * float(k[j, c]) for c in range(d_k)) / math.sqrt(d_k) for j in range(t_k) if mask is None or bool(mask[i, j])}
        m = max(s.values())
        e = {j: math.exp(x - m) for j, x in s.items()}
        z = sum(e.values())
        for j, ej in e.items():
            out[i] += (ej / z) * v[j]
    return out


@pytest.mark.parametrize("mask", [None, causal_mask(3, 4), torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]]).bool()])
def test_sdpa_equals_hand_loop_over_formula(mask):
    q, k, v = rand(3, 2, seed=1) * 2, rand(4, 2, seed=2), rand(4, 3, seed=3)
    expected = hand_loop_attention(q, k, v, mask)
    fast, slow, w = both_paths(q, k, v, mask)
    torch.testing.assert_close(fast, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(slow, expected, atol=1e-12, rtol=0)
    if mask is not None:
        assert bool((w[~mask] == 0).all())


def test_sdpa_single_visible_key_returns_its_value():
    q, k, v = rand(3, 2, seed=1), rand(4, 2, seed=2), rand(4, 3, seed=3)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, 2] = mask[1, 0] = mask[2, 3] = True
    for out in both_paths(q, k, v, mask)[:2]:
        torch.testing.assert_close(out, v[[2, 0, 3]], atol=1e-12, rtol=0)


def _masks(B, T):
    tokens = torch.tensor([[3, 4, 5, 6, 7, 8], [3, 4, 5, 0, 0, 0]])[:B, :T]
    return {
        "none": None,
        "padding": padding_mask(tokens),
        "causal": causal_mask(T),
        "prefix_int": prefix_mask(T, 3),
        "prefix_tensor": prefix_mask(T, torch.tensor([2, 4])),
        "padding&causal": padding_mask(tokens) & causal_mask(T),
    }


@pytest.mark.parametrize("name", ["none", "padding", "causal", "prefix_int", "prefix_tensor", "padding&causal"])
def test_sdpa_equals_torch_sdpa(name):
    B, H, T, d = 2, 3, 6, 5
    q, k, v = rand(B, H, T, d, seed=1), rand(B, H, T, d, seed=2), rand(B, H, T, 4, seed=3)
    mask = _masks(B, T)[name]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    fast, slow, w = both_paths(q, k, v, mask)
    torch.testing.assert_close(fast, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(slow, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T, dtype=DT), atol=1e-12, rtol=0)
    if mask is not None:
        hidden = ~torch.broadcast_to(mask, w.shape)
        assert bool((w[hidden] == 0).all()), "masked keys must get probability exactly 0"
        assert bool((w[~hidden] > 0).all())


def test_sdpa_cross_shapes_equal_torch_sdpa():
    q, k, v = rand(2, 2, 3, 4, seed=4), rand(2, 2, 7, 4, seed=5), rand(2, 2, 7, 6, seed=6)
    mask = padding_mask(torch.tensor([[1, 2, 3, 4, 5, 6, 7], [1, 2, 0, 0, 0, 0, 0]]))
    fast, slow, _ = both_paths(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(slow, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("return_weights", [False, True])
def test_fully_masked_row_gives_zeros_and_finite_grads(return_weights):
    B, H, T, d = 2, 2, 4, 3
    q, k, v = (rand(B, H, T, d, seed=s).requires_grad_() for s in (7, 8, 9))
    mask = causal_mask(T).clone()
    mask[1] = False  # query 1 sees nothing
    mask = mask.expand(B, 1, T, T).clone()
    mask[0, 0, 3] = False  # and query 3 of batch 0
    res = scaled_dot_product_attention(q, k, v, mask, return_weights=return_weights)
    out = res[0] if return_weights else res
    assert not torch.isnan(out).any()
    assert out[:, :, 1].abs().max() == 0
    assert out[0, :, 3].abs().max() == 0
    ref, ref_w = reference_masked_attention(q.detach(), k.detach(), v.detach(), mask)
    torch.testing.assert_close(out.detach(), ref, atol=1e-10, rtol=0)
    if return_weights:
        torch.testing.assert_close(res[1].detach(), ref_w, atol=1e-12, rtol=0)
    (out.sin().sum()).backward()
    for t in (q, k, v):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    # the empty query receives no gradient (its output is a constant 0)
    assert q.grad[:, :, 1].abs().max() == 0


def test_all_keys_masked_padding_row():
    # a batch row that is entirely padding: padding mask (B,1,1,T) with an all-False row
    q, k, v = rand(2, 1, 3, 4, seed=1), rand(2, 1, 3, 4, seed=2), rand(2, 1, 3, 4, seed=3)
    mask = padding_mask(torch.tensor([[5, 6, 7], [0, 0, 0]]))
    fast, slow, w = both_paths(q, k, v, mask)
    for out in (fast, slow):
        assert not torch.isnan(out).any()
        assert out[1].abs().max() == 0
        torch.testing.assert_close(out[0], F.scaled_dot_product_attention(q[:1], k[:1], v[:1])[0], atol=1e-10, rtol=0)
    assert w[1].abs().max() == 0


# ---------------------------------------------------------------- hypothesis property
@st.composite
def attention_case(draw):
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 3))
    t_q = draw(st.integers(1, 5))
    t_k = draw(st.integers(1, 6))
    d = draw(st.integers(1, 6))
    d_v = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["full", "per_batch", "shared", "keys_only", "none"]))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    return B, H, t_q, t_k, d, d_v, seed, kind, scale


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attention_case())
def test_sdpa_property_random_masks(case):
    B, H, t_q, t_k, d, d_v, seed, kind, scale = case
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, t_q, d, generator=g, dtype=DT) * scale
    k = torch.randn(B, H, t_k, d, generator=g, dtype=DT)
    v = torch.randn(B, H, t_k, d_v, generator=g, dtype=DT)
    shape = {"full": (B, H, t_q, t_k), "per_batch": (B, 1, t_q, t_k), "shared": (t_q, t_k), "keys_only": (B, 1, 1, t_k), "none": None}[kind]
    mask = None
    if shape is not None:
        p = torch.rand(1, generator=g).item()  # sometimes dense, sometimes sparse (all-False rows)
        mask = torch.rand(shape, generator=g) < p
        if mask.numel() > 1 and torch.rand(1, generator=g).item() < 0.5:
            mask.view(-1, mask.shape[-1])[0] = False  # force at least one all-False row
    ref, ref_w = reference_masked_attention(q, k, v, mask)
    fast, slow, w = both_paths(q, k, v, mask)
    for out in (fast, slow, w):
        assert not torch.isnan(out).any()
    torch.testing.assert_close(fast, ref, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(slow, ref, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=1e-9)


# ---------------------------------------------------------------- MultiHeadAttention vs nn.MultiheadAttention
def make_pair(d=12, h=3, bias=True, seed=0):
    torch.manual_seed(seed)
    ours = MultiHeadAttention(d, h, bias=bias).to(DT)
    ref = nn.MultiheadAttention(d, h, bias=bias, batch_first=True).to(DT)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(ours.in_proj.bias)
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
def test_mha_self_attention_padding_equals_torch(bias):
    ours, ref = make_pair(bias=bias)
    tokens = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 0, 0], [9, 0, 0, 0, 0]])
    x = rand(3, 5, 12, seed=1)
    out = ours(x, mask=padding_mask(tokens))
    expected, _ = ref(x, x, x, key_padding_mask=tokens == 0, need_weights=False)  # PyTorch: True = ignore
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["causal", "prefix", "causal+padding"])
def test_mha_self_attention_masks_equal_torch(kind):
    ours, ref = make_pair(seed=1)
    T = 6
    x = rand(2, T, 12, seed=2)
    tokens = torch.tensor([[4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 0, 0]])
    if kind == "causal":
        mask, kw = causal_mask(T), dict(attn_mask=~causal_mask(T))
    elif kind == "prefix":
        mask, kw = prefix_mask(T, 3), dict(attn_mask=~prefix_mask(T, 3))
    else:
        mask = padding_mask(tokens) & causal_mask(T)
        kw = dict(attn_mask=~causal_mask(T), key_padding_mask=tokens == 0)
    out = ours(x, mask=mask)
    expected, _ = ref(x, x, x, need_weights=False, **kw)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


def test_mha_per_example_prefix_equals_torch_per_example():
    ours, ref = make_pair(seed=2)
    T = 5
    x = rand(2, T, 12, seed=3)
    lengths = torch.tensor([1, 4])
    out = ours(x, mask=prefix_mask(T, lengths))
    for b, n in enumerate(lengths.tolist()):
        expected, _ = ref(x[b : b + 1], x[b : b + 1], x[b : b + 1], attn_mask=~prefix_mask(T, n), need_weights=False)
        torch.testing.assert_close(out[b : b + 1], expected, atol=1e-10, rtol=0)


def test_mha_cross_attention_with_context_padding_equals_torch():
    ours, ref = make_pair(seed=3)
    x = rand(2, 4, 12, seed=4)
    ctx = rand(2, 6, 12, seed=5)
    src = torch.tensor([[3, 4, 5, 6, 7, 8], [3, 4, 0, 0, 0, 0]])
    out = ours(x, context=ctx, mask=padding_mask(src))
    expected, _ = ref(x, ctx, ctx, key_padding_mask=src == 0, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(cross_attention(ours, x, ctx, padding_mask(src)), expected, atol=1e-10, rtol=0)
    # the context really matters (not a self-attention in disguise)
    assert not torch.allclose(out, ours(x, mask=None)[:, :4])


def test_mha_cross_attention_qk_norm_equals_hand_computation():
    torch.manual_seed(5)
    mha = MultiHeadAttention(12, 3, qk_norm=True).to(DT)
    with torch.no_grad():
        for p in mha.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    x, ctx = rand(2, 4, 12, seed=7), rand(2, 5, 12, seed=8)
    cmask = padding_mask(torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]]))
    w, b = mha.in_proj.weight, mha.in_proj.bias

    def heads(t):
        return t.view(2, -1, 3, 4).transpose(1, 2)

    q = mha.q_norm(heads(x @ w[:12].T + b[:12]))
    k = mha.k_norm(heads(ctx @ w[12:24].T + b[12:24]))
    v = heads(ctx @ w[24:].T + b[24:])
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=cmask)
    expected = mha.out_proj(o.transpose(1, 2).reshape(2, 4, 12))
    torch.testing.assert_close(mha(x, context=ctx, mask=cmask), expected, atol=1e-10, rtol=0)
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], context=ctx, mask=cmask, cache=cache) for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1), expected, atol=1e-10, rtol=0)


def test_mha_recorded_weights_equal_torch_average_weights():
    ours, ref = make_pair(seed=4)
    x = rand(2, 5, 12, seed=6)
    with recording_attention(ours) as maps:
        ours(x, mask=causal_mask(5))
    _, w_ref = ref(x, x, x, attn_mask=~causal_mask(5), need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(maps[""], w_ref, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- KV cache
@pytest.mark.parametrize("use_rope,qk_norm", [(False, False), (True, False), (True, True)])
def test_kv_cache_one_token_at_a_time_equals_full_causal(use_rope, qk_norm):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, qk_norm=qk_norm).to(DT)
    with torch.no_grad():
        for p in mha.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    rope = RotaryEmbedding(4, max_len=64).to(DT) if use_rope else None
    T = 7
    x = rand(2, T, 16, seed=1)
    full = mha(x, mask=causal_mask(T), rope=rope, positions=torch.arange(T))
    cache = KVCache()
    steps = []
    for t in range(T):
        steps.append(mha(x[:, t : t + 1], mask=causal_mask(1, t + 1), cache=cache, rope=rope, positions=torch.arange(t, t + 1)))
        assert len(cache) == t + 1
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-10, rtol=0)
    # chunked prefill + steps also agrees
    cache = KVCache()
    a = mha(x[:, :4], mask=causal_mask(4), cache=cache, rope=rope, positions=torch.arange(4))
    b = mha(x[:, 4:], mask=causal_mask(3, 7), cache=cache, rope=rope, positions=torch.arange(4, 7))
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-10, rtol=0)
    assert cache.nbytes() == 2 * 2 * 4 * 7 * 4 * 8


@pytest.mark.parametrize("qk_norm", [False, True])
def test_mha_rope_rotates_queries_and_keys(qk_norm):
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 2, qk_norm=qk_norm).to(DT)
    with torch.no_grad():
        for p in mha.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    rope = RotaryEmbedding(8, max_len=64).to(DT)
    T = 6
    x = rand(2, T, 16, seed=5)
    pos = torch.arange(T)
    out = mha(x, mask=causal_mask(T), rope=rope, positions=pos)
    # by hand: project, split heads, (QK-norm), rotate q AND k, attend, merge, project
    q, k, v = (t.view(2, T, 2, 8).transpose(1, 2) for t in mha.in_proj(x).chunk(3, dim=-1))
    if qk_norm:
        q, k = mha.q_norm(q), mha.k_norm(k)
    q, k = rope(q, pos), rope(k, pos)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T))
    torch.testing.assert_close(out, mha.out_proj(o.transpose(1, 2).reshape(2, T, 16)), atol=1e-10, rtol=0)
    # RoPE only encodes relative positions: shifting every position leaves the output unchanged
    # (to float32 precision: RotaryEmbedding builds its cos/sin table in float32)
    for shift in (1, 9):
        torch.testing.assert_close(mha(x, mask=causal_mask(T), rope=rope, positions=pos + shift), out, atol=1e-5, rtol=0)
    assert (mha(x, mask=causal_mask(T)) - out).abs().max() > 1e-3  # and it does change attention


def test_kv_cache_wrong_mask_alignment_would_differ():
    """Sanity check that the test above can fail: a mask without the cache offset is wrong."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).to(DT)
    x = rand(1, 4, 8, seed=2)
    full = mha(x, mask=causal_mask(4))
    cache = KVCache()
    mha(x[:, :3], mask=causal_mask(3), cache=cache)
    wrong = mha(x[:, 3:], mask=torch.tensor([[True, False, False, False]]), cache=cache)
    assert not torch.allclose(wrong, full[:, 3:])


def test_cross_attention_cache_computes_kv_once(monkeypatch):
    torch.manual_seed(1)
    mha = MultiHeadAttention(8, 2, qk_norm=True).to(DT)
    x = rand(2, 5, 8, seed=3)
    ctx = rand(2, 4, 8, seed=4)
    cmask = padding_mask(torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]]))
    full = mha(x, context=ctx, mask=cmask)
    cache = KVCache()
    outs = [mha(x[:, :1], context=ctx, mask=cmask, cache=cache)]
    k0, v0 = cache.k, cache.v
    calls = []
    orig_linear = F.linear

    def spy(inp, w, b=None):
        calls.append(tuple(w.shape))
        return orig_linear(inp, w, b)

    monkeypatch.setattr(F, "linear", spy)  # the module object course_lib.attention uses
    for t in range(1, 5):
        # garbage context: if K/V were recomputed from it the output would change
        outs.append(mha(x[:, t : t + 1], context=ctx * 0 + 123.0, mask=cmask, cache=cache))
        assert cache.k is k0 and cache.v is v0
        assert len(cache) == 4
    monkeypatch.undo()
    # only the query projection (d, d) ran, never the key/value one (2d, d)
    assert (16, 8) not in calls and (8, 8) in calls
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-10, rtol=0)


def test_kv_cache_reorder():
    c = KVCache()
    k = torch.arange(3.0).view(3, 1, 1, 1)
    c.append(k, -k)
    c.reorder(torch.tensor([2, 2, 0]))
    assert c.k.flatten().tolist() == [2.0, 2.0, 0.0]
    assert c.v.flatten().tolist() == [-2.0, -2.0, 0.0]


# ---------------------------------------------------------------- recording_attention on models
def test_recording_attention_every_layer_rows_sum_to_one():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=13, d_model=16, n_heads=2, n_enc_layers=2, n_dec_layers=3)
    model = EncoderDecoder(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]])
    tgt = torch.tensor([[1, 9, 10], [1, 11, 12]])
    with recording_attention(model) as maps:
        model(src, tgt)
    expected = {f"encoder.{i}.self_attn" for i in range(2)}
    expected |= {f"decoder.{i}.{n}" for i in range(3) for n in ("self_attn", "cross_attn")}
    assert set(maps) == expected
    for name, w in maps.items():
        t_k = 4 if name.startswith("encoder") or "cross" in name else 3
        t_q = 4 if name.startswith("encoder") else 3
        assert w.shape == (2, 2, t_q, t_k), name
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, t_q), atol=1e-5, rtol=0)
        if "cross" in name or name.startswith("encoder"):
            assert w[1, :, :, 2:].abs().max() == 0, name  # padded source keys
        else:
            assert bool((w.triu(1) == 0).all()), name  # causal
    # recording is switched off afterwards
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            assert m.record is False and m.last_weights is None


def test_recording_attention_decoder_and_encoder_only():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, d_model=8, n_heads=2, n_layers=2)
    for model, names in ((DecoderOnly(cfg), "blocks"), (EncoderOnly(cfg), "blocks")):
        with recording_attention(model) as maps:
            model(torch.tensor([[3, 4, 5]]))
        assert set(maps) == {f"{names}.0.self_attn", f"{names}.1.self_attn"}
        for w in maps.values():
            torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 3), atol=1e-5, rtol=0)


def test_recording_does_not_change_output():
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=11, d_model=8, n_heads=2)).eval()
    x = torch.tensor([[3, 4, 5, 6]])
    plain = model(x)
    with recording_attention(model):
        rec = model(x)
    torch.testing.assert_close(plain, rec, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- errors
def test_mha_d_model_not_divisible_names_both_numbers():
    with pytest.raises(ValueError) as e:
        MultiHeadAttention(10, 3)
    assert "10" in str(e.value) and "3" in str(e.value)


def test_qk_last_dim_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as e:
        scaled_dot_product_attention(torch.zeros(2, 3, 4), torch.zeros(2, 5, 6), torch.zeros(2, 5, 6))
    assert "(2, 3, 4)" in str(e.value) and "(2, 5, 6)" in str(e.value)


def test_kv_length_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as e:
        scaled_dot_product_attention(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 6, 4))
    assert "(2, 5, 4)" in str(e.value) and "(2, 6, 4)" in str(e.value)


def test_mask_that_does_not_broadcast_names_its_shape():
    q = torch.zeros(2, 1, 3, 4)
    with pytest.raises(ValueError) as e:
        scaled_dot_product_attention(q, q, q, torch.ones(3, 5, dtype=torch.bool))
    assert "(3, 5)" in str(e.value)
    # a mask that broadcasts to a *bigger* shape than the scores is also wrong
    with pytest.raises(ValueError, match=r"\(4, 1, 3, 3\)"):
        scaled_dot_product_attention(q, q, q, torch.ones(4, 1, 3, 3, dtype=torch.bool))


@pytest.mark.parametrize("return_weights", [False, True])
def test_float_mask_is_type_error(return_weights):
    q = torch.zeros(1, 3, 4)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, q, q, causal_mask(3).float(), return_weights=return_weights)


def test_mha_float_mask_is_type_error():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(TypeError, match="boolean"):
        mha(torch.zeros(1, 3, 8), mask=torch.zeros(3, 3))


def test_mha_wrong_context_shape():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="context"):
        mha(torch.zeros(2, 3, 8), context=torch.zeros(2, 3, 6))


def test_encoder_block_given_context_points_to_cross_decoder_block():
    cfg = ModelConfig(vocab_size=10, d_model=8, n_heads=2)
    block = EncoderBlock(cfg)
    with pytest.raises(TypeError, match="CrossDecoderBlock"):
        block(torch.zeros(1, 3, 8), context=torch.zeros(1, 2, 8))
    # while CrossDecoderBlock does take one
    out = CrossDecoderBlock(cfg)(torch.zeros(1, 3, 8), torch.randn(1, 2, 8))
    assert out.shape == (1, 3, 8)


@pytest.mark.parametrize("causal", [False, True])
def test_mask_that_hides_nothing_equals_no_mask(causal):
    """An unpadded batch's padding mask (all True) is dropped for the unmasked kernels: the same answer as
    PyTorch's attention without a mask, and a mask of a real padded batch still hides its keys."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.allclose(scaled_dot_product_attention(q, k, v, keep, causal=causal), expected, atol=1e-6)
    keep[1, ..., -2:] = False  # the second sequence ends in two pads
    out = scaled_dot_product_attention(q, k, v, keep, causal=causal)
    ref = F.scaled_dot_product_attention(q[1:, :, :3], k[1:, :, :3], v[1:, :, :3], is_causal=causal)
    assert torch.allclose(out[1:, :, :3], ref, atol=1e-6)


def test_mask_that_hides_nothing_with_grouped_kv_heads():
    """Grouped-query attention (2 K/V heads for 4 query heads) with an all-True mask: the same answer as the K/V
    heads repeated, and a wrong-shaped all-True mask is still refused."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))
    out = scaled_dot_product_attention(q, k, v, torch.ones(2, 1, 1, 5, dtype=torch.bool))
    assert torch.allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 6\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(2, 1, 1, 6, dtype=torch.bool))
