"""The fast path of cached decoding (course_lib.fast_decode) against the general forward pass.

The flat step must compute exactly what ``DecoderOnly.forward`` computes for one new token with a
cache (bit for bit: same operations in the same order), for every config it claims to support, and
must step aside for everything it does not (hooks, recording, other architectures)."""
from __future__ import annotations

import pytest
import torch

from course_lib import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig, beam_search, generate, recording_attention
from course_lib.fast_decode import FlatDecoder

BASE = dict(vocab_size=61, d_model=32, n_heads=4, n_layers=2, max_len=64)
SUPPORTED = {
    "gpt (learned positions, LayerNorm, GELU)": {},
    "llama (RoPE, RMSNorm, SwiGLU, GQA, no bias)": dict(pos="rope", norm="rms", ffn="swiglu", bias=False, n_kv_heads=2),
    "multi-query attention": dict(n_kv_heads=1),
    "sinusoidal positions, scaled embeddings, ReLU": dict(pos="sinusoidal", scale_embeddings=True, ffn="relu"),
    "no positions, unscaled attention, untied head": dict(pos="none", attn_scale=1.0, tie_embeddings=False),
    "GeGLU with tanh GELU, embedding norm, BART offset": dict(ffn="geglu", gelu_approx="tanh", embed_norm=True, pos_offset=2),
    "no final norm, output scale, RoPE with llama3 scaling": dict(
        final_norm=False, output_scale=0.5, pos="rope",
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16}),
}
UNSUPPORTED = {
    "post-norm": dict(norm_first=False),
    "T5 relative bias": dict(pos="relative"),
    "QK-norm": dict(qk_norm=True),
    "V-norm": dict(v_norm=True),
    "attention output norm": dict(attn_out_norm=True),
}


def _model(**kw) -> DecoderOnly:
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(**{**BASE, **kw})).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a skipped or swapped one would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("kw", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_flat_step_equals_the_forward_pass_bit_for_bit(kw):
    model = _model(**kw)
    assert FlatDecoder.supports(model)
    flat = FlatDecoder(model)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, BASE["vocab_size"], (3, 5), generator=g)
    cache_flat, cache_ref = model.new_cache(), model.new_cache()
    with torch.no_grad():
        model(prompt, cache=cache_flat)
        model(prompt, cache=cache_ref)
        for _ in range(20):  # past the cache's first buffer doubling (16 slots)
            token = torch.randint(3, BASE["vocab_size"], (3, 1), generator=g)
            fast, ref = flat.step(token, cache_flat), model(token, cache=cache_ref)[:, -1]
            assert fast.shape == (3, BASE["vocab_size"])
            assert torch.equal(fast, ref)
    for a, b in zip(cache_flat, cache_ref):
        assert torch.equal(a["self"].k, b["self"].k) and torch.equal(a["self"].v, b["self"].v)


@pytest.mark.parametrize("kw", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_generate_gives_the_same_tokens_with_and_without_the_fast_path(kw):
    model = _model(**kw)
    prompt = torch.randint(3, BASE["vocab_size"], (2, 4), generator=torch.Generator().manual_seed(2))
    fast = generate(model, prompt, 24, eos_id=None)
    assert torch.equal(fast, generate(model, prompt, 24, eos_id=None, fast_path=False))
    assert torch.equal(fast, generate(model, prompt, 24, eos_id=None, use_cache=False))
    sample = lambda fp: generate(model, prompt, 24, temperature=0.8, top_k=20, top_p=0.9, eos_id=None,
                                 generator=torch.Generator().manual_seed(3), fast_path=fp)
    assert torch.equal(sample(True), sample(False))
    beams = lambda fp: beam_search(model, prompt, 12, beam_size=3, fast_path=fp)
    assert torch.equal(beams(True), beams(False))
    prefix = lambda **kw: generate(model, prompt, 12, eos_id=None, prefix_lm=True, **kw)  # a step sees every key either way
    assert torch.equal(prefix(), prefix(fast_path=False)) and torch.equal(prefix(), prefix(use_cache=False))


def _forward_calls(monkeypatch, model, **kw) -> int:
    calls = []
    original = DecoderOnly.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(DecoderOnly, "forward", counting)
        generate(model, torch.full((1, 3), 5), 10, eos_id=None, **kw)
    return len(calls)


def test_the_fast_path_is_taken_for_a_plain_decoder(monkeypatch):
    """Without this, the equality tests above could pass with the fast path never running."""
    model = _model()
    assert _forward_calls(monkeypatch, model) == 1  # the prefill only; the 9 steps are flat
    assert _forward_calls(monkeypatch, model, fast_path=False) == 10


@pytest.mark.parametrize("kw", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_other_architectures_take_the_general_path(monkeypatch, kw):
    model = _model(**kw)
    assert not FlatDecoder.supports(model)
    with pytest.raises(ValueError, match="forward pass"):
        FlatDecoder(model)
    assert _forward_calls(monkeypatch, model) == 10
    prompt = torch.randint(3, BASE["vocab_size"], (2, 4), generator=torch.Generator().manual_seed(4))
    assert torch.equal(generate(model, prompt, 12, eos_id=None), generate(model, prompt, 12, eos_id=None, use_cache=False))


def test_training_mode_subclasses_and_other_families_are_not_supported():
    model = _model()
    assert not FlatDecoder.supports(model.train())

    class Custom(DecoderOnly):
        pass

    class CustomSeq2Seq(EncoderDecoder):
        pass

    assert not FlatDecoder.supports(Custom(ModelConfig(**BASE)).eval())
    assert not FlatDecoder.supports(CustomSeq2Seq(ModelConfig(**BASE)).eval())
    assert not FlatDecoder.supports(EncoderDecoder(ModelConfig(**BASE)).train())
    assert not FlatDecoder.supports(EncoderOnly(ModelConfig(**BASE)).eval())


@pytest.mark.parametrize("where", ["model", "block", "attention"])
def test_hooks_on_skipped_modules_see_every_step(where):
    """A hook on a module the flat step would not call (the model, a block, an attention layer)
    must still fire once per step: such a model decodes through its forward pass."""
    model = _model()
    target = {"model": model, "block": model.blocks[1], "attention": model.blocks[0].self_attn}[where]
    seen = []
    handle = target.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    assert not FlatDecoder.supports(model)
    generate(model, torch.full((1, 4), 5), 6, eos_id=None)
    handle.remove()
    assert seen == [4, 1, 1, 1, 1, 1]  # the prefill, then one position per step
    assert FlatDecoder.supports(model)


def test_hooks_on_modules_it_calls_still_fire():
    model = _model()
    seen = []
    handle = model.blocks[0].norm1.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    assert FlatDecoder.supports(model)
    generate(model, torch.full((1, 4), 5), 6, eos_id=None)
    handle.remove()
    assert seen == [4, 1, 1, 1, 1, 1]


def test_recording_attention_during_generation_keeps_the_last_steps_weights():
    model = _model()
    with recording_attention(model) as maps:
        assert not FlatDecoder.supports(model)
        generate(model, torch.full((1, 4), 5), 6, eos_id=None)
    assert set(maps) == {"blocks.0.self_attn", "blocks.1.self_attn"}
    assert maps["blocks.0.self_attn"].shape == (1, 4, 1, 9)  # the last step: one query over 4 + 5 keys
    assert FlatDecoder.supports(model)


def test_an_option_the_flat_step_does_not_know_takes_the_general_path():
    """The supported options are an allow-list: a config field it has not been checked against (here
    a made-up new option) sends the model to the general path instead of being silently ignored."""
    model = _model()
    assert FlatDecoder.supports(model)
    model.cfg.alibi_slopes = True  # a hypothetical new ModelConfig option
    assert not FlatDecoder.supports(model)
    del model.cfg.alibi_slopes
    assert FlatDecoder.supports(model)


def test_max_logit_recording_takes_the_general_path():
    from course_lib.attention import recording_max_logit

    model = _model()
    with recording_max_logit() as log:
        assert not FlatDecoder.supports(model)
        generate(model, torch.full((1, 4), 5), 3, eos_id=None)
    assert len(log) == 3 * BASE["n_layers"]  # the prefill and two steps, every layer: none skipped by the flat step
    assert FlatDecoder.supports(model)


# ---------------------------------------------------------------- the encoder-decoder's decoder steps

ED_SUPPORTED = {k: SUPPORTED[k] for k in ("gpt (learned positions, LayerNorm, GELU)", "llama (RoPE, RMSNorm, SwiGLU, GQA, no bias)",
                                          "multi-query attention", "no positions, unscaled attention, untied head")}
ED_UNSUPPORTED = {**UNSUPPORTED, "RoPE in cross-attention": dict(pos="rope", rope_cross=True)}
SRC = torch.tensor([[5, 6, 7, 8, 9, 10], [3, 4, 5, 0, 0, 0], [9, 8, 0, 0, 0, 0]])  # rows 2 and 3 padded


def _encdec(**kw) -> EncoderDecoder:
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(**{**BASE, **kw})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded source", "padded source"])
@pytest.mark.parametrize("kw", ED_SUPPORTED.values(), ids=ED_SUPPORTED.keys())
def test_encoder_decoder_flat_step_equals_decode_bit_for_bit(kw, padded):
    model = _encdec(**kw)
    assert FlatDecoder.supports(model)
    flat = FlatDecoder(model)
    src = SRC if padded else SRC[:, :2]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        memory, mask = model.encode_for_decoding(src)
        assert (mask is None) == (not padded)
        cache_flat, cache_ref = model.new_cache(), model.new_cache()
        bos = torch.ones(3, 1, dtype=torch.long)
        model.decode(bos, memory, mask, cache=cache_flat)  # the first call fills the cross-attention K/V
        model.decode(bos, memory, mask, cache=cache_ref)
        for _ in range(18):
            token = torch.randint(3, BASE["vocab_size"], (3, 1), generator=g)
            fast, ref = flat.step(token, cache_flat, mask), model.decode(token, memory, mask, cache=cache_ref)[:, -1]
            assert torch.equal(fast, ref)
    for a, b in zip(cache_flat, cache_ref):
        assert torch.equal(a["self"].k, b["self"].k) and a["cross"].k is not None and torch.equal(a["cross"].k, b["cross"].k)


@pytest.mark.parametrize("kw", ED_SUPPORTED.values(), ids=ED_SUPPORTED.keys())
def test_encoder_decoder_generate_and_beam_search_give_the_same_tokens_on_both_paths(kw):
    model = _encdec(**kw)
    fast = generate(model, SRC, 16, eos_id=None)
    assert torch.equal(fast, generate(model, SRC, 16, eos_id=None, fast_path=False))
    assert torch.equal(fast, generate(model, SRC, 16, eos_id=None, use_cache=False))
    beams = lambda fp: beam_search(model, SRC, 10, beam_size=3, fast_path=fp)
    assert torch.equal(beams(True), beams(False))


def _decode_calls(monkeypatch, model, **kw) -> int:
    calls = []
    original = EncoderDecoder.decode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(EncoderDecoder, "decode", counting)
        generate(model, SRC, 10, eos_id=None, **kw)
    return len(calls)


def test_the_fast_path_is_taken_for_a_plain_encoder_decoder(monkeypatch):
    model = _encdec()
    assert _decode_calls(monkeypatch, model) == 1  # BOS (it fills the cross-attention cache); the 9 steps are flat
    assert _decode_calls(monkeypatch, model, fast_path=False) == 10


@pytest.mark.parametrize("kw", ED_UNSUPPORTED.values(), ids=ED_UNSUPPORTED.keys())
def test_other_encoder_decoders_take_the_general_path(monkeypatch, kw):
    model = _encdec(**kw)
    assert not FlatDecoder.supports(model)
    assert _decode_calls(monkeypatch, model) == 10
    assert torch.equal(generate(model, SRC, 12, eos_id=None), generate(model, SRC, 12, eos_id=None, use_cache=False))


@pytest.mark.parametrize("where", ["cross_attn", "decoder block"])
def test_hooks_and_recording_on_the_encoder_decoder_take_the_general_path(where):
    model = _encdec()
    target = model.decoder[0].cross_attn if where == "cross_attn" else model.decoder[1]
    handle = target.register_forward_hook(lambda *a: None)
    assert not FlatDecoder.supports(model)
    handle.remove()
    with recording_attention(model) as maps:
        assert not FlatDecoder.supports(model)
        generate(model, SRC, 4, eos_id=None)
    assert maps["decoder.0.cross_attn"].shape == (3, BASE["n_heads"], 1, SRC.shape[1])  # the last step's weights were kept
    assert FlatDecoder.supports(model)
