"""Tests for course_lib.costs: the formulas against hand numbers and against the real modules,
and the FLOP counter (including attention on CPU, which PyTorch's counter alone reports as 0)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from course_lib.blocks import CrossDecoderBlock, DecoderBlock, EncoderBlock
from course_lib.config import ModelConfig
from course_lib.costs import (
    attention_flops,
    attention_params,
    count_flops,
    decoder_only_sequence_flops,
    encoder_decoder_sequence_flops,
    ffn_params,
    forward_flops_per_token,
    kv_cache_bytes,
    layer_params,
    matched_depth,
    train_flops_per_token,
)
from course_lib.generation import generate
from course_lib.models import DecoderOnly, EncoderDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def weight_matrix_params(module: torch.nn.Module) -> int:
    """Parameters of the 2-D weights inside the blocks: what the FLOP counter sees as matmuls."""
    return sum(p.numel() for n, p in module.named_parameters() if p.dim() == 2 and "embed" not in n and "head" not in n)


# --------------------------------------------------------------------------- hand numbers


def test_parameter_formulas_hand_numbers():
    assert attention_params(64) == 4 * 64 * 64 == 16384
    assert attention_params(64, bias=True) == 16384 + 256
    assert ffn_params(64, 256) == 2 * 64 * 256 == 32768
    assert ffn_params(64, 256, swiglu=True) == 3 * 64 * 256 == 49152
    assert ffn_params(64, 256, bias=True) == 32768 + 256 + 64


def test_flop_and_memory_formulas_hand_numbers():
    # 2N + 2·L·n_ctx·d with N = 1000, L = 2, n_ctx = 10, d = 8
    assert forward_flops_per_token(1000, 2, 10, 8) == 2000 + 320
    assert train_flops_per_token(1000, 2, 10, 8) == 3 * 2320
    # 2 (K and V) · 4 layers · 2 kv-heads · 16 dims · 2 bytes = 512 bytes per token
    assert kv_cache_bytes(4, 2, 16, 1, 2) == 512
    assert kv_cache_bytes(4, 2, 16, 100, 2) == 51_200
    assert kv_cache_bytes(4, 2, 16, 100, 2, n_source_tokens=50) == 76_800
    assert attention_flops(2, 4, 16, 10, 8) == 4 * 2 * 4 * 16 * 10 * 8


def test_matched_depth_is_about_0_44():
    # SwiGLU with d_ff = 4d: decoder layer 16d², encoder 16d², cross-decoder 20d² -> 16/36
    assert matched_depth(9, 64) == pytest.approx(4.0)
    assert matched_depth(1, 512) == pytest.approx(16 / 36)
    assert 0.43 < matched_depth(1, 512) < 0.45
    # GELU, d_ff = 4d: 12d² vs 12d² + 16d² -> 12/28
    assert matched_depth(7, 64, swiglu=False) == pytest.approx(3.0)


# --------------------------------------------------------------------------- against the modules


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(ffn="relu", norm_first=False),
        dict(ffn="swiglu", norm="rms", bias=False, qk_norm=True),
        dict(ffn="gelu", bias=False, d_ff=96),
        dict(ffn="geglu", norm="rms", bias=False, gelu_approx="tanh"),  # T5 v1.1: three matrices, like SwiGLU
        dict(ffn="geglu", bias=True, attn_out_norm=True, n_kv_heads=2),
    ],
)
def test_layer_params_match_the_blocks(kw):
    cfg = ModelConfig(vocab_size=32, d_model=64, n_heads=4, **kw)
    for kind, block in (("encoder", EncoderBlock), ("decoder", DecoderBlock), ("cross-decoder", CrossDecoderBlock)):
        assert layer_params(cfg, kind) == sum(p.numel() for p in block(cfg).parameters()), kind


def test_matched_depth_matches_real_models():
    d, L = 64, 9
    cfg = dict(vocab_size=32, d_model=d, n_heads=4, ffn="swiglu", norm="rms", bias=False)
    dec = DecoderOnly(ModelConfig(n_layers=L, **cfg))
    depth = round(matched_depth(L, d))
    encdec = EncoderDecoder(ModelConfig(n_layers=depth, **cfg))
    assert depth == 4
    # equal up to the norms' scales, which the formula ignores
    assert encdec.num_parameters() == pytest.approx(dec.num_parameters(), rel=0.01)


def test_kv_cache_bytes_match_the_caches():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, d_model=32, n_heads=4, n_layers=3, max_len=64)
    model = DecoderOnly(cfg).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(3, 32, (1, 10)), cache=cache)
    held = sum(layer["self"].nbytes() for layer in cache)
    assert held == kv_cache_bytes(3, 4, 8, 10, 4)

    encdec = EncoderDecoder(ModelConfig(vocab_size=32, d_model=32, n_heads=4, n_layers=2, max_len=64)).eval()
    cache = encdec.new_cache()
    with torch.no_grad():
        memory, src_mask = encdec.encode(torch.randint(3, 32, (1, 12)))
        encdec.decode(torch.randint(3, 32, (1, 5)), memory, src_mask, cache=cache)
    held = sum(c.nbytes() for layer in cache for c in layer.values())
    assert held == kv_cache_bytes(2, 4, 8, 5, 4, n_source_tokens=12)


# --------------------------------------------------------------------------- counting FLOPs


def test_plain_flop_counter_misses_cpu_attention_and_ours_counts_it():
    B, H, Tq, Tk, dh = 2, 4, 16, 10, 8
    q, k, v = torch.randn(B, H, Tq, dh), torch.randn(B, H, Tk, dh), torch.randn(B, H, Tk, dh)
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, k, v)
    # PyTorch registers formulas for the CUDA kernels only; if a future release adds the CPU
    # one, this line is the one to update (count_flops keeps working either way).
    assert plain.get_total_flops() == 0
    counted = count_flops(F.scaled_dot_product_attention, q, k, v)
    assert counted > 0
    assert counted == attention_flops(B, H, Tq, Tk, dh) == 4 * B * H * Tq * Tk * dh
    # a boolean mask does not change the count (the kernel still computes every score)
    mask = torch.ones(Tq, Tk, dtype=torch.bool).tril()
    assert count_flops(F.scaled_dot_product_attention, q, k, v, attn_mask=mask) == counted


def test_count_flops_sees_attention_backward():
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    k, v = torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4)
    by_op = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward(), by_op=True)
    backward = [n for op, n in by_op.items() if "backward" in op]
    assert backward and backward[0] > 0


def test_decoder_only_forward_flops_match_kaplan_estimate():
    V, d, L, T = 64, 128, 2, 16
    model = DecoderOnly(ModelConfig(vocab_size=V, d_model=d, n_heads=4, n_layers=L, max_len=T, bias=False)).eval()
    N = model.num_parameters()  # non-embedding parameters (includes the norms' few scales and shifts)
    tokens = torch.randint(3, V, (1, T))
    counted = count_flops(model, tokens)
    estimate = forward_flops_per_token(N, L, T, d) * T
    # Systematic gaps, all small at this size (about +3% in total):
    #  * the counter includes the output layer, 2·d·V per token, which N leaves out;
    #  * the kernels compute the full T×T score matrix although half of it is masked:
    #    4·L·T·d per token counted, where Kaplan's 2·L·n_ctx·d already assumes the causal half;
    #  * norms, biases, softmax and activations are element-wise work the counter skips.
    assert counted == pytest.approx(estimate, rel=0.10)
    exact = 2 * weight_matrix_params(model) * T + 2 * d * V * T + L * attention_flops(1, 4, T, T, d // 4)
    assert counted == exact


def test_sequence_flops_match_cached_generation():
    V, d, L, H, G = 48, 32, 2, 4, 12
    torch.manual_seed(0)
    dec = DecoderOnly(ModelConfig(vocab_size=V, d_model=d, n_heads=H, n_layers=L, max_len=64, bias=False))
    counted = count_flops(generate, dec, torch.tensor([[5]]), G, eos_id=None)
    # a 1-token prompt then G-1 steps: G positions, each attending to 1, 2, ..., G keys
    formula = decoder_only_sequence_flops(weight_matrix_params(dec), L, d, 1, G - 1) + 2 * d * V * G
    assert counted == formula

    S = 7
    encdec = EncoderDecoder(ModelConfig(vocab_size=V, d_model=d, n_heads=H, n_layers=L, max_len=64, bias=False))
    n_enc = weight_matrix_params(encdec.encoder)
    n_dec = weight_matrix_params(encdec.decoder)
    counted = count_flops(generate, encdec, torch.randint(3, V, (1, S)), G, eos_id=None)
    formula = encoder_decoder_sequence_flops(n_enc, n_dec, L, L, d, S, G) + 2 * d * V * G
    assert counted == formula


def test_encoder_decoder_needs_about_half_the_flops_at_equal_parameters():
    # Claim 7 in miniature. GELU FFN with d_ff = 4d: decoder-only layer 12d², encoder layer 12d²,
    # cross-decoder layer 16d²; 7 decoder-only layers = 3 + 3 encoder-decoder layers = 84d².
    # P = G = 256: the notes' "1000-token prompt + 1000 generated" scaled down.
    d, P, G = 256, 256, 256
    assert matched_depth(7, d, swiglu=False) == pytest.approx(3.0)
    dec_only = decoder_only_sequence_flops(7 * 12 * d * d, 7, d, P, G)
    encdec = encoder_decoder_sequence_flops(3 * 12 * d * d, 3 * 16 * d * d, 3, 3, d, P, G)
    assert 0.4 < encdec / dec_only < 0.6


# --------------------------------------------------------------------------- prefill / decode / memory by family

from course_lib.costs import (  # noqa: E402
    cache_bytes,
    decode_step_flops,
    encdec_decode_step_flops,
    generation_flops,
    kv_cache_bytes_for,
    prefill_flops,
    stack_params,
    step_flops,
)


def test_decode_step_flops_hand_numbers():
    # N = 1000, L = 2, n_ctx = 10, d = 8, V = 50: 2000 + 4·2·10·8 + 2·8·50
    assert decode_step_flops(1000, 2, 10, 8, 50) == 2000 + 640 + 800
    # twice the training-averaged attention term of Kaplan's per-token estimate
    assert decode_step_flops(1000, 2, 10, 8) - 2000 == 2 * (forward_flops_per_token(1000, 2, 10, 8) - 2000)
    # enc-dec step: N_dec = 5000 of which 2·L·d² = 256 are cross K/V weights (not used per step)
    assert encdec_decode_step_flops(5000, 2, 3, 7, 8, 50) == 2 * (5000 - 256) + 4 * 2 * 8 * (3 + 7) + 800
    # prefill P = 4: causal sees 1+2+3+4 = 10 pairs, full 16
    assert prefill_flops(1000, 2, 8, 4, 50) == 2000 * 4 + 4 * 2 * 8 * 10 + 2 * 8 * 50 * 4
    assert prefill_flops(1000, 2, 8, 4, attention="full") == 2000 * 4 + 4 * 2 * 8 * 16


def test_kv_bytes_for_families_hand_numbers():
    cfg = ModelConfig(vocab_size=10, d_model=16, n_heads=4, n_layers=3, n_enc_layers=2, n_dec_layers=2)
    # decoder-only: 2 · 3 layers · 4 heads · 4 dims · 4 bytes = 384 bytes per token, P + G = 15 tokens
    assert kv_cache_bytes_for(cfg, "decoder-only", 10, 5) == {"self": 384 * 15, "cross": 0, "total": 384 * 15}
    # enc-dec: 2 decoder layers -> 256 bytes per token; self over G = 5, cross over P = 10
    assert kv_cache_bytes_for(cfg, "encoder-decoder", 10, 5, batch=2) == {"self": 2 * 256 * 5, "cross": 2 * 256 * 10, "total": 2 * 256 * 15}
    gqa = ModelConfig(vocab_size=10, d_model=16, n_heads=4, n_kv_heads=1, n_layers=3)
    assert kv_cache_bytes_for(gqa, "decoder-only", 10, 5, bytes_per_el=2)["total"] == 2 * 3 * 1 * 4 * 2 * 15
    assert kv_cache_bytes_for(cfg, "encoder-only", 10, 0)["total"] == 0


@pytest.mark.parametrize("kw", [{}, dict(ffn="swiglu", norm="rms", bias=False), dict(n_kv_heads=2, qk_norm=True)])
def test_stack_params_equal_num_parameters(kw):
    cfg = ModelConfig(vocab_size=40, d_model=32, n_heads=4, n_layers=3, n_enc_layers=2, n_dec_layers=1, **kw)
    assert stack_params(cfg, "decoder-only")["total"] == DecoderOnly(cfg).num_parameters()
    assert stack_params(cfg, "encoder-decoder")["total"] == EncoderDecoder(cfg).num_parameters()
    m = EncoderDecoder(cfg)
    assert stack_params(cfg, "encoder-decoder")["encoder"] == sum(p.numel() for p in m.encoder.parameters()) + sum(p.numel() for p in m.enc_norm.parameters())


def _matrix_only(cfg, family):
    """stack_params without norms and biases: what the FLOP counter sees as matmuls (bias=False)."""
    n = stack_params(cfg, family)
    norms = {"decoder-only": {"decoder": cfg.n_layers * 2 * 2 * cfg.d_model + 2 * cfg.d_model},
             "encoder-decoder": {"encoder": cfg.n_enc_layers * 4 * cfg.d_model + 2 * cfg.d_model,
                                 "decoder": cfg.n_dec_layers * 6 * cfg.d_model + 2 * cfg.d_model}}[family]
    out = {k: n[k] - norms.get(k, 0) for k in ("encoder", "decoder")}
    return {**out, "total": out["encoder"] + out["decoder"]}


@pytest.mark.parametrize("n_kv", [None, 1])
def test_measured_flops_equal_the_cost_model(n_kv):
    """FlopCounterMode (with attention counted on CPU) == the analytic model exactly, once the model is
    given what the counter counts: matrix weights only (LayerNorm scales/shifts are element-wise, so
    bias=False and the norms are subtracted) and attention="full" for the prefill (the kernel scores
    the masked half too). Left out by both: norms, softmax, GELU, residual adds."""
    V, d, L, H, P, G = 40, 32, 2, 4, 6, 5
    cfg = ModelConfig(vocab_size=V, d_model=d, n_heads=H, n_kv_heads=n_kv, n_layers=L, max_len=64, bias=False)
    torch.manual_seed(0)
    prompt = torch.randint(3, V, (1, P))
    for family, cls in (("decoder-only", DecoderOnly), ("encoder-decoder", EncoderDecoder)):
        model = cls(cfg).eval()
        n = _matrix_only(cfg, family)
        if n_kv is None:
            assert n["total"] == weight_matrix_params(model) - 0  # sanity: the subtraction above is right
        counted = count_flops(generate, model, prompt, G, eos_id=None)
        predicted = generation_flops(cfg, family, P, G, attention="full", params=n)["total"]
        assert counted == predicted, family
        if family == "decoder-only":  # without the cache: each step re-reads the sequence, logits at its end only
            counted = count_flops(generate, model, prompt, G, eos_id=None, use_cache=False)
            first = generation_flops(cfg, family, P, G, attention="full", params=n)["first_token"]
            assert counted == first + sum(step_flops(cfg, family, P, t, use_cache=False, params=n) for t in range(1, G))
    # one decode step of the decoder-only model at n_ctx = P + 1
    model = DecoderOnly(cfg).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(prompt, cache=cache)
        step = count_flops(model, torch.tensor([[7]]), cache=cache)
    assert step == decode_step_flops(_matrix_only(cfg, "decoder-only")["decoder"], L, P + 1, d, V)


def test_cache_bytes_measured_equal_formula_for_both_decoders():
    cfg = ModelConfig(vocab_size=30, d_model=32, n_heads=4, n_kv_heads=2, n_layers=3, n_dec_layers=2, max_len=64)
    P, G = 9, 6
    torch.manual_seed(0)
    for family, cls in (("decoder-only", DecoderOnly), ("encoder-decoder", EncoderDecoder)):
        model = cls(cfg).eval()
        cache = model.new_cache()
        with torch.no_grad():
            if family == "decoder-only":
                model(torch.randint(3, 30, (2, P)), cache=cache)
                for _ in range(G):
                    model(torch.randint(3, 30, (2, 1)), cache=cache)
            else:
                memory, mask = model.encode(torch.randint(3, 30, (2, P)))
                for _ in range(G):
                    model.decode(torch.randint(3, 30, (2, 1)), memory, mask, cache=cache)
        assert cache_bytes(cache) == kv_cache_bytes_for(cfg, family, P, G, batch=2), family


def test_claim7_predicted_ratios_at_equal_parameters():
    # SwiGLU, d_ff = 4d: 9 decoder-only layers vs 4 + 4 (0.44 rule), P = G = 1000 at d = 512
    base = dict(vocab_size=1000, d_model=512, n_heads=8, ffn="swiglu", norm="rms", bias=False, max_len=4096)
    dec = ModelConfig(n_layers=9, **base)
    ed = ModelConfig(n_layers=4, **base)
    n_dec, n_ed = stack_params(dec, "decoder-only")["total"], stack_params(ed, "encoder-decoder")["total"]
    assert n_ed == pytest.approx(n_dec, rel=0.01)
    f = generation_flops(ed, "encoder-decoder", 1000, 1000, vocab=False)["total"] / generation_flops(dec, "decoder-only", 1000, 1000, vocab=False)["total"]
    kv = kv_cache_bytes_for(ed, "encoder-decoder", 1000, 1000)["total"] / kv_cache_bytes_for(dec, "decoder-only", 1000, 1000)["total"]
    assert 0.45 < f < 0.6 and kv == pytest.approx(4 / 9)


def test_scenario_reports_each_repeat_and_exact_counts():
    """The 1000 + 1000 comparison, shrunk: FLOPs and KV bytes are exact, and every time ratio comes
    with the ratio of each back-to-back repeat."""
    from course_lib import latency

    torch.manual_seed(0)
    pair = latency.matched_pair(d_model=32, n_heads=4, dec_layers=5, vocab=64)
    sc = latency.scenario(pair, 12, 6, {"peak_flops": 1e9, "bandwidth": 1e9}, "cpu", repeat=3, count=True)
    r = sc["ratios"]
    assert r["kv_bytes"]["measured"] == pytest.approx(r["kv_bytes"]["predicted"], rel=0, abs=0)
    assert r["flops"]["measured"] == pytest.approx(r["flops"]["predicted"], rel=0.02)
    for k, key in (("per_token_time", "per_token_s"), ("ttft", "ttft_s"), ("total_time", "total_s")):
        runs = r[k]["runs"]
        assert len(runs) == 3 and all(x > 0 for x in runs)
        assert r[k]["measured"] == sc["models"]["encoder-decoder"][key] / sc["models"]["decoder-only"][key]


# --------------------------------------------------------------------------- every config the course builds


def _course_configs() -> dict[str, ModelConfig]:
    """The configs the lessons, the solutions, the library's lesson modules and the checkpoint
    converter build (the converter's options at toy sizes), by where they come from."""
    from course_lib import latency, redllm, translate

    base = dict(vocab_size=50, d_model=32, n_heads=4)
    cfgs = {
        "lesson 00 / 02 / 04": ModelConfig(vocab_size=200, d_model=64, n_heads=4, n_layers=2, max_len=64),
        "lesson 02 post-norm": ModelConfig(vocab_size=40, d_model=32, n_heads=4, norm_first=False),
        "lesson 06": ModelConfig(vocab_size=1000, d_model=128, n_heads=4, n_layers=4, max_len=2048),
        "lesson 07 QK-norm": ModelConfig(**base, n_layers=2, pos="rope", norm="rms", ffn="swiglu", bias=False, qk_norm=True, max_len=4096),
        "solution 06 rope": ModelConfig(vocab_size=100, d_model=64, n_heads=4, n_layers=9, pos="rope"),
        "solution 05 uneven stacks": ModelConfig(**base, n_enc_layers=1, n_dec_layers=3),
        "BERT": ModelConfig(**base, n_layers=2, norm_first=False, final_norm=False, norm_eps=1e-12, type_vocab_size=2,
                            embed_norm=True, mlm_head=True, head_bias=True),
        "GPT-2": ModelConfig(**base, n_layers=2, gelu_approx="tanh"),
        "BART": ModelConfig(**base, n_enc_layers=2, n_dec_layers=1, norm_first=False, final_norm=False, pos_offset=2, embed_norm=True,
                            scale_embeddings=True, head_bias=True),
        "T5 v1.0": ModelConfig(**base, n_layers=2, ffn="relu", norm="rms", bias=False, pos="relative", rel_buckets=8, attn_scale=1.0,
                               output_scale=32**-0.5),
        "T5 v1.1 (GeGLU)": ModelConfig(**base, n_layers=2, ffn="geglu", gelu_approx="tanh", norm="rms", bias=False, pos="relative",
                                       attn_scale=1.0, tie_embeddings=False),
        "LLaMA 3": ModelConfig(**base, n_layers=2, ffn="swiglu", norm="rms", bias=False, pos="rope", n_kv_heads=2, tie_embeddings=False,
                               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 64}),
    }
    cfgs |= {f"translate {f}": c for f, c in translate.model_configs(60).items()}
    cfgs |= {f"translate small {f}": c for f, c in translate.model_configs(60, d_model=32, enc_dec_layers=1).items()}
    cfgs |= {f"recipe {f}": c for f, c in redllm.recipe_configs(60, d_model=32, dec_layers=9).items()}
    cfgs |= {f"matched pair {f}": c for f, c in latency.matched_pair(d_model=32, vocab=60).items()}
    return cfgs


@pytest.mark.parametrize("name", list(_course_configs()))
def test_stack_params_equal_num_parameters_for_every_course_config(name):
    """costs' parameter count from the config alone == the built model's, per stack, for every family."""
    from course_lib.families import ARCHITECTURES, build, stack_parameters

    cfg = _course_configs()[name]
    for family in ARCHITECTURES:
        model = build(family, cfg)
        n = stack_params(cfg, family)
        assert n["total"] == model.num_parameters(), family
        assert stack_parameters(model) == n
        if family.cross_attention:  # the encoder's share, from the modules themselves
            encoder = (model.encoder, model.enc_norm) + ((model.enc_rel_bias,) if model.enc_rel_bias is not None else ())
            assert n["encoder"] == sum(p.numel() for m in encoder for p in m.parameters())


def test_geglu_model_parameters_are_predicted_exactly():
    """The GeGLU bug: its FFN has three matrices, so a two-matrix count is short by d·d_ff per layer."""
    cfg = ModelConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=3, ffn="geglu", bias=False, norm="rms")
    built = DecoderOnly(cfg).num_parameters()
    assert stack_params(cfg, "decoder-only")["total"] == built
    assert built - 3 * (4 * 16 * 16 + 2 * 16 * 64 + 2 * 16) - 16 == 3 * 16 * 64  # the third matrix, d·d_ff per layer


def test_family_costs_accept_every_name_of_a_family():
    cfg = ModelConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=2)
    assert stack_params(cfg, "encdec") == stack_params(cfg, "encoder-decoder")
    assert stack_params(cfg, "prefixlm") == stack_params(cfg, "decoder") == stack_params(cfg, "decoder-only")
    with pytest.raises(ValueError, match="unknown family 'gpt'"):
        stack_params(cfg, "gpt")


def test_sequence_and_step_flops_are_the_per_family_formulas():
    from course_lib.costs import sequence_flops, step_flops

    cfg = ModelConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=3, n_enc_layers=2, n_dec_layers=1)
    ed, do = stack_params(cfg, "encoder-decoder"), stack_params(cfg, "decoder-only")
    assert sequence_flops(cfg, "encdec", 7, 5) == encoder_decoder_sequence_flops(ed["encoder"], ed["decoder"], 2, 1, 16, 7, 5)
    assert sequence_flops(cfg, "prefix-lm", 7, 5) == decoder_only_sequence_flops(do["decoder"], 3, 16, 7, 5)
    # step t after a prompt of P: the decoder-only cache holds P + t positions, the encoder-decoder's t
    assert step_flops(cfg, "decoder-only", 7, 2) == decode_step_flops(do["decoder"], 3, 9, 16, 30)
    assert step_flops(cfg, "encoder-decoder", 7, 2) == encdec_decode_step_flops(ed["decoder"], 1, 2, 7, 16, 30)
    # without the cache a step re-reads all 9 positions but maps only the last through the output layer
    uncached = step_flops(cfg, "decoder-only", 7, 2, use_cache=False)
    assert uncached == prefill_flops(do["decoder"], 3, 16, 9, 30, attention="full", all_logits=False)
    assert uncached == prefill_flops(do["decoder"], 3, 16, 9, attention="full") + 2 * 16 * 30
    assert prefill_flops(do["decoder"], 3, 16, 9, 30) - prefill_flops(do["decoder"], 3, 16, 9, 30, all_logits=False) == 2 * 16 * 30 * 8
    with pytest.raises(ValueError, match="encoder-only"):
        step_flops(cfg, "encoder-only", 7, 2)
