"""Tests for the three model families: equality with nn.Transformer, masking properties
(causality, prefix-LM, bidirectionality, padding invariance), layers, parameter counts, errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.blocks import EncoderBlock
from course_lib.config import ModelConfig
from course_lib.layers import RMSNorm, RotaryEmbedding, SwiGLU, sinusoidal_table
from course_lib.masks import causal_mask
from course_lib.models import DecoderOnly, EncoderDecoder, EncoderOnly


pytestmark = pytest.mark.usefixtures("one_torch_thread")

DT = torch.float64
V = 17  # vocabulary for the property tests (0 = pad)


def randomize(model: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Push every parameter away from its (tiny, near-symmetric) init so that differences show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model.eval()


def build(cls, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("vocab_size", V)
    kw.setdefault("d_model", 16)
    kw.setdefault("n_heads", 4)
    kw.setdefault("n_layers", 2)
    kw.setdefault("max_len", 32)
    return randomize(cls(ModelConfig(**kw)).to(DT), seed)


def tok(*rows):
    return torch.tensor(rows, dtype=torch.long)


# ================================================================= nn.Transformer equality
def copy_mha(ours, ref: nn.MultiheadAttention):
    ours.in_proj.weight.copy_(ref.in_proj_weight)
    ours.in_proj.bias.copy_(ref.in_proj_bias)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    ours.out_proj.bias.copy_(ref.out_proj.bias)


def copy_linear(ours: nn.Linear, ref: nn.Linear):
    ours.weight.copy_(ref.weight)
    ours.bias.copy_(ref.bias)


def copy_from_nn_transformer(model: EncoderDecoder, ref: nn.Transformer) -> None:
    with torch.no_grad():
        for ob, rb in zip(model.encoder, ref.encoder.layers, strict=True):
            copy_mha(ob.self_attn, rb.self_attn)
            copy_linear(ob.norm1, rb.norm1)
            copy_linear(ob.ffn.linear1, rb.linear1)
            copy_linear(ob.ffn.linear2, rb.linear2)
            copy_linear(ob.norm2, rb.norm2)
        for ob, rb in zip(model.decoder, ref.decoder.layers, strict=True):
            copy_mha(ob.self_attn, rb.self_attn)
            copy_linear(ob.norm1, rb.norm1)
            copy_mha(ob.cross_attn, rb.multihead_attn)
            copy_linear(ob.norm_cross, rb.norm2)
            copy_linear(ob.ffn.linear1, rb.linear1)
            copy_linear(ob.ffn.linear2, rb.linear2)
            copy_linear(ob.norm2, rb.norm3)
        copy_linear(model.enc_norm, ref.encoder.norm)
        copy_linear(model.dec_norm, ref.decoder.norm)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_equals_nn_transformer(norm_first):
    d, h, d_ff = 16, 4, 24
    cfg = ModelConfig(
        vocab_size=V, d_model=d, n_heads=h, n_enc_layers=2, n_dec_layers=3, d_ff=d_ff, dropout=0.0,
        ffn="relu", pos="none", tie_embeddings=False, bias=True, norm="layer", final_norm=True, norm_first=norm_first,
    )
    torch.manual_seed(0)
    model = EncoderDecoder(cfg).to(DT).eval()
    ref = nn.Transformer(
        d_model=d, nhead=h, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=d_ff, dropout=0.0,
        batch_first=True, norm_first=norm_first,
    ).to(DT)
    ref.train()  # dropout is 0; train mode keeps PyTorch off its fused "fast path" (which zeroes pads)
    with torch.no_grad():  # non-trivial norm weights and biases so that a swapped norm would show
        for p in ref.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
        model.src_embed.tok.weight.normal_(0, 1.0)
    copy_from_nn_transformer(model, ref)

    src = tok([5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [4, 0, 0, 0, 0, 0])
    tgt = tok([1, 5, 6, 7], [1, 8, 9, 3], [1, 4, 4, 4])
    src_pad, T = src == 0, tgt.shape[1]
    emb = model.src_embed.tok  # pos="none", no scaling: the embedding is a plain lookup
    src_x, tgt_x = emb(src), emb(tgt)
    torch.testing.assert_close(model.src_embed(src), src_x, atol=0, rtol=0)

    # encoder
    memory, src_mask = model.encode(src)
    ref_mem = ref.encoder(src_x, src_key_padding_mask=src_pad)
    real = ~src_pad
    torch.testing.assert_close(memory[real], ref_mem[real], atol=1e-10, rtol=0)

    # whole model: decoder hidden states (after dec_norm) -> compare through the (untied) head
    with torch.no_grad():
        ref_out = ref(
            src_x, tgt_x,
            tgt_mask=~causal_mask(T),  # PyTorch bool masks: True = NOT allowed
            src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad,
        )
        ours_hidden = model.dec_norm(_decoder_hidden(model, tgt_x, memory, src_mask))
    torch.testing.assert_close(ours_hidden, ref_out, atol=1e-10, rtol=0)
    logits = model(src, tgt)
    torch.testing.assert_close(logits, ref_out @ model.head.proj.weight.T, atol=1e-10, rtol=0)


def _decoder_hidden(model, x, memory, src_mask):
    for block in model.decoder:
        x = block(x, memory, src_mask)
    return x


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_encoder_block_equals_nn_transformer_encoder_layer(norm_first, activation):
    d, h, d_ff = 12, 3, 20
    cfg = ModelConfig(vocab_size=5, d_model=d, n_heads=h, d_ff=d_ff, ffn=activation, norm_first=norm_first, bias=True, norm="layer")
    torch.manual_seed(1)
    ours = EncoderBlock(cfg).to(DT).eval()
    ref = nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first).to(DT)
    ref.train()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        copy_mha(ours.self_attn, ref.self_attn)
        for a, b in ((ours.norm1, ref.norm1), (ours.norm2, ref.norm2), (ours.ffn.linear1, ref.linear1), (ours.ffn.linear2, ref.linear2)):
            copy_linear(a, b)
    x = torch.randn(2, 5, d, dtype=DT) * 2
    pad = tok([1, 1, 1, 1, 1], [1, 1, 0, 0, 0]) == 0
    out = ours(x, (~pad)[:, None, None, :])
    expected = ref(x, src_key_padding_mask=pad)
    torch.testing.assert_close(out[~pad], expected[~pad], atol=1e-10, rtol=0)


# ================================================================= properties, several configs
CONFIGS = {
    "post-layer-gelu-learned": dict(norm_first=False, norm="layer", ffn="gelu", pos="learned"),
    "pre-rms-swiglu-rope-qk": dict(norm_first=True, norm="rms", ffn="swiglu", pos="rope", qk_norm=True, bias=False),
    "pre-layer-gelu-sinusoidal": dict(norm_first=True, norm="layer", ffn="gelu", pos="sinusoidal"),
    "post-rms-swiglu-rope": dict(norm_first=False, norm="rms", ffn="swiglu", pos="rope"),
    "pre-layer-relu-learned-qk-untied": dict(norm_first=True, norm="layer", ffn="relu", pos="learned", qk_norm=True, tie_embeddings=False),
}
CFG_IDS = list(CONFIGS)

SEQ = tok([3, 7, 4, 9, 12, 5, 8, 6], [10, 11, 3, 3, 14, 6, 7, 16])
T = SEQ.shape[1]


def changed_after(seq, t, seed=0):
    """A copy of ``seq`` with every token after position ``t`` replaced (never by pad)."""
    g = torch.Generator().manual_seed(seed + t)
    new = seq.clone()
    new[:, t + 1 :] = (seq[:, t + 1 :] + torch.randint(1, V - 3, seq[:, t + 1 :].shape, generator=g) - 3) % (V - 3) + 3
    assert bool((new[:, t + 1 :] != seq[:, t + 1 :]).any()) or t + 1 >= seq.shape[1]
    return new


def differs(a, b, tol=1e-7):
    return (a - b).abs().max().item() > tol


@pytest.mark.parametrize("name", CFG_IDS)
def test_decoder_only_is_causal(name):
    model = build(DecoderOnly, **CONFIGS[name])
    base = model(SEQ)
    for t in range(T - 1):
        out = model(changed_after(SEQ, t))
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-10, rtol=0)
        assert differs(out[:, t + 1 :], base[:, t + 1 :]), "later positions must see the change"


@pytest.mark.parametrize("name", CFG_IDS)
def test_prefix_lm_bidirectional_inside_prefix_causal_after(name):
    model = build(DecoderOnly, **CONFIGS[name])
    P = 4
    base = model(SEQ, prefix_len=P)
    # (a) changing the last prefix token changes outputs at every earlier position
    inside = SEQ.clone()
    inside[:, P - 1] = 13
    out = model(inside, prefix_len=P)
    for pos in range(P - 1):
        assert differs(out[:, pos], base[:, pos]), pos
    # ... which the causal model would not do
    torch.testing.assert_close(model(inside)[:, : P - 1], model(SEQ)[:, : P - 1], atol=1e-10, rtol=0)
    # (b) after the prefix it is causal
    for t in range(P - 1, T - 1):
        out = model(changed_after(SEQ, t), prefix_len=P)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-10, rtol=0)
    # (c) per-example prefix lengths equal running each example with its own int prefix
    lengths = torch.tensor([2, 5])
    batched = model(SEQ, prefix_len=lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(batched[b : b + 1], model(SEQ[b : b + 1], prefix_len=n), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", CFG_IDS)
def test_encoder_only_is_bidirectional(name):
    model = build(EncoderOnly, **CONFIGS[name])
    base = model(SEQ)
    new = SEQ.clone()
    new[:, -1] = 13
    out = model(new)
    assert differs(out[:, 0], base[:, 0])
    # and a change in the first token reaches the last position
    new = SEQ.clone()
    new[:, 0] = 13
    assert differs(model(new)[:, -1], base[:, -1])


@pytest.mark.parametrize("name", CFG_IDS)
def test_encoder_decoder_target_side_causal_source_side_full(name):
    model = build(EncoderDecoder, **CONFIGS[name])
    src = SEQ[:, :5]
    tgt = torch.cat([torch.ones(2, 1, dtype=torch.long), SEQ[:, 2:]], 1)
    base = model(src, tgt)
    for t in range(tgt.shape[1] - 1):
        out = model(src, changed_after(tgt, t))
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-10, rtol=0)
        assert differs(out[:, t + 1 :], base[:, t + 1 :])
    # the last source token reaches the first decoder position (cross-attention)
    new_src = src.clone()
    new_src[:, -1] = 13
    assert differs(model(new_src, tgt)[:, 0], base[:, 0])


@pytest.mark.parametrize("name", CFG_IDS)
def test_padding_invariance_encoder_and_encoder_decoder(name):
    enc = build(EncoderOnly, **CONFIGS[name])
    ed = build(EncoderDecoder, **CONFIGS[name])
    src = tok([5, 6, 7, 8, 9], [11, 12, 13, 0, 0])
    tgt = tok([1, 4, 5, 6], [1, 7, 8, 9])
    for n_pad in (1, 4):
        padded = torch.cat([src, torch.zeros(2, n_pad, dtype=torch.long)], 1)
        real = padded != 0
        torch.testing.assert_close(enc.encode(padded)[:, :5][src != 0], enc.encode(src)[src != 0], atol=1e-10, rtol=0)
        torch.testing.assert_close(enc(padded)[real], enc(torch.cat([src, torch.zeros_like(padded[:, 5:])], 1))[real], atol=1e-10, rtol=0)
        mem_p, _ = ed.encode(padded)
        mem, _ = ed.encode(src)
        torch.testing.assert_close(mem_p[:, :5][src != 0], mem[src != 0], atol=1e-10, rtol=0)
        torch.testing.assert_close(ed(padded, tgt), ed(src, tgt), atol=1e-10, rtol=0)
    # batch composition: the padded 2nd example gives the same as the unpadded one alone
    alone = tok([11, 12, 13])
    torch.testing.assert_close(ed(src, tgt)[1:], ed(alone, tgt[1:]), atol=1e-10, rtol=0)
    torch.testing.assert_close(enc.encode(src)[1, :3], enc.encode(alone)[0], atol=1e-10, rtol=0)


def test_sentence_embedding_is_normalised_mean_over_real_tokens():
    model = build(EncoderOnly, **CONFIGS["pre-layer-gelu-sinusoidal"])
    src = tok([5, 6, 7, 8, 9], [11, 12, 13, 0, 0])
    emb = model.sentence_embedding(src)
    h = model.encode(src)
    for b, n in enumerate((5, 3)):
        mean = h[b, :n].mean(0)
        torch.testing.assert_close(emb[b], mean / mean.norm(), atol=1e-10, rtol=0)
    torch.testing.assert_close(emb[1], model.sentence_embedding(tok([11, 12, 13]))[0], atol=1e-10, rtol=0)


def test_scaled_embeddings_multiply_by_sqrt_d():
    model = build(DecoderOnly, scale_embeddings=True, pos="learned")
    tokens = tok([3, 4, 5])
    expected = model.embed.tok(tokens) * 4.0 + model.embed.pos.weight[:3]  # sqrt(16) = 4
    torch.testing.assert_close(model.embed(tokens), expected, atol=1e-12, rtol=0)


def test_padding_check_can_fail_without_mask():
    """If pads were not masked the test above would notice: pads do change an unmasked encoder."""
    model = build(EncoderOnly, **CONFIGS["post-layer-gelu-learned"])
    src = tok([5, 6, 7])
    padded = tok([5, 6, 7, 0])
    x, xp = model.embed(src), model.embed(padded)
    for b in model.blocks:
        x, xp = b(x, None), b(xp, None)
    assert differs(xp[:, :3], x)


@pytest.mark.parametrize("name", CFG_IDS)
def test_decoder_only_right_padding_invariance(name):
    model = build(DecoderOnly, **CONFIGS[name])
    seq = tok([3, 7, 4, 9, 12])
    padded = tok([3, 7, 4, 9, 12, 0, 0, 0])
    torch.testing.assert_close(model(padded)[:, :5], model(seq), atol=1e-10, rtol=0)
    torch.testing.assert_close(model(padded, prefix_len=3)[:, :5], model(seq, prefix_len=3), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", CFG_IDS)
def test_decoder_only_cached_forward_equals_full(name):
    model = build(DecoderOnly, **CONFIGS[name])
    for prefix in (None, 3):
        full = model(SEQ, prefix_len=prefix)
        cache = model.new_cache()
        parts = [model(SEQ[:, :3], prefix_len=prefix, cache=cache)]
        for t in range(3, T):
            parts.append(model(SEQ[:, t : t + 1], prefix_len=prefix, cache=cache))
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-10, rtol=0)
    # per-example prefix lengths (a tensor) through the cache: prefill the longest prefix, then step
    lengths = torch.tensor([1, 4])
    full = model(SEQ, prefix_len=lengths)
    cache = model.new_cache()
    parts = [model(SEQ[:, :4], prefix_len=lengths, cache=cache)]
    parts += [model(SEQ[:, t : t + 1], prefix_len=lengths, cache=cache) for t in range(4, T)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", CFG_IDS)
def test_decoder_only_last_only_is_the_last_row_of_the_logits(name):
    """``last_only=True`` (what generation's prefill asks for) runs the output layer on the last position alone."""
    model = build(DecoderOnly, **CONFIGS[name])
    for prefix in (None, 3):
        last = model(SEQ, prefix_len=prefix, last_only=True)
        assert last.shape == (SEQ.shape[0], 1, V)
        torch.testing.assert_close(last, model(SEQ, prefix_len=prefix)[:, -1:], atol=1e-12, rtol=0)
    cache = model.new_cache()  # through a cache as well: the cache still receives every position
    torch.testing.assert_close(model(SEQ[:, :5], cache=cache, last_only=True), model(SEQ[:, :5])[:, -1:], atol=1e-12, rtol=0)
    assert len(cache) == 5


def test_encoder_decoder_cached_decode_equals_full():
    model = build(EncoderDecoder, **CONFIGS["pre-rms-swiglu-rope-qk"])
    src = tok([5, 6, 7, 8, 9], [11, 12, 13, 0, 0])
    tgt = tok([1, 4, 5, 6, 7, 8], [1, 7, 8, 9, 10, 3])
    memory, src_mask = model.encode(src)
    full = model.decode(tgt, memory, src_mask)
    cache = model.new_cache()
    parts = [model.decode(tgt[:, :2], memory, src_mask, cache=cache)]
    parts += [model.decode(tgt[:, t : t + 1], memory, src_mask, cache=cache) for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-10, rtol=0)
    assert all(len(layer["cross"]) == 5 and len(layer["self"]) == 6 for layer in cache)


# ================================================================= layers
def test_swiglu_equals_formula_with_and_without_autograd():
    """SwiGLU(x) = W_down (SiLU(W_gate x) ⊙ W_up x); without autograd it multiplies in place, which must change
    nothing, and with autograd its gradients must be those of the formula."""
    torch.manual_seed(0)
    ffn = SwiGLU(6, 10).to(DT)
    x = torch.randn(2, 3, 6, dtype=DT, requires_grad=True)
    formula = lambda x: ffn.w_down(torch.nn.functional.silu(ffn.w_gate(x)) * ffn.w_up(x))
    expected = formula(x)
    out = ffn(x)
    torch.testing.assert_close(out, expected, atol=1e-14, rtol=0)
    (g_ours,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-14, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), expected.detach(), atol=1e-14, rtol=0)
    with torch.inference_mode():
        torch.testing.assert_close(ffn(x), expected.detach(), atol=1e-14, rtol=0)


def test_rmsnorm_equals_hand_formula_and_torch():
    torch.manual_seed(0)
    d, eps = 6, 1e-6
    norm = RMSNorm(d, eps=eps).to(DT)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d))
    x = torch.randn(3, 4, d, dtype=DT) * 3
    expected = torch.empty_like(x)
    for i in range(3):
        for j in range(4):
            rms = math.sqrt(sum(float(v) ** 2 for v in x[i, j]) / d + eps)
            expected[i, j] = norm.weight * x[i, j] / rms
    torch.testing.assert_close(norm(x), expected, atol=1e-12, rtol=0)
    ref = nn.RMSNorm(d, eps=eps).to(DT)
    with torch.no_grad():
        ref.weight.copy_(norm.weight)
    torch.testing.assert_close(norm(x), ref(x), atol=1e-12, rtol=0)
    # scale invariance (no mean subtraction: shifting does change it)
    torch.testing.assert_close(norm(5 * x), norm(x), atol=1e-6, rtol=0)
    assert differs(norm(x + 1.0), norm(x))


@pytest.mark.parametrize("d", [8, 6])
def test_sinusoidal_table_equals_vaswani_loops(d):
    max_len = 20
    table = sinusoidal_table(max_len, d)
    expected = torch.zeros(max_len, d)
    for pos in range(max_len):
        for i in range(d // 2):
            angle = pos / (10000 ** (2 * i / d))
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(table, expected, atol=2e-5, rtol=0)


def test_sinusoidal_embeddings_add_the_table_with_offset():
    model = build(DecoderOnly, pos="sinusoidal")
    emb = model.embed
    tokens = tok([3, 4, 5])
    table = sinusoidal_table(32, 16).to(DT)
    torch.testing.assert_close(emb(tokens) - emb.tok(tokens), table[None, :3].expand(1, 3, 16), atol=1e-12, rtol=0)
    torch.testing.assert_close(emb(tokens, start=5) - emb.tok(tokens), table[None, 5:8], atol=1e-12, rtol=0)


def rope_reference(x, positions, base=10000.0):
    """Independent RoPE in complex numbers, 'rotate half' layout: pair (x_i, x_{i+d/2})."""
    d = x.shape[-1]
    half = d // 2
    z = torch.complex(x[..., :half], x[..., half:])
    inv = torch.tensor([base ** (-2 * i / d) for i in range(half)], dtype=DT)
    angle = positions.to(DT)[:, None] * inv[None, :]
    z = z * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], -1)


def test_rope_equals_complex_rotation_reference():
    rope = RotaryEmbedding(8, max_len=64)
    x = torch.randn(2, 3, 5, 8, dtype=DT)
    pos = torch.tensor([0, 1, 7, 30, 63])
    # the library's table is float32, so compare at float32 precision
    torch.testing.assert_close(rope(x, pos), rope_reference(x, pos), atol=1e-5, rtol=0)
    torch.testing.assert_close(rope(x, torch.zeros(5, dtype=torch.long)), x, atol=0, rtol=0)
    torch.testing.assert_close(rope(x, pos).norm(dim=-1), x.norm(dim=-1), atol=1e-6, rtol=0)


def test_rope_dot_product_depends_only_on_relative_position():
    rope = RotaryEmbedding(8, max_len=128)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g, dtype=DT), torch.randn(1, 1, 1, 8, generator=g, dtype=DT)

    def dot(m, n):
        return float((rope(q, torch.tensor([m])) * rope(k, torch.tensor([n]))).sum())

    for m, n in [(0, 0), (3, 1), (1, 3), (10, 2), (5, 5)]:
        for shift in (1, 7, 40):
            assert dot(m + shift, n + shift) == pytest.approx(dot(m, n), abs=1e-5)
    # but it does depend on the distance
    assert abs(dot(3, 0) - dot(0, 0)) > 1e-3


def test_rope_rejects_odd_head_dim_and_too_far_position():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(5)
    rope = RotaryEmbedding(4, max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        rope(torch.zeros(1, 1, 1, 4), torch.tensor([8]))


# ================================================================= parameter counts
def per_block(cfg: ModelConfig, cross: bool) -> int:
    d, f = cfg.d_model, cfg.d_ff
    attn = 4 * d * d + (4 * d if cfg.bias else 0) + (2 * cfg.d_head if cfg.qk_norm else 0)
    if cfg.ffn == "swiglu":
        ffn = 3 * d * f + ((2 * f + d) if cfg.bias else 0)
    else:
        ffn = 2 * d * f + ((f + d) if cfg.bias else 0)
    norm = 2 * d if cfg.norm == "layer" else d
    n = attn + ffn + 2 * norm
    if cross:
        n += attn + norm
    return n


def final_norm(cfg):
    return 0 if not cfg.final_norm else (2 * cfg.d_model if cfg.norm == "layer" else cfg.d_model)


PARAM_CFGS = [
    dict(ffn="gelu", bias=True, norm="layer"),
    dict(ffn="gelu", bias=False, norm="rms"),
    dict(ffn="swiglu", bias=False, norm="rms", pos="rope"),
    dict(ffn="swiglu", bias=True, norm="layer", qk_norm=True, d_ff=40),
    dict(ffn="relu", bias=True, norm="rms", final_norm=False, pos="sinusoidal", tie_embeddings=False),
]


@pytest.mark.parametrize("kw", PARAM_CFGS)
def test_num_parameters_matches_formula(kw):
    cfg = ModelConfig(vocab_size=50, d_model=16, n_heads=4, n_layers=3, n_enc_layers=2, n_dec_layers=3, max_len=20, **kw)
    dec, enc, ed = DecoderOnly(cfg), EncoderOnly(cfg), EncoderDecoder(cfg)
    assert dec.num_parameters() == 3 * per_block(cfg, False) + final_norm(cfg)
    assert enc.num_parameters() == 3 * per_block(cfg, False) + final_norm(cfg)
    assert ed.num_parameters() == 2 * per_block(cfg, False) + 3 * per_block(cfg, True) + 2 * final_norm(cfg)
    # with embeddings: token table (+ untied head) (+ learned positions, one table per Embeddings)
    emb = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    pos = cfg.max_len * cfg.d_model if cfg.pos == "learned" else 0
    assert dec.num_parameters(non_embedding=False) == dec.num_parameters() + emb + pos
    assert ed.num_parameters(non_embedding=False) == ed.num_parameters() + emb + 2 * pos
    # and everything is counted once: equals the sum over unique tensors
    assert dec.num_parameters(non_embedding=False) == sum(p.numel() for p in dec.parameters())


def test_num_parameters_brief_leading_terms():
    """The brief's formulas exactly, for bias-free RMSNorm models (norm weights are the only extra)."""
    d, f, L = 32, 128, 2
    gelu = ModelConfig(vocab_size=40, d_model=d, n_heads=4, n_layers=L, d_ff=f, bias=False, norm="rms", ffn="gelu")
    assert DecoderOnly(gelu).num_parameters() == L * (4 * d * d + 2 * d * f + 2 * d) + d
    swi = ModelConfig(vocab_size=40, d_model=d, n_heads=4, n_layers=L, d_ff=f, bias=False, norm="rms", ffn="swiglu")
    assert DecoderOnly(swi).num_parameters() == L * (4 * d * d + 3 * d * f + 2 * d) + d
    # a decoder layer with cross-attention adds 4d^2 (+ one norm)
    ed = EncoderDecoder(swi)
    assert ed.num_parameters() - 2 * DecoderOnly(swi).num_parameters() == L * (4 * d * d + d)


# ================================================================= errors
def test_config_d_model_not_divisible():
    with pytest.raises(ValueError) as e:
        ModelConfig(vocab_size=10, d_model=30, n_heads=4)
    assert "30" in str(e.value) and "4" in str(e.value)


@pytest.mark.parametrize("field,value", [("norm", "batch"), ("ffn", "tanh"), ("pos", "alibi")])
def test_config_unknown_choice(field, value):
    with pytest.raises(ValueError) as e:
        ModelConfig(vocab_size=10, **{field: value})
    assert field in str(e.value) and value in str(e.value)


def test_config_defaults(tiny_cfg):
    cfg = tiny_cfg(n_layers=3)
    assert cfg.d_ff == 32 and cfg.n_enc_layers == 3 and cfg.n_dec_layers == 3 and cfg.d_head == 4


@pytest.mark.parametrize("cls", [DecoderOnly, EncoderOnly])
def test_token_id_out_of_range(cls, tiny_cfg):
    model = cls(tiny_cfg())
    with pytest.raises(ValueError, match="vocab_size=10"):
        model(tok([1, 2, 10]))
    with pytest.raises(ValueError, match="vocab_size"):
        model(tok([1, -1, 3]))


def test_token_id_out_of_range_in_a_cached_decoding_step(tiny_cfg):
    """A single new token is looked up without a min/max check first: it must still fail clearly,
    leave no half-written cache behind, and a valid step afterwards must still work."""
    model = DecoderOnly(tiny_cfg()).eval()
    cache = model.new_cache()
    model(tok([1, 2, 3]), cache=cache)
    for bad in (10, -1):
        with pytest.raises(ValueError, match=r"\[0, vocab_size=10\)") as e:
            model(tok([bad]), cache=cache)
        assert e.value.__cause__ is None and e.value.__suppress_context__  # one message, not two tracebacks
        assert len(cache[0]["self"]) == 3
    full = model(tok([1, 2, 3, 4]))[:, -1]
    torch.testing.assert_close(model(tok([4]), cache=cache)[:, -1], full)


def test_token_id_out_of_range_encoder_decoder(tiny_cfg):
    model = EncoderDecoder(tiny_cfg())
    with pytest.raises(ValueError, match="vocab_size"):
        model(tok([1, 2, 3]), tok([1, 12]))


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_too_long_sequence_names_max_len(pos, tiny_cfg):
    model = DecoderOnly(tiny_cfg(max_len=6, pos=pos))
    model(tok([1] * 6))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=6"):
        model(tok([1] * 7))
    cache = model.new_cache()
    model(tok([1] * 6), cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        model(tok([1]), cache=cache)  # position 6 via the cache


def test_float_token_ids_rejected(tiny_cfg):
    model = DecoderOnly(tiny_cfg())
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 3))


def test_rope_table_is_as_long_as_max_len(tiny_cfg):
    """RoPE honours max_len like the position tables: exactly max_len positions, and a clear error past it."""
    model = DecoderOnly(tiny_cfg(pos="rope", max_len=6))
    assert model.rope.cos.shape[0] == 6
    model(tok([1] * 6))
    with pytest.raises(ValueError, match="raise max_len"):
        model(tok([1] * 7))


def test_one_norm_eps_default(tiny_cfg):
    """The config, RMSNorm and attention's QK-/V-norm share one default epsilon."""
    from course_lib.attention import MultiHeadAttention
    from course_lib.config import NORM_EPS
    from course_lib.layers import RMSNorm

    mha = MultiHeadAttention(8, 2, qk_norm=True, v_norm=True)
    assert tiny_cfg().norm_eps == RMSNorm(8).eps == mha.q_norm.eps == mha.k_norm.eps == mha.v_norm_eps == NORM_EPS
