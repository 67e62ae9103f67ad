"""Causal attention through PyTorch's causal kernel (``is_causal=True``) wherever it is exact.

Every family's forward pass, with and without a KV cache, with padding and with a prefix, must give
what the explicit-mask path gives (the same library code with the causal mask built by
``masks.causal_mask`` and passed as a boolean mask): bit for bit where the kernel is the same, and
within float tolerance against the line-by-line formula. A future token must never change an
earlier output, and the fast kernel must really be the one called where it applies.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import course_lib.attention as attention
from course_lib import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig, beam_search, recording_attention
from course_lib.masks import causal_mask, combine_masks


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


BASE = dict(vocab_size=37, d_model=32, n_heads=4, n_layers=2, max_len=64, tie_embeddings=False)
CONFIGS = {
    "gpt (learned, LayerNorm, GELU)": {},
    "llama (RoPE, RMSNorm, SwiGLU, GQA)": dict(pos="rope", norm="rms", ffn="swiglu", bias=False, n_kv_heads=2),
    "post-norm, sinusoidal": dict(norm_first=False, pos="sinusoidal"),
    "T5 relative bias (explicit path)": dict(pos="relative", attn_scale=1.0),
    "QK-norm, V-norm, output norm": dict(qk_norm=True, v_norm=True, attn_out_norm=True),
}
PAD = 0


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    model = cls(ModelConfig(**{**BASE, **kw})).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # larger random weights: attention far from uniform, so a leaked key would show
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _tokens(B, T, seed=0):
    return torch.randint(3, BASE["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def _explicit_sdpa(q, k, v, mask=None, *, causal=False, **kw):
    """The explicit-mask path: the causal mask built by masks.causal_mask and ANDed into ``mask``."""
    if causal and q.shape[-2] > 1:
        mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
    return _real_sdpa(q, k, v, mask, **kw)


_real_sdpa = attention.scaled_dot_product_attention


def _run(model, fn, explicit: bool):
    """``fn(model)`` through the fast path, or with every causal attention given its explicit mask."""
    if not explicit:
        return fn(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention, "scaled_dot_product_attention", _explicit_sdpa)
        return fn(model)


def _decoder_only_cases():
    x = _tokens(3, 12)
    cases = {
        "no cache": lambda m: m(x),
        "prefix 5": lambda m: m(x, prefix_len=5),
        "prefix per row": lambda m: m(x, prefix_len=torch.tensor([2, 5, 9])),
        "right padding": lambda m: m(torch.cat([x[:, :8], torch.zeros(3, 4, dtype=torch.long)], 1)),
    }

    def cached(m, chunks, prefix=None):  # prefill, then chunks of new tokens: every chunk's logits
        cache, out, start = m.new_cache(), [], 0
        for n in chunks:
            out.append(m(x[:, start : start + n], cache=cache, prefix_len=prefix))
            start += n
        return torch.cat(out, 1)

    cases["cache: prefill 12"] = lambda m: cached(m, [12])
    cases["cache: 5, then chunks of 4 and 3 (offset mask)"] = lambda m: cached(m, [5, 4, 3])
    cases["cache: 6, then 6 single steps"] = lambda m: cached(m, [6] + [1] * 6)
    cases["cache with prefix 4: 6, then 3 and 3"] = lambda m: cached(m, [6, 3, 3], prefix=4)
    return cases


def _encoder_decoder_cases():
    src = _tokens(3, 9, seed=1)
    src_padded = src.clone()
    src_padded[1, 5:], src_padded[2, 2:] = PAD, PAD
    tgt = _tokens(3, 10, seed=2)
    cases = {"teacher forcing": lambda m: m(src, tgt), "teacher forcing, padded source": lambda m: m(src_padded, tgt)}

    def cached(m, chunks, s):
        memory, mask = m.encode(s)
        cache, out, start = m.new_cache(), [], 0
        for n in chunks:
            out.append(m.decode(tgt[:, start : start + n], memory, mask, cache=cache))
            start += n
        return torch.cat(out, 1)

    cases["cache: 10 at once"] = lambda m: cached(m, [10], src)
    cases["cache: 4, then 3 and 3 (offset mask), padded source"] = lambda m: cached(m, [4, 3, 3], src_padded)
    cases["cache: 1 then single steps"] = lambda m: cached(m, [1] * 10, src_padded)
    return cases


FAMILY_CASES = [("decoder-only", DecoderOnly, name, fn) for name, fn in _decoder_only_cases().items()]
FAMILY_CASES += [("encoder-decoder", EncoderDecoder, name, fn) for name, fn in _encoder_decoder_cases().items()]


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIGS.keys())
@pytest.mark.parametrize("family,cls,case,fn", FAMILY_CASES, ids=[f"{f}: {c}" for f, _, c, _ in FAMILY_CASES])
def test_fast_path_equals_the_explicit_mask_path(family, cls, case, fn, config):
    model = _model(cls, **CONFIGS[config])
    with torch.no_grad():
        fast, explicit = _run(model, fn, False), _run(model, fn, True)
        with recording_attention(model):  # the formula line by line, weights and all: an independent route
            formula = fn(model)
    # PyTorch's CPU kernel visits the same key blocks either way (the skipped ones only add exact zeros)
    assert torch.equal(fast, explicit), (fast - explicit).abs().max()
    torch.testing.assert_close(fast, formula, atol=2e-5, rtol=1e-5)


def test_encoder_only_is_unchanged_by_the_causal_option():
    """The encoder never asks for causal attention: its padding mask alone, as before."""
    model = _model(EncoderOnly)
    x = _tokens(2, 10)
    x[1, 6:] = PAD
    with torch.no_grad():
        assert torch.equal(_run(model, lambda m: m(x), False), _run(model, lambda m: m(x), True))


def test_training_step_with_dropout_matches_the_explicit_mask_path():
    """Teacher forcing in train mode (dropout in attention): same outputs and gradients, same RNG draws."""
    model = _model(EncoderDecoder, dropout=0.1).train()
    src, tgt = _tokens(2, 7, seed=3), _tokens(2, 8, seed=4)
    outs, grads = [], []
    for explicit in (False, True):
        model.zero_grad()
        torch.manual_seed(7)
        out = _run(model, lambda m: m(src, tgt), explicit)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_sdpa_causal_option_equals_an_explicit_causal_mask():
    """scaled_dot_product_attention(causal=True) for every shape it meets: T_q == T_k (the kernel),
    T_q < T_k (cached chunk: queries are the newest positions), T_q == 1, and with an extra mask."""
    g = torch.Generator().manual_seed(0)
    for t_q, t_k in ((7, 7), (3, 9), (1, 6)):
        q, k, v = (torch.randn(2, 4, t, 8, generator=g) for t in (t_q, t_k, t_k))
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t_q, t_k))
        torch.testing.assert_close(attention.scaled_dot_product_attention(q, k, v, causal=True), ref, atol=1e-6, rtol=0)
        out, w = attention.scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
        assert not bool(w.masked_select(~causal_mask(t_q, t_k)).any())  # weights exactly 0 on the future
        keys = torch.rand(2, 1, 1, t_k, generator=g) > 0.3
        keys[..., 0] = True  # every query keeps at least key 0
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keys & causal_mask(t_q, t_k))
        torch.testing.assert_close(attention.scaled_dot_product_attention(q, k, v, keys, causal=True), ref, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- a future token never changes the past


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(["decoder-only", "encoder-decoder"]), config=st.sampled_from(sorted(CONFIGS)),
       t=st.integers(2, 16), where=st.integers(0, 15), new=st.integers(3, BASE["vocab_size"] - 1), cached=st.booleans())
def test_a_future_token_never_changes_earlier_outputs(family, config, t, where, new, cached):
    where = where % t
    model = _MODELS[(family, config)]
    x = _tokens(2, t, seed=t)
    y = x.clone()
    y[:, where] = 3 + (x[:, where] - 3 + 1 + new % (BASE["vocab_size"] - 4)) % (BASE["vocab_size"] - 3)  # another token, every row
    src = _tokens(2, 6, seed=9)

    def logits(tokens):
        with torch.no_grad():
            if family == "decoder-only":
                if not cached:
                    return model(tokens)
                cache = model.new_cache()  # a prompt of half, then the rest as one cached chunk
                h = max(t // 2, 1)
                return torch.cat([model(tokens[:, :h], cache=cache), model(tokens[:, h:], cache=cache)], 1)
            return model(src, tokens)

    a, b = logits(x), logits(y)
    assert torch.equal(a[:, :where], b[:, :where])  # positions before the change: untouched, bit for bit
    assert not torch.equal(a[:, where:], b[:, where:])  # and the change does reach the later ones


_MODELS = {(f, c): _model(cls, **CONFIGS[c]) for f, cls in (("decoder-only", DecoderOnly), ("encoder-decoder", EncoderDecoder))
           for c in CONFIGS}


# ---------------------------------------------------------------- the fast kernel is really taken


class _SpySDPA:
    """Records how PyTorch's fused attention is called: (T_q, T_k, attn_mask, is_causal)."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        self.calls.append((q.shape[-2], k.shape[-2], attn_mask, is_causal))
        return _real_fused(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kw)


_real_fused = F.scaled_dot_product_attention


@pytest.fixture
def spy(monkeypatch):
    s = _SpySDPA()
    monkeypatch.setattr(F, "scaled_dot_product_attention", s)
    return s


def test_decoder_prefill_takes_the_causal_kernel(spy):
    model = _model(DecoderOnly)
    x = _tokens(2, 12)
    with torch.no_grad():
        model(x)
        model(x, cache=model.new_cache())  # a prefill into an empty cache is the same shape
    assert len(spy.calls) == 2 * len(model.blocks)
    assert all(c == (12, 12, None, True) for c in spy.calls), spy.calls


def test_cached_chunk_keeps_the_offset_mask_and_a_step_needs_none(spy):
    model = _model(DecoderOnly)
    x = _tokens(2, 12)
    cache = model.new_cache()
    with torch.no_grad():
        model(x[:, :6], cache=cache)
        spy.calls.clear()
        model(x[:, 6:9], cache=cache)  # 3 new queries over 9 keys: the kernel's top-left causal mask would be wrong
        chunk, spy.calls[:] = list(spy.calls), []
        model(x[:, 9:10], cache=cache)  # one new query sees every key
    for t_q, t_k, mask, is_causal in chunk:
        assert (t_q, t_k, is_causal) == (3, 9, False) and torch.equal(mask, causal_mask(3, 9))
    assert all(c == (1, 10, None, False) for c in spy.calls), spy.calls


def test_prefix_lm_and_bias_keep_their_masks(spy):
    with torch.no_grad():
        _model(DecoderOnly)(_tokens(2, 8), prefix_len=3)
        assert all(m is not None and not c for _, _, m, c in spy.calls)
        spy.calls.clear()
        _model(DecoderOnly, pos="relative")(_tokens(2, 8))  # T5's bias: a float mask with -inf on the future
        assert all(m is not None and m.dtype == torch.float32 and not c for _, _, m, c in spy.calls)


def test_encoder_decoder_teacher_forcing_takes_the_causal_kernel(spy):
    model = _model(EncoderDecoder).train()
    src, tgt = _tokens(2, 9, seed=1), _tokens(2, 7, seed=2)
    src[1, 5:] = PAD
    model(src, tgt)
    L = model.cfg.n_enc_layers
    enc, dec = spy.calls[:L], spy.calls[L:]
    assert all(m is not None and not c for _, _, m, c in enc)  # encoder: the source padding mask
    self_calls, cross_calls = dec[0::2], dec[1::2]
    assert all(c == (7, 7, None, True) for c in self_calls), self_calls
    assert all(tq == 7 and tk == 9 and m is not None and not c for tq, tk, m, c in cross_calls)


def test_recording_attention_takes_the_explicit_path_and_records_causal_weights(spy):
    model = _model(DecoderOnly)
    with torch.no_grad(), recording_attention(model) as maps:
        model(_tokens(2, 6))
    assert spy.calls == []  # the weights come from the formula, not the fused kernel
    for w in maps.values():
        assert w.shape == (2, 4, 6, 6)
        assert not bool(w.masked_select(~causal_mask(6)).any())
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))


# ---------------------------------------------------------------- beam search and the encoder memory


def test_beam_search_does_not_copy_the_encoder_memory_or_cross_kv(monkeypatch):
    """Beams of one input share their source: once the cross-attention cache holds the encoder's
    keys/values, neither the memory nor those keys/values are copied when the beams are reordered
    (on the fast path and on the general one)."""
    from course_lib.generation import DecodingSession

    model = _model(EncoderDecoder)
    src = _tokens(2, 7, seed=5)
    src[1, 4:] = PAD
    real_step = DecodingSession.step
    for fast_path in (True, False):
        seen = []

        def spy_step(self, token):
            out = real_step(self, token)
            seen.append((self.memory.data_ptr(), tuple(layer["cross"].k.data_ptr() for layer in self.cache)))
            return out

        with monkeypatch.context() as m:
            m.setattr(DecodingSession, "step", spy_step)
            got = beam_search(model, src, 8, beam_size=3, eos_id=None, fast_path=fast_path)
        assert len(seen) == 7 and len(set(seen)) == 1, seen  # every step read the same tensors
        assert torch.equal(got, beam_search(model, src, 8, beam_size=3, eos_id=None, use_cache=False))
