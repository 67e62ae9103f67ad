"""course_lib.lessons.experiments: the seeded comparisons behind lesson 07's verdicts, on tiny models and few steps."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib import experiments as ex
from course_lib import redllm
from course_lib.config import ModelConfig
from course_lib.models import DecoderOnly

T, P = 12, 6


@pytest.fixture(scope="module")
def corpus():
    tok, train, valid, long = redllm.text_corpus(T, seed=0, n_train=300, n_valid=60, long_length=4 * T)
    cfgs = redllm.recipe_configs(tok.vocab_size, d_model=16, n_heads=2, dec_layers=2)
    return tok, train, valid, long, cfgs


def test_compute_to_match_inverts_a_power_law():
    """Independent reference: DecLLM's perplexity follows ppl = 40 * F^-0.25 exactly; RedLLM reaches the perplexity
    DecLLM reaches at F* with FLOPs F_ed, so the answer is F* / F_ed."""
    steps, f_step_hi, f_step_lo, f_step_ed = 100, 2e9, 1e9, 1.02e9
    law = lambda f: 40 * f ** -0.25  # noqa: E731
    f_star = 1.5e11
    result = {"steps": steps, "flops_per_step": {"decoder": f_step_hi, "decoder_half_batch": f_step_lo, "encdec": f_step_ed},
              "ppl": {"decoder": [law(f_step_hi * steps)] * 3, "decoder_half_batch": [law(f_step_lo * steps)] * 3,
                      "encdec": [law(f_star), law(f_step_lo * steps), law(f_step_hi * steps)]}}
    got = ex.compute_to_match(result)
    want = [f_star / (f_step_ed * steps), f_step_lo / f_step_ed, f_step_hi / f_step_ed]
    assert got == pytest.approx(want, rel=1e-9)
    summary = ex.equal_compute_summary(result)
    assert summary["interpolated"] == [True, True, True]
    assert summary["flops_ratio_equal_compute_pair"] == pytest.approx(f_step_lo / f_step_ed)
    assert summary["ppl_ratio_equal_flops"][1] == pytest.approx(1.0)


def test_compute_to_match_when_more_compute_did_not_help():
    result = {"steps": 1, "flops_per_step": {"decoder": 2.0, "decoder_half_batch": 1.0, "encdec": 1.0},
              "ppl": {"decoder": [10.0], "decoder_half_batch": [9.0], "encdec": [5.0]}}
    assert ex.compute_to_match(result) == [math.inf]  # no DecLLM budget on this line reaches RedLLM's 5.0


def test_equal_compute_matches_flops_and_reuses_trained_models(corpus):
    tok, train, valid, _, cfgs = corpus
    untrained = redllm.build("decoder", cfgs["decoder"]).eval()  # stands in for lesson 07's trained DecLLM
    r = ex.equal_compute(cfgs, train, valid[:8], prefix_len=P, steps=2, seeds=[0], batch_size=8,
                         pretrained={("decoder", 0): untrained})
    assert r["ppl"]["decoder"] == [pytest.approx(ex.continuation_ppl(untrained, valid[:8], P))]  # reused, not retrained
    assert set(r["ppl"]) == {"decoder", "encdec", "decoder_half_batch"} and all(len(v) == 1 for v in r["ppl"].values())
    # half the batch of DecLLM costs about what RedLLM's full batch costs per step (claim 6(a) at this size)
    pair = r["flops_per_step"]["decoder_half_batch"] / r["flops_per_step"]["encdec"]
    full = r["flops_per_step"]["decoder"] / r["flops_per_step"]["encdec"]
    assert full == pytest.approx(2 * pair) and 0.7 < pair < 1.4
    assert all(math.isfinite(v) and v > 1 for vs in r["ppl"].values() for v in vs)


def test_length_extrapolation_ratios(corpus):
    tok, train, valid, long, cfgs = corpus
    models = {f: [redllm.build(f, cfgs[f]).eval() for _ in range(2)] for f in ("decoder", "encdec")}
    r = ex.length_extrapolation(models, long[:4], [T, 2 * T, 4 * T])
    for f in models:
        assert r["degradation"][f] == pytest.approx([b / a for a, b in zip(r["ppl"][f][T], r["ppl"][f][4 * T])])
        want = math.exp(redllm.continuation_nll(models[f][1], long[:4, : 2 * T], T).mean().item())
        assert r["ppl"][f][2 * T][1] == pytest.approx(want)
    with pytest.raises(ValueError, match="fewer than the longest"):
        ex.length_extrapolation(models, long[:4, :T], [T, 2 * T])


def test_norm_ablation_switches_one_norm_off_at_a_time(corpus, monkeypatch):
    tok, train, valid, _, _ = corpus
    seen = []
    original = DecoderOnly.__init__

    def record(self, cfg):
        seen.append((cfg.qk_norm, cfg.v_norm, cfg.attn_out_norm, cfg.pos, cfg.norm, cfg.ffn))
        original(self, cfg)

    monkeypatch.setattr(DecoderOnly, "__init__", record)
    r = ex.norm_ablation(tok.vocab_size, train, valid[:8], seeds=[0], lr=1e-3, steps=2, d_model=16)
    assert list(r["valid_loss"]) == ["full recipe", "without QK-norm", "without V-norm", "without output norm"]
    assert seen == [(True, True, True, "rope", "rms", "swiglu"), (False, True, True, "rope", "rms", "swiglu"),
                    (True, False, True, "rope", "rms", "swiglu"), (True, True, False, "rope", "rms", "swiglu")]
    assert all(math.isfinite(v[0]) for v in r["valid_loss"].values())


def test_norm_ablation_records_a_diverged_run_as_inf(corpus, monkeypatch):
    tok, train, valid, _, _ = corpus

    def blow_up(model, loss_fn, data, cfg, **kw):
        raise FloatingPointError("training loss is nan at step 1")

    monkeypatch.setattr(ex, "train", blow_up)
    r = ex.norm_ablation(tok.vocab_size, train, valid[:8], seeds=[0], lr=1.0, steps=2, d_model=16)
    assert all(v == [math.inf] for v in r["valid_loss"].values())


def test_finetune_tasks_by_hand():
    assert ex.FINETUNE_TASKS["dedup_keep_last"]([7, 8, 7, 9, 8]) == [7, 9, 8]
    assert ex.FINETUNE_TASKS["sort"]([9, 7, 8]) == [7, 8, 9]
    pairs = ex.finetune_pairs("sort", 20, 1, symbols=range(6, 16), min_len=3, max_len=6)
    assert all(t == sorted(s) and 3 <= len(s) <= 6 and set(s) <= set(range(6, 16)) for s, t in pairs)
    with pytest.raises(ValueError, match="task must be one of"):
        ex.finetune_pairs("shuffle", 2, 0, symbols=[6, 7], min_len=1, max_len=2)


def test_biattn_finetune_starts_every_variant_from_the_same_weights(corpus):
    tok, *_ , cfgs = corpus
    base = redllm.build("decoder", cfgs["decoder"]).eval()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    pairs = ex.finetune_pairs("sort", 16, 1, symbols=range(6, 12), min_len=2, max_len=3)
    r = ex.biattn_finetune({("decoder", 0): base}, pairs, pairs[:6], seeds=[0], steps=2, batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # fine-tuning worked on copies
    for measure in ("exact", "token_acc"):
        assert set(r[measure]) == {"decoder", "prefixlm"} and all(0 <= v[0] <= 100 for v in r[measure].values())
    assert r["seeds"] == [0] and r["steps"] == 2


def test_the_sort_task_is_scored_by_hand(monkeypatch):
    """_scores: exact match and token accuracy of greedy outputs, against a hand count."""
    outputs = [[6, 7, 8], [6, 8], [9, 9, 9, 9]]
    test = [([8, 7, 6], [6, 7, 8]), ([7, 6], [6, 7]), ([9, 9, 9], [9, 9, 9])]
    monkeypatch.setattr(ex, "translate_ids", lambda *a, **kw: outputs)
    s = ex._scores(torch.nn.Linear(1, 1), "decoder", test, 5)
    assert s["exact"] == pytest.approx(100 / 3)
    assert s["token_acc"] == pytest.approx(100 * (1 + 0.5 + 1) / 3)


def test_norm_verdicts_judge_each_piece_on_its_own_measure():
    r = {"lr": 0.1, "steps": 100,
         "valid_loss": {"full recipe": [2.6, 2.7, 2.7], "without QK-norm": [2.9, 3.3, 3.0],
                        "without V-norm": [2.4, 2.5, 2.55], "without output norm": [2.7, 2.6, 2.7]},
         "max_logit": {"full recipe": [15.0, 12.0, 15.0], "without QK-norm": [590.0, 716.0, 989.0],
                       "without V-norm": [14.0, 10.0, 9.0], "without output norm": [8.0, 11.0, 9.0]}}
    vs = ex.norm_verdicts(r)
    assert [(v.part, v.verdict) for v in vs] == [
        ("QK-norm: logits", "supported"), ("QK-norm: loss", "supported"),
        ("V-norm: loss", "contradicted at toy scale"), ("output norm: loss", "no clear difference")]
    assert vs[0].reason.startswith("largest attention logit in 100 steps at lr 0.1: the full recipe 14 (12-15) vs the "
                                   "recipe without QK-norm 765 (590-989)")
    assert "every run of the full recipe is better than every run of the recipe without QK-norm" in vs[0].reason
