"""course_lib.lessons.redllm (lesson 07): the prefix-LM split, continuation perplexity, the costs it reads from
course_lib.costs (against the models' own parameters and caches), and the max-logit tracker."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import costs, redllm
from course_lib.config import ModelConfig
from course_lib.models import DecoderOnly, EncoderDecoder
from course_lib.tokenizer import BOS_ID

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfgs = redllm.recipe_configs(vocab_size=40, d_model=32, n_heads=4, dec_layers=5)
    return {f: redllm.build(f, c).eval() for f, c in cfgs.items()}


def test_recipe_configs_match_parameters_and_stacks(models):
    assert isinstance(models["decoder"], DecoderOnly) and isinstance(models["encdec"], EncoderDecoder)
    n = {f: redllm.stack_parameters(m) for f, m in models.items()}
    for f, m in models.items():
        assert n[f]["total"] == n[f]["encoder"] + n[f]["decoder"] == m.num_parameters()
    ed = models["encdec"]
    assert n["encdec"]["encoder"] == sum(p.numel() for m in (ed.encoder, ed.enc_norm) for p in m.parameters())
    assert n["decoder"]["encoder"] == 0
    assert abs(n["encdec"]["total"] / n["decoder"]["total"] - 1) < 0.1  # matched depth: 5 layers vs 2 + 2


def test_split_prefix_hand_example():
    b = redllm.split_prefix(torch.tensor([[5, 6, 7, 8, 9]]), 2)
    assert b["src"].tolist() == [[5, 6]]
    assert b["tgt_out"].tolist() == [[7, 8, 9]]
    assert b["tgt_in"].tolist() == [[BOS_ID, 7, 8]]
    with pytest.raises(ValueError, match="prefix_len"):
        redllm.split_prefix(torch.tensor([[5, 6]]), 2)


def test_continuation_nll_is_each_familys_loss_on_the_continuation(models):
    x = torch.randint(6, 40, (3, 10), generator=torch.Generator().manual_seed(1))
    ed, dec = models["encdec"], models["decoder"]
    nll = redllm.continuation_nll(ed, x, 4)
    assert nll.shape == (3, 6)
    torch.testing.assert_close(nll.mean(), redllm.prefix_lm_loss(ed, x, 4))
    with torch.no_grad():
        logits = dec(x)
    by_hand = F.cross_entropy(logits[:, 3:-1].flatten(0, 1), x[:, 4:].flatten(), reduction="none").view(3, 6)
    torch.testing.assert_close(redllm.continuation_nll(dec, x, 4), by_hand)


def test_pretraining_loss_is_each_familys_objective(models):
    x = torch.randint(6, 40, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(redllm.pretraining_loss("encdec", 4)(models["encdec"], x), redllm.prefix_lm_loss(models["encdec"], x, 4))
        torch.testing.assert_close(redllm.pretraining_loss("decoder", 4)(models["decoder"], x), redllm.causal_lm_loss(models["decoder"], x))


def test_train_flops_per_sequence_is_the_sequence_formula_of_the_built_model(models):
    """3 x forward, with each stack's parameters read from the built modules (an independent count)."""
    ed, dec = models["encdec"], models["decoder"]
    c = ed.cfg
    n_enc = sum(p.numel() for m in (ed.encoder, ed.enc_norm) for p in m.parameters())
    n_dec = ed.num_parameters() - n_enc
    assert redllm.train_flops_per_sequence(ed, 32, 12) == 3 * costs.encoder_decoder_sequence_flops(
        n_enc, n_dec, c.n_enc_layers, c.n_dec_layers, c.d_model, 12, 20)
    assert redllm.train_flops_per_sequence(dec, 32, 12) == 3 * costs.decoder_only_sequence_flops(
        dec.num_parameters(), dec.cfg.n_layers, dec.cfg.d_model, 12, 20)


@pytest.mark.parametrize("family", ["decoder", "encdec"])
def test_inference_kv_bytes_equal_a_filled_cache(models, family):
    model, P, G = models[family], 9, 5
    prompt = torch.randint(6, 40, (1, P))
    cache = model.new_cache()
    with torch.no_grad():
        if family == "decoder":
            model(prompt, cache=cache)
            for _ in range(G):
                model(torch.tensor([[7]]), cache=cache)
        else:
            memory, mask = model.encode(prompt)
            for _ in range(G):
                model.decode(torch.tensor([[7]]), memory, mask, cache=cache)
    assert redllm.inference_costs(model, P, G)["kv_bytes"] == costs.cache_bytes(cache)["total"]


def test_tracking_max_logit_records_each_attention_call():
    """One entry per attention call, in call order; the first equals max |q·k| / √d_head computed by hand
    from the first layer's projections (every query-key pair, masked ones included)."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=3)
    model = DecoderOnly(cfg).eval()
    x = torch.randint(3, 20, (2, 6))
    with torch.no_grad(), redllm.tracking_max_logit() as log:
        model(x)
    assert len(log) == 3
    with torch.no_grad():
        block = model.blocks[0]
        h = block.norm1(model.embed(x))
        q, k, _ = block.self_attn.in_proj(h).view(2, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)  # each (B, H, T, d_head)
        by_hand = float((q @ k.transpose(-2, -1)).abs().max()) / math.sqrt(8)
    assert log[0] == pytest.approx(by_hand, rel=1e-6)
    with torch.no_grad():
        model(x)
    assert len(log) == 3  # nothing is recorded outside the block
