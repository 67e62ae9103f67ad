"""course_lib.lessons.latency (lesson 06): the measuring helpers keep the cache as they found it, fill it as
generation does, and predict with course_lib.costs' formulas. Times themselves are benchmarks' business."""
from __future__ import annotations

import pytest
import torch

from course_lib import costs, latency
from course_lib.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HW = {"peak_flops": 1e9, "bandwidth": 1e9}


def _cfg(**kw):
    return ModelConfig(**{"vocab_size": 40, "d_model": 16, "n_heads": 4, "n_layers": 2, "max_len": 64, **kw})


@pytest.mark.parametrize("kw", [{}, dict(n_kv_heads=2, n_dec_layers=1)])
def test_memory_sweep_cache_bytes_equal_the_formula(kw):
    rows = latency.memory_sweep(_cfg(**kw), [(5, 3), (9, 1)])
    assert len(rows) == 4 and all(r["predicted"] == r["measured"] for r in rows)
    ed = [r for r in rows if r["family"] == "encoder-decoder"]
    assert all(r["measured"]["cross"] > 0 and r["measured"]["self"] < r["measured"]["cross"] for r in ed)


@pytest.mark.parametrize("family", ["decoder-only", "encoder-decoder"])
def test_time_step_leaves_the_cache_length_alone(family, monkeypatch):
    model = latency._untrained(family, _cfg())
    x = torch.randint(3, 40, (1, 6))
    seen = []
    real = latency._started

    def spy(m, inputs):
        session, token = real(m, inputs)
        seen.append(session)
        return session, token

    monkeypatch.setattr(latency, "_started", spy)
    assert latency.time_step(model, x, repeat=3) > 0
    (session,) = seen
    assert len(session.cache) == session.n_prompt + (family == "encoder-decoder")  # as after start(), every timed step forgotten


def test_ttft_sweep_predicts_with_the_cost_model():
    cfg, P, G = _cfg(), 6, 4
    rows = latency.ttft_sweep(cfg, [P], G, HW, repeat=1)
    assert [r["family"] for r in rows] == ["encoder-only", "decoder-only", "decoder-only, no cache", "encoder-decoder"]
    by = {r["family"]: r for r in rows}
    assert by["decoder-only"]["step_flops"] == costs.decode_step_flops(costs.stack_params(cfg, "decoder-only")["total"], 2, P + G // 2,
                                                                        16, 40)
    assert by["encoder-decoder"]["first_token_flops"] == costs.generation_flops(cfg, "encoder-decoder", P, G)["first_token"]
    assert by["encoder-only"]["G"] == 0 and by["encoder-only"]["per_token_s"] == 0.0


def test_encoder_only_does_not_generate():
    model = latency._untrained("encoder-only", _cfg())
    with pytest.raises(ValueError, match="does not generate"):
        latency.time_generation(model, torch.randint(3, 40, (1, 4)), 2, repeat=1)


def test_timings_return_their_runs_for_a_verdict():
    cfg = _cfg()
    rows = latency.ttft_sweep(cfg, [6], 3, HW, repeat=3)
    for r in rows:  # the median is one of the runs
        assert len(r["ttft_runs"]) == 3 and r["ttft_s"] == sorted(r["ttft_runs"])[1]
    par = latency.parallel_vs_sequential(cfg, 4, HW, repeat=3)
    for fam, r in par.items():
        if "time_ratio" in r:
            assert len(r["time_ratio"]["runs"]) == 3 and all(x > 0 for x in r["time_ratio"]["runs"])


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_count_step_calls_matches_the_arithmetic_counted_by_hand(n_layers):
    # A pre-norm GPT step with a GELU FFN, per layer: W_qkv, W_O, W_1, W_2 (4 linears), 2 LayerNorms, 1 attention,
    # 1 GELU; then the final LayerNorm and the LM head (1 linear): 4L + 1 linears, 2L + 1 norms.
    model = latency._untrained("decoder-only", _cfg(n_layers=n_layers, ffn="gelu", norm="layer"))
    x = torch.randint(3, 40, (1, 5))
    general = latency.count_step_calls(model, x)
    fast = latency.count_step_calls(model, x, fast_path=True)
    for calls in (general, fast):
        assert calls["linear"] == 4 * n_layers + 1 and calls["layer_norm"] == 2 * n_layers + 1
        assert calls["scaled_dot_product_attention"] == n_layers and calls["gelu"] == n_layers
        assert calls["__get__"] == 0  # attribute reads (.shape) are not counted
    assert latency.count_step_ops(model, x) == sum(general.values())
    assert not fast - general and sum(fast.values()) < sum(general.values())  # the fast path only drops calls


def test_count_step_calls_grow_by_the_same_number_per_layer():
    x = torch.randint(3, 40, (1, 5))
    totals = [latency.count_step_ops(latency._untrained("decoder-only", _cfg(n_layers=n)), x) for n in (1, 2, 3)]
    assert totals[2] - totals[1] == totals[1] - totals[0] > 0


def test_scenario_predicts_ttft_from_the_first_output_not_the_whole_generation():
    pair = latency.matched_pair(d_model=16, n_heads=4, dec_layers=3, vocab=40, max_len=64)
    P, G = 12, 5
    ttft = latency.scenario(pair, P, G, HW, repeat=1, count=False)["ratios"]["ttft"]
    first = {a: {f: costs.generation_flops(c, f, P, G, attention=a)["first_token"] for f, c in pair.items()} for a in ("full", "causal")}
    assert ttft["predicted"] == pytest.approx(first["full"]["encoder-decoder"] / first["full"]["decoder-only"])
    assert ttft["predicted_causal"] == pytest.approx(first["causal"]["encoder-decoder"] / first["causal"]["decoder-only"])
    assert ttft["predicted"] < ttft["predicted_causal"]  # the masked half only adds to the decoder-only prefill
    total = {f: costs.generation_flops(c, f, P, G, attention="full")["total"] for f, c in pair.items()}
    assert ttft["predicted"] != pytest.approx(total["encoder-decoder"] / total["decoder-only"])
