"""The modern recipe as ModelConfig options (RoPE everywhere with continuing positions, QK-norm and
V-norm, the extra norm on the attention output, RMSNorm, SwiGLU, tied embeddings): each one is off
by default, reaches the module that uses it, and does what it claims."""
import math

import pytest
import torch

from course_lib import DecoderOnly, EncoderDecoder, ModelConfig
from course_lib.attention import MultiHeadAttention
from course_lib.costs import layer_params, matched_depth
from course_lib.layers import RMSNorm, RotaryEmbedding, SwiGLU

RECIPE = dict(pos="rope", rope_cross=True, norm="rms", ffn="swiglu", qk_norm=True, v_norm=True, attn_out_norm=True,
              tie_embeddings=True, bias=False)


def _cfg(**kw):
    return ModelConfig(vocab_size=30, d_model=32, n_heads=4, n_layers=2, **kw)


def test_options_are_off_by_default():
    cfg = _cfg()
    assert (cfg.v_norm, cfg.attn_out_norm, cfg.rope_cross, cfg.qk_norm) == (False, False, False, False)
    for m in DecoderOnly(cfg).modules():
        if isinstance(m, MultiHeadAttention):
            assert m.v_norm_eps is None and m.out_norm is None and m.q_norm is None


def test_rope_cross_needs_rope():
    with pytest.raises(ValueError, match="pos='rope'"):
        _cfg(rope_cross=True)


def test_every_option_reaches_its_module():
    cfg = _cfg(**RECIPE, norm_eps=1e-3)
    model = EncoderDecoder(cfg)
    attns = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attns) == 2 + 2 * 2  # encoder self, decoder self + cross
    for m in attns:
        assert isinstance(m.q_norm, RMSNorm) and m.q_norm.eps == 1e-3 and m.k_norm.eps == 1e-3  # norm_eps reaches QK-norm
        assert m.v_norm_eps == 1e-3
        assert isinstance(m.out_norm, RMSNorm) and m.out_norm.eps == 1e-3
    assert all(isinstance(b.ffn, SwiGLU) for b in model.decoder)
    assert all(b.rope_cross for b in model.decoder)
    assert isinstance(model.decoder[0].norm1, RMSNorm) and model.decoder[0].norm_first
    assert model.head.proj.weight is model.src_embed.tok.weight  # tied


def test_layer_params_counts_the_extra_norm():
    cfg = _cfg(**RECIPE)
    model = EncoderDecoder(cfg)
    assert sum(p.numel() for p in model.encoder[0].parameters()) == layer_params(cfg, "encoder")
    assert sum(p.numel() for p in model.decoder[0].parameters()) == layer_params(cfg, "cross-decoder")


def test_v_norm_is_parameter_free_rms_of_each_head():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, v_norm=True, bias=False)
    x = torch.randn(1, 5, 16)
    base = mha(x)
    with torch.no_grad():  # scaling W_V changes nothing: the values are normalised per head
        mha.in_proj.weight[32:] *= 7.0
    torch.testing.assert_close(mha(x), base)
    assert not any("v_norm" in n for n, _ in mha.named_parameters())


def test_attn_out_norm_normalises_before_w_o():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, bias=False, out_norm=RMSNorm(16, eps=1e-12))  # eps would blur the exact scale invariance
    x = torch.randn(1, 5, 16)
    base = mha(x)
    with torch.no_grad():  # scaling every value scales the merged heads; the norm undoes it
        mha.in_proj.weight[32:] *= 5.0
    torch.testing.assert_close(mha(x), base)
    plain = MultiHeadAttention(16, 2, bias=False)
    plain.load_state_dict({k: v for k, v in mha.state_dict().items() if not k.startswith("out_norm")})
    assert not torch.allclose(plain(x), base)


def test_rope_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, max_len=256)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        return (rope(q, torch.tensor([m])) * rope(k, torch.tensor([n]))).sum().item()

    for m, n in [(3, 1), (10, 0), (5, 9)]:
        for shift in (1, 17, 100):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert abs(score(3, 1) - score(4, 1)) > 1e-3  # but distance does matter
    assert rope(q, torch.tensor([5])).norm().item() == pytest.approx(q.norm().item(), rel=1e-5)  # a rotation


def test_rope_accepts_per_example_positions():
    rope = RotaryEmbedding(8, max_len=64)
    x = torch.randn(2, 3, 4, 8)
    pos = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    out = rope(x, pos)
    torch.testing.assert_close(out[0], rope(x[:1], pos[0])[0])
    torch.testing.assert_close(out[1], rope(x[1:], pos[1])[0])


def test_decoder_positions_continue_after_the_source():
    torch.manual_seed(0)
    cfg = _cfg(**RECIPE)
    model = EncoderDecoder(cfg).eval()
    seen = []
    orig = model.rope.forward
    model.rope.forward = lambda x, positions: (seen.append(positions.clone()), orig(x, positions))[1]
    src = torch.tensor([[7, 8, 9, 10, 11], [7, 8, 9, 0, 0]])  # second source has 3 real tokens
    model(src, torch.tensor([[1, 12, 13], [1, 14, 15]]))
    enc = seen[0]
    assert enc.tolist() == [0, 1, 2, 3, 4]
    dec = [p for p in seen if p.dim() == 2]
    assert dec and all(p.tolist() == [[5, 6, 7], [3, 4, 5]] for p in dec)  # queries: after each source
    cross_keys = [p for p in seen[1:] if p.dim() == 1]
    assert cross_keys and all(p.tolist() == [0, 1, 2, 3, 4] for p in cross_keys)  # keys: encoder positions


def test_cross_rope_depends_on_relative_offsets_only():
    """With RoPE in cross-attention and nothing else positional, shifting the source by padding on the right
    changes nothing; without rope_cross the decoder cannot tell where in the source a key is except through
    the encoder."""
    torch.manual_seed(0)
    cfg = _cfg(**RECIPE)
    model = EncoderDecoder(cfg).eval()
    src = torch.tensor([[7, 8, 9, 10]])
    tgt = torch.tensor([[1, 12, 13]])
    padded = torch.tensor([[7, 8, 9, 10, 0, 0]])
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["decoder", "encdec"])
def test_kv_cache_matches_full_pass_with_the_recipe(family):
    torch.manual_seed(0)
    cfg = _cfg(**RECIPE) if family == "encdec" else _cfg(**{k: v for k, v in RECIPE.items() if k != "rope_cross"})
    model = (EncoderDecoder if family == "encdec" else DecoderOnly)(cfg).eval()
    tokens = torch.randint(6, 30, (2, 6))
    src = torch.tensor([[7, 8, 9, 10], [11, 12, 0, 0]])
    with torch.no_grad():
        if family == "encdec":
            memory, mask = model.encode(src)
            full = model.decode(tokens, memory, mask)
            cache = model.new_cache()
            steps = [model.decode(tokens[:, t:t + 1], memory, mask, cache=cache) for t in range(tokens.shape[1])]
        else:
            full = model(tokens)
            cache = model.new_cache()
            steps = [model(tokens[:, t:t + 1], cache=cache) for t in range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_recipe_trains():
    torch.manual_seed(0)
    model = EncoderDecoder(_cfg(**RECIPE))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    src, tgt = torch.randint(6, 30, (16, 6)), torch.randint(6, 30, (16, 6))
    tgt_in = torch.cat([torch.ones(16, 1, dtype=torch.long), tgt[:, :-1]], 1)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5 and all(math.isfinite(v) for v in losses)


def test_swiglu_matching_rule_gives_equal_parameters():
    """0.44 rule: with SwiGLU and d_ff = 4d, L decoder-only layers ~ 0.44 L layers in each stack."""
    assert matched_depth(9, 64) == pytest.approx(4.0)
    L = 9
    dec = DecoderOnly(ModelConfig(vocab_size=30, d_model=64, n_heads=4, n_layers=L, ffn="swiglu", norm="rms", bias=False))
    ed = EncoderDecoder(ModelConfig(vocab_size=30, d_model=64, n_heads=4, n_layers=round(matched_depth(L, 64)), ffn="swiglu",
                                    norm="rms", bias=False))
    assert abs(dec.num_parameters() - ed.num_parameters()) / dec.num_parameters() < 0.01

